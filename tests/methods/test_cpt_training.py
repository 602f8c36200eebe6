"""CPT few-shot prompt tuning: pass units, sampling, schedule, and fit() with a tiny torch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cptbench.cpt import painting
from cptbench.cpt.config import CptConfig
from cptbench.cpt.method import CptBlockMethod
from cptbench.cpt.painting import parse_palette
from cpt_fakes import TinyTorchAdapter
from cptbench.core.boxes import MetricSpec
from cptbench.cpt.training import (
    PassUnit, TrainSettings, expression_passes, select_passes,
)
from cptbench.data.images import file_image
from cptbench.data.examples import Example, Label, TrainExample
from cptbench.methods.base import MethodContext

H, W = 24, 64
BOXES = np.array([[2 + 12 * i, 4, 12 + 12 * i, 14] for i in range(5)], float)


def example(path, boxes=BOXES, eid="1:1", expression="the thing"):
    return Example(example_id=eid, ref_id=1, sent_id=1, image_id=1, image_handle=file_image(path), image_size=(W, H),
                   expression=expression, boxes=np.asarray(boxes, float), categories=("thing",) * len(boxes),
                   candidate_key="gt:1")


def labelled(ex, box):
    return TrainExample(ex, Label(ex.example_id, np.asarray(box, float)))


# ------------------------------------------------------------------------------------- pass units
def test_pass_units_one_colour_and_five_colours(tmp_path):
    ex = example(tmp_path / "a.png", boxes=np.concatenate([BOXES, BOXES + [0, 6, 0, 6]]))  # 10 candidates
    te = labelled(ex, ex.boxes[7])
    pos, neg = expression_passes(te, 3, parse_palette("red"), TrainSettings())
    assert pos == [PassUnit(3, 7, "red")] and [u.group for u in neg] == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert {u.target for u in neg} == {"none"}
    pos, neg = expression_passes(te, 0, parse_palette("release5"), TrainSettings())
    # candidate 7 is the third of group 1 -> painted yellow; group 0 holds no match
    assert pos == [PassUnit(0, 1, "yellow")] and neg == [PassUnit(0, 0, "none")]


def test_pass_units_best_match_threshold_and_no_match(tmp_path):
    gt = np.array([0.0, 0.0, 10.0, 10.0])
    boxes = [[0, 0, 10, 10], [0, 0, 10, 9], [30, 0, 40, 10], [0, 0, 10, 5]]
    te = labelled(example(tmp_path / "a.png", boxes=boxes), gt)
    pos, neg = expression_passes(te, 0, parse_palette("release5"), TrainSettings())
    assert pos == [PassUnit(0, 0, "blue")] and neg == []  # two matches in one group: the best one's colour
    pos, neg = expression_passes(te, 0, parse_palette("red"), TrainSettings())
    assert [u.group for u in pos] == [0, 1] and [u.group for u in neg] == [2, 3]
    # candidate 3 has IoU 0.5 (continuous convention): a negative under "gt", a positive under "ge"
    strict = TrainSettings(metric=MetricSpec("continuous", 0.5, "gt"))
    loose = TrainSettings(metric=MetricSpec("continuous", 0.5, "ge"))
    assert 3 not in [u.group for u in expression_passes(te, 0, parse_palette("red"), strict)[0]]
    assert 3 in [u.group for u in expression_passes(te, 0, parse_palette("red"), loose)[0]]
    nothing = labelled(example(tmp_path / "a.png", boxes=boxes), [50, 15, 60, 20])
    pos, neg = expression_passes(nothing, 0, parse_palette("red"), TrainSettings())
    rng = np.random.default_rng(0)
    # no positive: the release gives two passes, the first group's and one random negative
    two = select_passes(pos, neg, rng)
    assert pos == [] and len(two) == 2 and two[0] == neg[0] and two[1] in neg
    assert len(select_passes(pos, neg, rng, no_positive="one")) == 1
    # with a single group the release's two passes are that group twice
    assert select_passes([], neg[:1], rng) == [neg[0], neg[0]]


def test_select_passes_balances_negatives():
    rng = np.random.default_rng(0)
    pos = [PassUnit(0, 1, "red"), PassUnit(0, 4, "red")]
    neg = [PassUnit(0, g, "none") for g in (0, 2, 3, 5, 6)]
    picked = select_passes(pos, neg, rng)
    assert picked[:2] == pos and len(picked) == 4 and all(u in neg for u in picked[2:])
    assert select_passes(pos, neg[:1], rng) == pos + neg[:1]
    assert select_passes([], [], rng) == []
    # the 16-shot rule: one random positive (then one negative)
    seen = set()
    for _ in range(20):
        picked = select_passes(pos, neg, rng, single_positive=True)
        assert len(picked) == 2 and picked[0] in pos and picked[1] in neg
        seen.add(picked[0])
    assert seen == set(pos)  # either positive can be the one
    assert select_passes(pos[:1], neg, rng, single_positive=True)[:1] == pos[:1]


# ------------------------------------------------------------------------------------------ fit
def make_split(tmp_path, prefix, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        path = tmp_path / f"{prefix}{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)).save(path)
        gt = int(rng.integers(len(BOXES)))
        ex = Example(example_id=f"{seed}:{i}", ref_id=i, sent_id=i, image_id=i, image_handle=file_image(path), image_size=(W, H),
                     expression=f"the thing {i}.", boxes=BOXES, categories=("thing",) * 5, candidate_key=f"{prefix}:{i}")
        out.append(labelled(ex, BOXES[gt]))
    return out


def run(train, evals, seed=0, steps=6, palette="red", lr=3e-5, config=None, **extra):
    adapter = TinyTorchAdapter(words=["the", "thing"] + [str(i) for i in range(10)])
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    ctx = MethodContext(eval_batch_size=3, adapter=adapter, **extra)
    m = CptBlockMethod(CptConfig(steps=steps, palette=palette, lr=lr, **(config or {})), ctx)
    m.fit(train, seed=seed)
    scores = m.predict([te.example for te in evals])
    return m, adapter, before, scores


def test_fit_trains_reproducibly_and_sees_only_train_images(tmp_path, monkeypatch):
    train = make_split(tmp_path, "train", 3, seed=1)
    evals = make_split(tmp_path, "val", 2, seed=2)
    loaded = []
    import cptbench.data.images as images_mod

    real = images_mod.decode_rgb
    monkeypatch.setattr(images_mod, "decode_rgb", lambda p: loaded.append(str(p)) or real(p))
    rng_before = torch.get_rng_state()
    progress = []
    m1, adapter, before, s1 = run(train, evals, progress=lambda *a: progress.append(a))
    # fit read exactly the training images; predict (afterwards) the evaluation images
    n_fit_loads = len({te.example.image_key for te in train})
    assert sorted(set(loaded[:n_fit_loads])) == sorted(str(te.example.image_key) for te in train)
    assert set(loaded[n_fit_loads:]) == {str(te.example.image_key) for te in evals}
    assert torch.equal(torch.get_rng_state(), rng_before)  # dropout ran on a forked RNG
    after = adapter.model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every weight is trained
    d = m1.describe()
    assert d["train_steps"] == 6 and d["score_rule"] == "ratio" and d["train_batch_size"] == 3
    assert d["train_positive_passes"] == 18 and d["train_negative_passes"] == 18
    assert np.isfinite(d["train_final_loss"])
    assert [p for p in progress if p[0] == "fit"][-1] == ("fit", 6, 6)
    m2, _, _, s2 = run(train, evals)
    assert m2.train_result.losses == m1.train_result.losses
    assert all(np.array_equal(a, b) for a, b in zip(s1, s2))
    # another run seed on the same training examples: the same model under the default seed policy
    m3, _, _, s3 = run(train, evals, seed=1)
    assert m3.train_result.losses == m1.train_result.losses and all(np.array_equal(a, b) for a, b in zip(s1, s3))
    m4, _, _, _ = run(train, evals, seed=1, config={"seed_policy": "per-run"})
    assert m4.train_result.losses != m1.train_result.losses
    with pytest.raises(RuntimeError, match="already"):
        m1.fit(train, seed=0)


def test_fit_learns_with_five_colours_and_saves_weights(tmp_path):
    train = make_split(tmp_path, "train", 4, seed=3)
    m, adapter, _, _ = run(train, train[:1], steps=40, palette="release5", lr=1e-2, artifacts_dir=tmp_path / "art")
    losses = m.train_result.losses
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert not (tmp_path / "art").exists()  # only when asked
    adapter2 = TinyTorchAdapter(words=["the", "thing"] + [str(i) for i in range(10)])
    ctx = MethodContext(adapter=adapter2, artifacts_dir=tmp_path / "art")
    m2 = CptBlockMethod(CptConfig(steps=2, save_weights=True), ctx)
    m2.fit(train, seed=0)
    saved = torch.load(tmp_path / "art" / "cpt-weights" / "model.pt")
    assert torch.equal(saved["head.weight"], adapter2.model.state_dict()["head.weight"])


def test_zero_shot_fit_does_not_train(tmp_path):
    evals = make_split(tmp_path, "val", 1, seed=4)
    m, adapter, before, _ = run([], evals)
    assert all(torch.equal(before[k], v) for k, v in adapter.model.state_dict().items())
    assert m.describe()["score_rule"] == "logit" and m.describe()["train_steps"] == 0


def test_sixteen_shots_keep_one_positive_pass(tmp_path):
    """Every expression has two matching candidates (a duplicated box): the release keeps one
    positive pass per expression at exactly 16 training expressions, all of them otherwise."""
    boxes = np.concatenate([BOXES, BOXES[:1]])  # candidate 5 = candidate 0

    def split(n):
        out = []
        for te in make_split(tmp_path, f"s{n}-", n, seed=5):
            ex = Example(**{**{f: getattr(te.example, f) for f in te.example.__dataclass_fields__}, "boxes": boxes,
                            "categories": ("thing",) * 6})
            out.append(labelled(ex, boxes[0]))
        return out

    sixteen = split(16)
    m, _, _, _ = run(sixteen, [], steps=2)
    d = m.describe()
    assert d["train_single_positive"] and d["positives"] == "release"
    assert d["train_positive_passes"] == 2 * 16 and d["train_negative_passes"] == 2 * 16
    m, _, _, _ = run(sixteen, [], steps=2, config={"positives": "all"})
    assert not m.describe()["train_single_positive"] and m.describe()["train_positive_passes"] == 2 * 2 * 16
    m, _, _, _ = run(split(15), [], steps=2)
    assert not m.describe()["train_single_positive"] and m.describe()["train_positive_passes"] == 2 * 2 * 15


def test_expression_without_positive_gets_two_passes(tmp_path):
    train = make_split(tmp_path, "far", 2, seed=6)
    far = [labelled(te.example, [60.0, 20.0, 63.0, 23.0]) for te in train]  # matches no candidate
    m, _, _, _ = run(far, [], steps=3)
    d = m.describe()
    assert d["train_expressions_without_positive"] == 2 and d["no_positive"] == "release"
    assert d["train_positive_passes"] == 0 and d["train_negative_passes"] == 3 * 2 * 2
    m, _, _, _ = run(far, [], steps=3, config={"no_positive": "one"})
    assert m.describe()["train_negative_passes"] == 3 * 2


def test_release_seed_policy_same_draw_different_run_seeds_same_predictions(tmp_path):
    """Dropout on, four negatives to sample from, batches smaller than k (so order matters): under
    the default policy the run seed changes nothing; under per-run it changes the model."""
    train = make_split(tmp_path, "train", 4, seed=7)
    evals = make_split(tmp_path, "val", 3, seed=8)
    cfg = {"batch_size": 2}
    results = {}
    for policy in ("release", "per-run"):
        for seed in (0, 3):
            m, _, _, scores = run(train, evals, seed=seed, steps=5, lr=1e-2, config={**cfg, "seed_policy": policy})
            assert m.describe()["seed_policy"] == policy
            results[policy, seed] = (m.train_result.losses, np.concatenate(scores), m.describe()["train_seed_entropy"])
    assert results["release", 0][0] == results["release", 3][0]
    assert np.array_equal(results["release", 0][1], results["release", 3][1])
    assert results["release", 0][2] == results["release", 3][2] == [88]
    assert results["per-run", 0][0] != results["per-run", 3][0]
    assert not np.allclose(results["per-run", 0][1], results["per-run", 3][1])
    assert results["per-run", 3][2] == [88, 3]
    with pytest.raises(ValueError, match="seed_policy"):
        CptConfig(seed_policy="per-seed")
