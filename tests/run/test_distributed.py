"""Data-parallel evaluation with torchrun on CPU (gloo): 2 processes give the same predictions and
records as 1, and a run whose rank 1 was killed resumes to the same result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cptbench.results.store import ResultsStore, read_jsonl
from refer_fixture import write_refer_fixture, write_task_card

HERE = Path(__file__).resolve().parents[1] / "helpers"  # the subprocess scripts and fixtures

#: harness behaviour, the same under every dependency version: `.ci/run-min -m 'not slow'` skips it
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_vilt_dir):
    tmp = tmp_path_factory.mktemp("dist")
    root = write_refer_fixture(tmp / "data", splits={"train": 6, "val": 5, "testA": 3, "testB": 2})
    write_task_card(tmp / "cards")
    env = {**os.environ, "CPTBENCH_TASKS_PATH": str(tmp / "cards"), "PYTHONPATH": str(HERE), "HF_HUB_OFFLINE": "1",
           "CPTBENCH_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    for k in ("CPTBENCH_KILL_AT", "CPTBENCH_KILL_RANK", "WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    args = ["-q", "run", "-m", "fake-trainer,cpt", "-k", "1", "--seeds", "0", "-t", "toyref", "--data-root", str(root),
            "--model", str(tiny_vilt_dir), "--set", "cpt.steps=2", "--chunk-size", "6", "--no-leaderboard",
            "--no-sealed"]  # torchrun runs trusted methods in-process (a plug-in is sealed by default)
    return tmp, env, args


def launch(world, results, nproc: int, **extra_env):
    tmp, env, args = world
    script = str(HERE / "fault_cli.py")
    cmd = [sys.executable, script] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), script]
    return subprocess.run(cmd + args + ["--results", str(results)], env={**env, **extra_env}, capture_output=True,
                          text=True, timeout=300)


def predictions(results: Path) -> dict:
    out = {}
    for rec in ResultsStore(results).records():
        rows = read_jsonl(results / rec.predictions_path)
        out[rec.run_id] = ([(r["example_id"], r["pred"], r["correct"]) for r in rows], [r["scores"] for r in rows])
    return out


def same_results(a: Path, b: Path) -> None:
    pa, pb = predictions(a), predictions(b)
    assert pa.keys() == pb.keys() and len(pa) == 2 * 3  # fake-trainer and cpt at k=1, 3 splits each
    for run_id, (picks, scores) in pa.items():
        assert pb[run_id][0] == picks  # the same prediction for every expression
        for s, t in zip(scores, pb[run_id][1]):
            np.testing.assert_allclose(np.array(s, float), np.array(t, float), atol=1e-5)
    ra = {r.run_id: r.stable_view() for r in ResultsStore(a).records()}
    rb = {r.run_id: r.stable_view() for r in ResultsStore(b).records()}
    for run_id in ra:
        for key in ("accuracy", "n", "n_correct", "method_info", "manifest_sha256", "seed_policy"):
            assert ra[run_id][key] == rb[run_id][key], (run_id, key)


def test_two_processes_equal_one(world):
    tmp = world[0]
    one = launch(world, tmp / "one", 1)
    assert one.returncode == 0, one.stderr[-2000:]
    two = launch(world, tmp / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    same_results(tmp / "one", tmp / "two")
    assert all(r.perf.get("world_size") == 2 for r in ResultsStore(tmp / "two").records())


def test_a_killed_rank_resumes_to_the_same_result(world):
    tmp = world[0]
    if not (tmp / "one").exists():
        assert launch(world, tmp / "one", 1).returncode == 0
    killed = launch(world, tmp / "killed", 2, CPTBENCH_KILL_AT="predict.round:4", CPTBENCH_KILL_RANK="1")
    assert killed.returncode != 0
    done_before = len(ResultsStore(tmp / "killed").records()) if (tmp / "killed" / "runs.jsonl").exists() else 0
    assert done_before < 6
    resumed = launch(world, tmp / "killed", 2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    same_results(tmp / "one", tmp / "killed")
