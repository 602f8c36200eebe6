"""Two ``cptbench run`` processes on one results folder: each run is computed and recorded once, by
the process that held its lock, and its predictions file is the one its record describes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cptbench.results.store import ResultsStore, read_jsonl
from refer_fixture import write_refer_fixture, write_task_card

HERE = Path(__file__).resolve().parents[1] / "helpers"  # the subprocess scripts and fixtures

#: harness behaviour, the same under every dependency version: `.ci/run-min -m 'not slow'` skips it
pytestmark = pytest.mark.slow


def test_two_processes_share_the_work_and_record_each_run_once(tmp_path):
    root = write_refer_fixture(tmp_path / "data", splits={"train": 6, "val": 6, "testA": 3, "testB": 3})
    write_task_card(tmp_path / "cards")
    env = {**os.environ, "CPTBENCH_TASKS_PATH": str(tmp_path / "cards"), "PYTHONPATH": str(HERE),
           "CPTBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    args = ["run", "-m", "slow-random", "-k", "1", "--seeds", "0,1,2", "-t", "toyref", "--data-root", str(root),
            "--chunk-size", "4", "--no-leaderboard"]

    def start(results):
        return subprocess.Popen([sys.executable, str(HERE / "slow_cli.py"), *args, "--results", str(results)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    shared = tmp_path / "shared"
    procs = [start(shared), start(shared)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert not any("Traceback" in err for _, err in outs)
    lines = read_jsonl(shared / "runs.jsonl")
    assert len(lines) == len({r["run_id"] for r in lines}) == 9  # 3 seeds x 3 splits, each once
    for rec in ResultsStore(shared).records():
        data = (shared / rec.predictions_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec.predictions_sha256  # the file its record describes
    assert not list(shared.rglob("*.partial.jsonl"))

    alone = tmp_path / "alone"
    p = start(alone)
    p.communicate(timeout=300)
    ref = {r.run_id: r.stable_view() for r in ResultsStore(alone).records()}
    got = {r.run_id: r.stable_view() for r in ResultsStore(shared).records()}
    assert got == ref
    again = start(shared)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "0 new runs, 9 already" in err


def test_a_locked_run_is_skipped_with_a_message(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cptbench.cli.main import cli
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest, plan
    from cptbench.tasks.spec import load_task_card

    root = write_refer_fixture(tmp_path / "data")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    task = load_task_card(tmp_path / "cards" / "toyref.yaml")
    request = RunRequest([task], ["oracle"], [0], data_root=str(root))
    store = ResultsStore(tmp_path / "res")
    jobs = plan(request)
    jobs = Runner(request, store).prepare(jobs)
    val = next(r for r in jobs[0].runs if r.split == "val")
    held = store.try_lock(val.run_id)  # another process computing val
    assert held is not None and store.try_lock(val.run_id) is None
    r = CliRunner().invoke(cli, ["run", "-m", "oracle", "-k", "0", "-t", "toyref", "--data-root", str(root),
                                 "--results", str(tmp_path / "res"), "--no-leaderboard"])
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "val: skipped, being computed by pid" in out and "1 skipped: being computed by another process" in out
    assert {rec.split for rec in store.records()} == {"testA", "testB"}
    held.release()
    r = CliRunner().invoke(cli, ["run", "-m", "oracle", "-k", "0", "-t", "toyref", "--data-root", str(root),
                                 "--results", str(tmp_path / "res"), "--no-leaderboard"])
    assert "1 new runs" in r.output and {rec.split for rec in store.records()} == {"val", "testA", "testB"}
