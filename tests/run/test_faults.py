"""Fault injection: ``kill -9`` at every named kill point, then resume; the results must equal an
uninterrupted run field by field (records without their timings, predictions byte for byte,
manifests), with nothing lost, nothing counted twice and nothing left behind.

The scenario is a multi-job command with few-shot jobs: a trained method (k = 0 and k = 1, two
seeds) and the random baseline, three eval splits each, predictions saved every 5 expressions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cptbench.core import faults
from cptbench.results.store import ResultsStore, read_jsonl
from refer_fixture import write_refer_fixture, write_task_card

HERE = Path(__file__).resolve().parents[1] / "helpers"  # the subprocess scripts and fixtures

#: harness behaviour, the same under every dependency version: `.ci/run-min -m 'not slow'` skips it
pytestmark = pytest.mark.slow

#: (kill point, which pass of it kills): every point of cptbench.core.faults, several at more than one moment
KILLS = [
    ("prepare.done", 1), ("lock.taken", 1), ("lock.taken", 5), ("job.start", 1), ("job.start", 3),
    ("fit.start", 2), ("fit.done", 2), ("fit.done", 3), ("predict.round", 2), ("predict.chunk", 1), ("predict.chunk", 7),
    ("chunk.torn", 1), ("chunk.torn", 6), ("chunk.saved", 2), ("chunk.saved", 9), ("split.predicted", 1),
    ("split.predicted", 5), ("predictions.tmp", 2), ("predictions.tmp", 8), ("predictions.done", 3),
    ("record.torn", 1), ("record.torn", 7), ("record.done", 2), ("record.done", 10), ("partial.dropped", 4),
    ("manifest.tmp", 1), ("manifest.tmp", 2), ("manifest.done", 2), ("leaderboard.tmp", 1),
]


def test_every_kill_point_is_exercised():
    assert {p for p, _ in KILLS} == set(faults.POINTS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    root = write_refer_fixture(tmp / "data", splits={"train": 6, "val": 4, "testA": 3, "testB": 3})
    write_task_card(tmp / "cards")
    env = {**os.environ, "CPTBENCH_TASKS_PATH": str(tmp / "cards"), "PYTHONPATH": str(HERE),
           "CPTBENCH_CACHE": str(tmp / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop(faults.ENV, None)
    ref = tmp / "reference"
    assert cli(root, ref, env).returncode == 0
    return tmp, root, env, snapshot(ref)


def cli(root, results, env, kill: str | None = None):
    e = dict(env)
    if kill:
        e[faults.ENV] = kill
    args = ["-q", "run", "-m", "fake-trainer,random", "-k", "0,1", "--seeds", "0,1", "-t", "toyref",
            "--data-root", str(root), "--results", str(results), "--chunk-size", "5"]
    return subprocess.run([sys.executable, str(HERE / "fault_cli.py"), *args], env=e, capture_output=True, text=True,
                          timeout=120)


def snapshot(results: Path) -> dict:
    store = ResultsStore(results)
    lines = read_jsonl(store.runs_path)
    recs = store.records()
    assert len(lines) == len(recs), "a run was recorded twice"
    return {
        "records": {r.run_id: r.stable_view() for r in recs},
        "predictions": {r.run_id: (results / r.predictions_path).read_bytes() for r in recs},
        "manifests": {p.name: p.read_bytes() for p in sorted((results / "splits").rglob("*.json"))},
        "leftovers": sorted(str(p.relative_to(results)) for p in results.rglob("*")
                            if p.name.endswith(".partial.jsonl") or p.name.endswith(".tmp")),
        "leaderboard": (results / "leaderboard.csv").read_text() if (results / "leaderboard.csv").exists() else None,
    }


@pytest.mark.parametrize("point,hit", KILLS, ids=[f"{p}:{n}" for p, n in KILLS])
def test_kill_then_resume_equals_uninterrupted(world, point, hit):
    tmp, root, env, reference = world
    results = tmp / f"killed-{point}-{hit}"
    killed = cli(root, results, env, kill=f"{point}:{hit}")
    assert killed.returncode == -9, f"the kill point was not reached: {killed.returncode}\n{killed.stderr[-800:]}"
    resumed = cli(root, results, env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    got = snapshot(results)
    assert got["records"].keys() == reference["records"].keys()
    for run_id, rec in reference["records"].items():
        assert got["records"][run_id] == rec, f"record {run_id} differs after a kill at {point}:{hit}"
    assert got["predictions"] == reference["predictions"]
    assert got["manifests"] == reference["manifests"]
    assert got["leftovers"] == [] and reference["leftovers"] == []
    assert got["leaderboard"] == reference["leaderboard"]
