"""Inputs that used to be silently misread, or to end in "internal error": dates, restores, launcher
variables, broken weights, cards that escape the data root, non-finite options, lax study and
config files. Each ends in one message naming the file or value and the fix, or does what it says."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.core.errors import UsageError
from cptbench.core.values import parse_when
from cptbench.results.store import ResultsStore
from refer_fixture import write_refer_fixture, write_task_card

BUNDLED = Path(__file__).resolve().parents[2] / "cptbench" / "assets" / "mini-vilt"


@pytest.fixture
def toy(tmp_path, monkeypatch):
    root = write_refer_fixture(tmp_path / "data")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path, root


def cptbench(*args, env=None):
    r = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert "Traceback" not in r.output and "internal error" not in r.output, r.output
    return r


def run_random(tmp, root, *extra):
    return cptbench("run", "-t", "toyref", "-m", "random", "-k", "0", "--seeds", "0,1", "--data-root", root,
                    "--results", tmp / "res", "--no-leaderboard", *extra)


# ---------------------------------------------------------------------------------------- dates
def test_dates_are_iso_dates_times_or_durations_and_nothing_else():
    now = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
    assert parse_when("2026-12-01", "--since", now=now) == datetime(2026, 12, 1, tzinfo=timezone.utc)
    assert parse_when("2026-12-01", "--until", end_of_day=True, now=now) == datetime(2026, 12, 2, tzinfo=timezone.utc)
    assert parse_when("2026-12-01T08:30", "--since", now=now) == datetime(2026, 12, 1, 8, 30, tzinfo=timezone.utc)
    assert parse_when("2026-12-01T08:30+02:00", "--since", now=now) == datetime(2026, 12, 1, 6, 30, tzinfo=timezone.utc)
    assert parse_when("7d", "--since", now=now) == now - timedelta(days=7)
    assert parse_when("12h", "--since", now=now) == now - timedelta(hours=12)
    for bad in ("yesterday", "last-week", "2026-13-01", "7 days", "", "2026-12-01T25:00"):
        with pytest.raises(UsageError, match="--since"):
            parse_when(bad, "--since", now=now)


def test_a_bad_date_moves_nothing_and_restore_brings_runs_back(toy):
    tmp, root = toy
    assert run_random(tmp, root).exit_code == 0
    store = ResultsStore(tmp / "res")
    before = {r.run_id: r for r in store.records()}
    r = cptbench("runs", "--results", store.root, "--until", "yesterday", "--delete", "--yes")
    assert r.exit_code == 2 and "'yesterday' is not a date" in r.output and len(store.records()) == 6
    assert cptbench("runs", "--results", store.root, "--until", "1d").output.startswith("0 of 6 runs")
    r = cptbench("runs", "--results", store.root, "--since", "1h", "--seed", "1", "--delete", "--yes")
    assert r.exit_code == 0 and len(store.records()) == 3
    r = cptbench("runs", "--results", store.root, "--restore", "--yes")
    assert r.exit_code == 0 and "restored 3 runs" in r.output
    after = {r.run_id: r for r in store.records()}
    assert after.keys() == before.keys() and not store.layout.deleted_runs.read_text().strip()
    from cptbench.report.selection import load_predictions

    assert all(len(load_predictions(store, rec)) == rec.n for rec in after.values())  # files back, hashes match
    assert cptbench("runs", "--results", store.root, "--delete", "--restore").exit_code == 2


# ------------------------------------------------------------------------------- launcher, model
@pytest.mark.parametrize("env, text", [({"WORLD_SIZE": "2"}, "torchrun --nproc_per_node 2"),
                                       ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not an integer")])
def test_launcher_variables_without_a_launcher_are_explained(toy, env, text):
    tmp, root = toy
    r = cptbench("run", "-t", "toyref", "-m", "random", "-k", "0", "--data-root", root, "--results", tmp / "res", env=env)
    assert r.exit_code == 2 and text in r.output


@pytest.mark.parametrize("weights, content", [("model.safetensors", b"truncated"), ("model.safetensors", None),
                                              ("pytorch_model.bin", b"not a torch file")])
def test_broken_weights_name_the_file(toy, weights, content):
    tmp, root = toy
    model = tmp / "model"
    shutil.copytree(BUNDLED, model)
    if content is None:  # cut a real file in the middle
        data = (model / "model.safetensors").read_bytes()
        content = data[: len(data) // 2]
    if weights != "model.safetensors":
        (model / "model.safetensors").unlink()
    (model / weights).write_bytes(content)
    r = cptbench("run", "-t", "toyref", "-m", "cpt", "-k", "0", "--data-root", root, "--model", model,
                 "--results", tmp / "res", "--no-leaderboard")
    assert r.exit_code == 2 and str(model / weights) in r.output and "download or save the model again" in r.output


@pytest.mark.parametrize("key, value", [("dataset", "../../etc"), ("dataset", "a/b"), ("image_dir", "../images"),
                                        ("image_dir", "/abs/images")])
def test_a_card_cannot_point_outside_the_data_root(tmp_path, monkeypatch, key, value):
    card = write_task_card(tmp_path / "cards", name="escape")
    text = card.read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith(f"{key}:")]
    card.write_text("\n".join(lines + [f"{key}: {json.dumps(value)}"]) + "\n")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    r = cptbench("run", "-t", "escape", "-m", "random", "-k", "0", "--data-root", tmp_path, "--results", tmp_path / "r")
    assert r.exit_code == 2 and "escape.yaml" in r.output and f"key '{key}'" in r.output


# ------------------------------------------------------------------------------ options, configs
@pytest.mark.parametrize("option", ["lr=inf", "lr=nan", "ft.lr=-inf", "alpha=nan"])
def test_non_finite_option_values_are_refused_for_every_method(toy, option):
    tmp, root = toy
    r = cptbench("run", "-t", "toyref", "-m", "cpt,ft", "-k", "1", "--seeds", "0", "--data-root", root,
                 "--results", tmp / "res", "--set", option)
    assert r.exit_code == 2 and "finite" in r.output and not (tmp / "res" / "runs.jsonl").exists()


@pytest.mark.parametrize("line, text", [("limit: 0", "key 'limit' must be a whole number >= 1"),
                                        ("batch_size: -2", "key 'batch_size'"),
                                        ("skip_bad: 'no'", "key 'skip_bad' must be true or false"),
                                        ("tasks: [toyrf]", "key 'tasks': unknown task 'toyrf'")])
def test_study_files_are_as_strict_as_the_command_line(toy, line, text):
    tmp, root = toy
    study = tmp / "study.yaml"
    study.write_text(f"methods: [random]\nshots: [0]\nseeds: [0]\ndata_root: {root}\n{line}\n")
    r = cptbench("sweep", study, "--results", tmp / "res", "--no-leaderboard")
    assert r.exit_code == 2 and "study.yaml" in r.output and text in r.output


def test_config_errors_name_the_file_and_key_and_scalars_are_accepted(toy):
    tmp, root = toy
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"run:\n  method: random\n  shots: 0\n  seeds: [0, 1]\n  task: toyref\n  data_root: {root}\n  limit: 0\n")
    r = cptbench("--config", cfg, "run", "--results", tmp / "res")
    assert r.exit_code == 2 and "cfg.yaml: section 'run', key 'limit'" in r.output
    cfg.write_text(f"run:\n  method: random\n  shots: 0\n  seeds: [0, 1]\n  task: toyref\n  data_root: {root}\n"
                   f"  set: 'steps=2'\n")
    r = cptbench("--config", cfg, "run", "--results", tmp / "res")
    assert r.exit_code == 2 and "'steps'" in r.output and "--config" in r.output and "cfg.yaml" in r.output
    cfg.write_text(f"run:\n  method: random\n  shots: 0\n  seeds: [0, 1]\n  task: toyref\n  data_root: {root}\n")
    r = cptbench("--config", cfg, "run", "--results", tmp / "res", "--no-leaderboard")
    assert r.exit_code == 0 and len(ResultsStore(tmp / "res").records()) == 6


# ---------------------------------------------------------------------------------- data files
def _edit_val_sentence(root, text):
    import pickle

    refs_file = root / "toyref" / "refs(unc).p"
    refs = pickle.loads(refs_file.read_bytes())
    sent = next(r for r in refs if r["split"] == "val")["sentences"][0]
    sent["sent"] = sent["raw"] = text
    refs_file.write_bytes(pickle.dumps(refs))


def test_an_expression_of_only_punctuation_is_bad_data_not_a_scored_expression(toy):
    tmp, root = toy
    _edit_val_sentence(root, "?!...")
    r = run_random(tmp, root)
    assert r.exit_code == 1 and "which has no word (only punctuation)" in r.output and "--skip-bad" in r.output
    r = run_random(tmp, root, "--skip-bad")
    assert r.exit_code == 0
    val = next(rec for rec in ResultsStore(tmp / "res").records() if rec.split == "val")
    assert sum(val.n_skipped.values()) >= 1


def test_a_lone_surrogate_in_an_expression_is_read_as_a_replacement_character(toy):
    tmp, root = toy
    _edit_val_sentence(root, "the left \ud800 one")
    assert run_random(tmp, root).exit_code == 0
    r = cptbench("errors", "-t", "toyref", "-m", "random", "--split", "val", "--data-root", root, "--results", tmp / "res")
    assert r.exit_code == 0
    from cptbench.run.session import DataSession
    from cptbench.tasks import get_task

    texts = [ex.expression for ex in DataSession(str(root)).split(get_task("toyref"), "val").examples]
    assert "the left ? one" in texts


def test_a_decompression_bomb_image_is_named(toy):
    from PIL import Image

    tmp, root = toy
    Image.new("L", (20000, 20000)).save(root / "images" / "train2014" / "COCO_train2014_000000000007.png")
    r = run_random(tmp, root)
    assert r.exit_code == 1 and "COCO_train2014_000000000007.png" in r.output and "DecompressionBomb" in r.output


@pytest.mark.parametrize("edit, text", [("nan-score", "has score nan"), ("duplicate", "twice")])
def test_detections_with_nan_scores_or_duplicates_are_refused(toy, edit, text):
    tmp, root = toy
    anns = json.loads((root / "toyref" / "instances.json").read_text())["annotations"]
    dets = [{"box": a["bbox"], "image_id": a["image_id"], "category_name": "x", "score": 0.5} for a in anns]
    if edit == "nan-score":
        dets[0]["score"] = float("nan")
    else:
        dets = dets + dets[:1]
    (tmp / "dets.json").write_text(json.dumps(dets))
    r = cptbench("run", "-t", "toyref", "-m", "oracle", "-k", "0", "--data-root", root, "--proposals", tmp / "dets.json",
                 "--results", tmp / "res")
    assert r.exit_code == 1 and "dets.json" in r.output and text in r.output
