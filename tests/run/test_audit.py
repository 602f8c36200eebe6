"""The shortcut audit: heuristics (hand-built examples), the interval against random, the bundled
benchmark (its heuristics pass, its blind-text baseline does not), every bundled card's layout, the
old-order synthref fixture (flagged), CLI. Planted shortcuts only blind baselines catch:
tests/run/test_blind_audit.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cptbench.run.audit import AUDIT_BLIND, AUDIT_HEURISTICS, audit_task, excess_interval
from cptbench.cli.main import cli
from cptbench.data import synthref as sr
from cptbench.data.examples import Example, Label, TrainExample
from cptbench.data.images import file_image
from cptbench.methods.base import MethodContext
from cptbench.methods.registry import create_method, method_registry
from cptbench.tasks.cards import get_task, list_tasks
from cptbench.tasks.spec import SynthRefSpec


@pytest.fixture(autouse=True)
def _only_bundled_cards(monkeypatch):
    monkeypatch.delenv("CPTBENCH_TASKS_PATH", raising=False)


# ------------------------------------------------------------------------------------ interval
def test_excess_interval_hand_computed():
    # two images; per expression d = correct - 1/n: image 1: 1 - 1/2, 0 - 1/2; image 2: 1 - 1/4, 1 - 1/4
    iv = excess_interval([True, False, True, True], [2, 2, 4, 4], ["a", "a", "b", "b"], level=0.95)
    d = np.array([0.5, -0.5, 0.75, 0.75])
    mean = d.mean()
    sums = np.array([d[:2].sum() - 2 * mean, d[2:].sum() - 2 * mean])
    se = math.sqrt(2 / 1 * np.sum(sums ** 2)) / 4
    half = 12.706204736174707 * se  # t quantile, 1 degree of freedom, 0.975
    assert iv.excess == pytest.approx(mean) and iv.clusters == 2
    assert (iv.low, iv.high) == pytest.approx((mean - half, mean + half))
    # no candidates: chance 0; an all-equal outcome per image has no spread
    flat = excess_interval([True, True, False, False], [2, 2, 2, 2], [1, 1, 2, 2])
    assert flat.excess == pytest.approx(0.0) and flat.high > 0 > flat.low
    assert excess_interval([False], [0], ["x"]).excess == 0.0
    # chance (random's expected accuracy) comes with the interval: mean of 1/n, 0 without candidates
    assert iv.chance == pytest.approx((0.5 + 0.5 + 0.25 + 0.25) / 4) and excess_interval([False], [0], ["x"]).chance == 0.0
    assert math.isnan(excess_interval([], [], []).chance)


def test_metric_context_is_what_methods_read():
    from cptbench.run.audit import _context
    from cptbench.methods.registry import get_method_class
    from cptbench.tasks.spec import MetricSpec

    m = MetricSpec("continuous", 0.5, "ge")
    assert m.describe() == {"iou_convention": "continuous", "iou_threshold": 0.5, "iou_rule": "ge"}
    card = get_task("synthref")
    assert _context(card, get_method_class("category-prior")).metric == card.metric


# ---------------------------------------------------------------------------------- heuristics
W, H = 100, 60
BOXES = np.array([[0, 0, 10, 10], [40, 20, 60, 40], [70, 5, 100, 55], [5, 45, 12, 50]], float)  # areas 100, 400, 1500, 35
CATS = ("cat", "dog", "cat", "bird")


def ex(tmp_path, ref_id, sent_id, image_id=1, expression="the thing", boxes=BOXES, cats=CATS):
    path = tmp_path / "img.png"
    if not path.exists():
        from PIL import Image

        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(path)
    return Example(example_id=f"{ref_id}:{sent_id}", ref_id=ref_id, sent_id=sent_id, image_id=image_id,
                   image_handle=file_image(path), image_size=(W, H), expression=expression, boxes=np.asarray(boxes, float),
                   categories=tuple(cats), candidate_key=f"gt:{image_id}")


def pick(name, examples, train=(), **extra):
    m = create_method(name, {}, MethodContext(**extra))
    m.fit(list(train), 0)
    return [int(np.argmax(s)) for s in m.predict(examples)]


def test_box_and_order_heuristics_pick_what_they_say(tmp_path):
    e = ex(tmp_path, 1, 1)
    assert pick("first-candidate", [e]) == [0]
    assert pick("largest-box", [e]) == [2]
    assert pick("smallest-box", [e]) == [3]
    assert pick("most-central", [e]) == [1]  # centre (50, 30) is the image centre
    # two refs of one image: the lower ref id reads as the earlier target, the higher as the later
    a, b = ex(tmp_path, 7, 30), ex(tmp_path, 3, 31)
    assert pick("ref-order", [a, b]) == [3, 0]
    # sentence order: the same reading over sent ids (here opposite to the ref ids)
    assert pick("sent-order", [a, b]) == [0, 3]
    for name in AUDIT_HEURISTICS:
        assert method_registry().origin(name).startswith("entry point: cptbench_baselines.heuristics")


def test_category_prior_and_expression_length_learn_from_train(tmp_path):
    train = [TrainExample(ex(tmp_path, i, i, image_id=10 + i), Label(f"{i}:{i}", BOXES[1])) for i in range(3)]
    e = ex(tmp_path, 50, 50)
    assert pick("category-prior", [e], train) == [1]  # "dog" was the target every time
    # longer expression -> smaller target (default), unless the training targets say otherwise
    short, long = ex(tmp_path, 60, 60, expression="a"), ex(tmp_path, 61, 61, expression="a b c d e f")
    assert pick("expression-length", [short, long]) == [2, 3]
    big_long = [TrainExample(ex(tmp_path, 70 + i, 70 + i, image_id=20 + i, expression=t), Label(f"{70 + i}:{70 + i}", BOXES[j]))
                for i, (t, j) in enumerate([("a", 3), ("a b c d e f", 2)])]
    assert pick("expression-length", [short, long], big_long) == [3, 2]


def test_ties_are_not_broken_by_candidate_order(tmp_path):
    same = np.array([[0, 0, 10, 10]] * 4, float)
    examples = [ex(tmp_path, i, i, image_id=i, boxes=same, cats=("cat",) * 4) for i in range(40)]
    picks = pick("largest-box", examples)
    assert len(set(picks)) == 4  # every candidate is picked sometimes, not always the first
    assert pick("largest-box", examples) == picks  # and deterministically


# ------------------------------------------------------------------------------- bundled data
def _generate(tmp_path: Path, card, legacy: bool, seed: int = 0, n_eval: int = 30, n_train: int = 20) -> Path:
    spec = SynthRefSpec(seed=seed, images={card.train_split: n_train, **{s: n_eval for s in card.eval_splits}})
    root = tmp_path / f"{card.name}-{'legacy' if legacy else 'new'}"
    sr.generate_synthref(spec, root, card.dataset, card.split_by, card.image_dir, legacy_order=legacy)
    return root


def test_bundled_synthref_passes_the_heuristics_but_is_solvable_without_looking(tmp_path, synthref_cache, monkeypatch):
    """Every fixed rule is within noise of random on synthref v2; the blind-text baseline (no pixels)
    is far above chance on every split, so the audit as a whole fails."""
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    card = get_task("synthref")
    report = audit_task(card)
    heuristics = [r for r in report.results if r.kind == "heuristic"]
    assert not [r for r in heuristics if r.flagged], [(r.split, r.heuristic, r.accuracy, r.ci_low) for r in heuristics]
    assert {(r.split, r.heuristic) for r in report.results} == {
        (s, h) for s in card.eval_splits for h in AUDIT_HEURISTICS + AUDIT_BLIND}
    counts = {s: c.sentences for s, c in card.expected_counts.items()}
    for r in report.results:
        assert r.n == counts[r.split] and 15 < r.chance < 25 and r.ci_low < r.accuracy < r.ci_high
    assert report.n_train == counts[card.train_split]
    assert {(r.split, r.heuristic) for r in report.flagged} >= {(s, "blind-text") for s in card.eval_splits}
    assert not report.ok and all(r.kind == "blind" for r in report.flagged)
    solvable = report.solvable_without_looking()
    assert set(solvable) == set(card.eval_splits)
    for split, s in solvable.items():
        assert s["flagged"] and s["best"] == "blind-text" and s["accuracy"] > 60 > s["chance"] + 30
    assert set(report.fitted) == {"category-prior", "expression-length", *AUDIT_BLIND}
    # the report names the data as run records do, so a stored audit can be matched to runs
    import cptbench

    record = cptbench.evaluate(tasks="synthref", methods="random", shots=0, seeds=[0], splits="val", limit=3,
                               results=str(tmp_path / "results"))[0]
    assert report.data_fingerprint == record.data_fingerprint and len(report.data_fingerprint) > 8


@pytest.mark.parametrize("task", list_tasks())
def test_every_bundled_card_layout_clean_passes_old_order_is_flagged(tmp_path, task):
    """Each card's own refer layout (dataset, splitBy, image folder, eval splits), written by the
    synthref generator: with random ref order it passes (family-wise intervals: a clean fixture of
    30 images per split must not fail by the chance of 24 comparisons); with version 1's order (refs
    sorted by target, consecutive ids) the order heuristics beat random. The fixed rules only: synthref's
    content is solvable without looking, which the blind baselines flag (tests/run/test_blind_audit.py)."""
    card = get_task(task)
    clean = audit_task(card, data_root=str(_generate(tmp_path, card, legacy=False)), correction="bonferroni", blind=[])
    assert clean.ok, [(r.split, r.heuristic) for r in clean.flagged]
    assert clean.level == pytest.approx(1 - 0.05 / (len(AUDIT_HEURISTICS) * len(card.eval_splits)))
    old_root = str(_generate(tmp_path, card, legacy=True))
    for correction in ("none", "bonferroni"):
        old = audit_task(card, data_root=old_root, correction=correction, blind=[])
        assert "ref-order" in {r.heuristic for r in old.flagged}, [(r.split, r.heuristic) for r in old.flagged]


def test_old_order_leak_is_gone_at_full_size(tmp_path):
    """Version 1's layout at the card's full size: ref-order far above random on every split (the
    issue measured 47.6 / 38.2 / 30.4); the regenerated splits hold nothing of it."""
    card = get_task("synthref")
    root = tmp_path / "v1"
    sr.generate_synthref(card.synthref, root, card.dataset, card.split_by, card.image_dir, legacy_order=True)
    old = audit_task(card, data_root=str(root), heuristics=["ref-order"], blind=[])
    assert all(r.flagged and r.excess > 10 for r in old.results), [(r.split, r.accuracy) for r in old.results]
    assert json.loads((root / "SYNTHREF.json").read_text())["settings"]["generator_version"] == 1


# ----------------------------------------------------------------------------------------- CLI
def test_cli_audit_on_synthref_heuristics_pass_blind_text_fails_old_order_fails(tmp_path, synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    out = tmp_path / "audit.json"
    r = CliRunner().invoke(cli, ["data", "audit", "synthref", "--no-blind", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "shortcut audit passed" in r.output and "ref-order" in r.output and "95% interval" in r.output
    report = json.loads(out.read_text())
    assert report["ok"] and report["task"] == "synthref" and len(report["results"]) == 3 * len(AUDIT_HEURISTICS)
    assert report["solvable_without_looking"] == {}

    r = CliRunner().invoke(cli, ["data", "audit", "synthref", "--json", str(out)])
    assert r.exit_code == 1, r.output
    assert "solvable without looking" in r.output and "blind-text on val" in r.output, r.output
    # at 80 columns (CliRunner's width) no cell is cut and no line is wider
    assert "…" not in r.output and max(len(line.rstrip()) for line in r.output.splitlines()) <= 80, r.output
    report = json.loads(out.read_text())
    assert not report["ok"] and len(report["results"]) == 3 * (len(AUDIT_HEURISTICS) + len(AUDIT_BLIND))
    assert {r["kind"] for r in report["results"]} == {"heuristic", "blind"}
    for split, s in report["solvable_without_looking"].items():
        assert s["flagged"] and s["baselines"]["blind-text"]["flagged"] and s["accuracy"] > s["chance"] + 30

    old = _generate(tmp_path, get_task("synthref"), legacy=True)
    r = CliRunner().invoke(cli, ["data", "audit", "synthref", "--data-root", str(old), "--split", "val", "--no-blind",
                                 "--heuristic", "ref-order", "--heuristic", "largest-box"])
    assert r.exit_code == 1 and "ref-order on val" in r.output and "largest-box on" not in r.output, r.output
    r = CliRunner().invoke(cli, ["data", "audit", "synthref", "--data-root", str(old), "--split", "val", "--no-blind",
                                 "--heuristic", "ref-order,largest-box"])  # a comma list, as every command takes
    assert r.exit_code == 1 and "ref-order on val" in r.output and "largest-box" in r.output, r.output
    r = CliRunner().invoke(cli, ["data", "audit", "synthref", "--heuristic", "ref-ordr"])
    assert r.exit_code == 2 and "ref-order" in r.output
    r = CliRunner().invoke(cli, ["data", "audit", "synthref", "--blind", "blind-txt"])
    assert r.exit_code == 2 and "blind-text" in r.output
