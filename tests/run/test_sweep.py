"""``cptbench sweep``: a study file run locally, and the same cells as Ray tasks (local Ray on CPU)
giving the same records; a crashed worker's cell is retried; records are written once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.results.store import ResultsStore, read_jsonl
from refer_fixture import write_refer_fixture, write_task_card

HERE = Path(__file__).resolve().parents[1] / "helpers"  # the subprocess scripts and fixtures

#: harness behaviour, the same under every dependency version: `.ci/run-min -m 'not slow'` skips it
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    root = write_refer_fixture(tmp / "data", splits={"train": 6, "val": 4, "testA": 2, "testB": 2})
    write_task_card(tmp / "cards")
    study = tmp / "study.yaml"
    study.write_text(f"tasks: [toyref]\nmethods: [fake-trainer, random]\nshots: [1]\nseeds: [0, 1]\n"
                     f"data_root: {root}\n")
    env = {**os.environ, "CPTBENCH_TASKS_PATH": str(tmp / "cards"), "PYTHONPATH": str(HERE), "HF_HUB_OFFLINE": "1",
           "CPTBENCH_CACHE": str(tmp / "cache")}
    for k in ("CPTBENCH_KILL_AT", "CPTBENCH_KILL_ONCE"):
        env.pop(k, None)
    return tmp, study, env


def sweep(world, results, *extra, **env_extra):
    tmp, study, env = world
    return subprocess.run([sys.executable, str(HERE / "fault_cli.py"), "sweep", str(study), "--results", str(results),
                           "--no-leaderboard", *extra], env={**env, **env_extra}, capture_output=True, text=True,
                          timeout=600)


def stable(results: Path) -> dict:
    lines = read_jsonl(results / "runs.jsonl")
    assert len(lines) == len({r["run_id"] for r in lines}), "a run was recorded twice"
    out = {}
    for r in ResultsStore(results).records():
        view = r.stable_view()
        out[r.run_id] = (view, (results / r.predictions_path).read_bytes())
    return out


def test_local_sweep_equals_run(world):
    tmp, study, env = world
    local = sweep(world, tmp / "local")
    assert local.returncode == 0, local.stderr[-2000:]
    assert "sweep: 4 cells, 12 runs on this process" in " ".join(local.stderr.split())
    ran = subprocess.run([sys.executable, str(HERE / "fault_cli.py"), "run", "-t", "toyref", "-m", "fake-trainer,random",
                          "-k", "1", "--seeds", "0,1", "--data-root", str(tmp / "data"), "--results", str(tmp / "viarun"),
                          "--no-leaderboard"], env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert stable(tmp / "local") == stable(tmp / "viarun")


def test_study_file_is_strict(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("tasks: [synthref]\nmethod: [cpt]\n")
    r = CliRunner().invoke(cli, ["sweep", str(bad), "--results", str(tmp_path / "r")])
    assert r.exit_code == 2 and "unknown study key 'method'. Did you mean 'methods'" in r.output


def test_ray_sweep_gives_the_sequential_records_and_retries_a_crashed_worker(world):
    pytest.importorskip("ray", reason="the Ray sweep needs the optional extra cptbench[ray]")
    tmp, study, env = world
    if not (tmp / "local").exists():
        assert sweep(world, tmp / "local").returncode == 0
    once = tmp / "crashed-once"
    # the first worker to start a fit dies (SIGKILL); its cell must be retried on a fresh worker
    r = sweep(world, tmp / "ray", "--ray", "--workers", "2", CPTBENCH_KILL_AT="fit.start", CPTBENCH_KILL_ONCE=str(once))
    assert r.returncode == 0, r.stderr[-3000:]
    assert once.exists(), "no worker crashed: the retry path was not exercised"
    assert "worker lost" in r.stderr and "retrying" in r.stderr
    assert stable(tmp / "ray") == stable(tmp / "local")
    again = sweep(world, tmp / "ray", "--ray", "--workers", "2")
    assert again.returncode == 0 and "0 new runs, 12 already" in " ".join(again.stderr.split())
