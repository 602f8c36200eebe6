"""cptbench reproduce RUN_ID: a recorded run rerun from its record alone matches every prediction;
changed weights or data are refused with the fingerprint difference, before anything runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import cptbench
from cptbench.cli.main import cli
from cptbench.core.errors import UsageError
from cptbench.results.store import ResultsStore, read_jsonl
from cptbench.run.reproduce import ReproduceRefused, compare_predictions, find_record, reproduce
from refer_fixture import write_refer_fixture, write_task_card


@pytest.fixture
def toy(tmp_path, monkeypatch):
    root = write_refer_fixture(tmp_path / "data", splits={"train": 6, "val": 3, "testA": 2, "testB": 1})
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path, root


def _run(tmp, root, *args):
    r = CliRunner().invoke(cli, ["run", "-t", "toyref", "--data-root", str(root), "--results", str(tmp / "res"),
                                 "--split", "val", "--no-leaderboard", "--threads", "1", *args])
    assert r.exit_code == 0, r.output
    return ResultsStore(tmp / "res")


def _edit_record(store: ResultsStore, **changes):
    rows = list(read_jsonl(store.runs_path))
    store.runs_path.write_text("".join(json.dumps({**row, **changes}) + "\n" for row in rows))


def test_a_model_run_is_reproduced_prediction_by_prediction(toy):
    tmp, root = toy
    model = tmp / "model"
    shutil.copytree(Path(cptbench.__file__).parent / "assets" / "mini-vilt", model)
    store = _run(tmp, root, "-m", "cpt", "-k", "0", "--model", str(model))
    (rec,) = store.records()
    r = CliRunner().invoke(cli, ["reproduce", rec.run_id[:10], "--results", str(store.root), "--data-root", str(root), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    assert doc["all_match"] and doc["matched"] == doc["n"] == rec.n > 0
    assert doc["max_score_diff"] == 0.0 and doc["rerun_id"] == rec.run_id
    # changed weights: refused with both fingerprints, before any prediction
    weights = next(p for p in model.iterdir() if p.suffix in (".safetensors", ".bin"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    r = CliRunner().invoke(cli, ["reproduce", rec.run_id, "--results", str(store.root), "--data-root", str(root)])
    assert r.exit_code == 1, r.output
    text = " ".join(r.output.split())
    assert "cannot be reproduced as recorded" in text and f"{rec.model_fingerprint} in the record" in text
    assert "Traceback" not in r.output


def test_a_cheap_run_matches_and_changed_data_is_refused(toy, tmp_path):
    tmp, root = toy
    store = _run(tmp, root, "-m", "random", "-k", "0", "--seeds", "3")
    (rec,) = store.records()
    out = reproduce(store, rec.run_id, tmp_path / "scratch", data_root=str(root))
    assert out.all_match and out.matched == rec.n and out.rerun.accuracy == rec.accuracy
    _edit_record(store, data_fingerprint="0" * 16)
    with pytest.raises(ReproduceRefused, match=r"data of task toyref: fingerprint \w+ now, 0{16} in the record"):
        reproduce(store, rec.run_id, tmp_path / "scratch2", data_root=str(root))


def test_run_id_prefixes_are_checked(toy):
    tmp, root = toy
    store = _run(tmp, root, "-m", "random", "-k", "0", "--seeds", "0,1")
    a, b = store.records()
    assert find_record(store, a.run_id[:8]).run_id == a.run_id
    with pytest.raises(UsageError, match="unknown run id"):
        find_record(store, "zz")
    common = next(i for i in range(len(a.run_id)) if a.run_id[i] != b.run_id[i])
    if common:
        with pytest.raises(UsageError, match="matches 2 runs"):
            find_record(store, a.run_id[:common])


def test_differing_predictions_are_counted_and_shown():
    old = [{"example_id": "a", "pred": 1, "status": "ok", "scores": [0.1, 0.9]},
           {"example_id": "b", "pred": 0, "status": "ok", "scores": [0.8, 0.2]}]
    new = [{"example_id": "a", "pred": 1, "status": "ok", "scores": [0.1, 0.85]},
           {"example_id": "b", "pred": 1, "status": "ok", "scores": [0.3, 0.7]}]
    matched, worst, diffs = compare_predictions(old, new)
    assert matched == 1 and worst == pytest.approx(0.5)
    assert diffs == [{"example_id": "b", "recorded": 0, "rerun": 1}]
    matched, _, diffs = compare_predictions(old, new[:1])
    assert matched == 1 and diffs[0]["rerun"] is None
