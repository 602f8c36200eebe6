"""An interrupted run resumes with nothing lost or duplicated (Ctrl-C and kill -9)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cptbench.results.store import ResultsStore, append_jsonl, read_jsonl
from refer_fixture import write_refer_fixture, write_task_card

HERE = Path(__file__).resolve().parents[1] / "helpers"  # the subprocess scripts and fixtures


@pytest.fixture
def env(tmp_path):
    root = write_refer_fixture(tmp_path / "data", splits={"train": 6, "val": 12, "testA": 6, "testB": 6})
    write_task_card(tmp_path / "cards")
    e = {**os.environ, "CPTBENCH_TASKS_PATH": str(tmp_path / "cards"), "PYTHONPATH": str(HERE)}
    return tmp_path, root, e


def cli_args(root, results):
    return ["-q", "run", "-m", "slow-random", "-m", "random", "-k", "0,1,2", "--seeds", "0,1", "-t", "toyref",
            "--data-root", str(root), "--results", str(results), "--no-leaderboard"]


def comparable(results):
    recs = ResultsStore(results).records()
    out = {}
    for r in recs:
        preds = read_jsonl(results / r["predictions_path"])
        out[r["run_id"]] = (r["accuracy"], r["n"], [(p["example_id"], p["pred"]) for p in preds])
    return out


def test_torn_line_is_repaired_before_next_append(tmp_path):
    p = tmp_path / "runs.jsonl"
    append_jsonl(p, [{"run_id": "a"}])
    with open(p, "ab") as f:
        f.write(b'{"run_id": "b", "accur')  # a kill mid-write
    assert [r["run_id"] for r in read_jsonl(p)] == ["a"]
    append_jsonl(p, [{"run_id": "c"}])
    assert [r["run_id"] for r in read_jsonl(p)] == ["a", "c"]


def test_append_record_is_idempotent(tmp_path):
    from record_fixture import make_record

    store = ResultsStore(tmp_path)
    assert store.append_record(make_record(run_id="x", accuracy=1.0))
    assert not store.append_record(make_record(run_id="x", accuracy=2.0))
    assert [r.accuracy for r in store.records()] == [1.0]


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(env):
    tmp, root, e = env
    clean = tmp / "clean"
    subprocess.run([sys.executable, str(HERE / "slow_cli.py"), *cli_args(root, clean)], env=e, check=True, capture_output=True)
    expected = comparable(clean)
    assert len(expected) == (1 + 2 * 2) * 3 + 2 * 3  # slow-random: k0 x1 seed + k1,k2 x2 seeds; random (no training): k0 x 2 seeds; 3 splits

    interrupted = tmp / "interrupted"
    rng = np.random.default_rng(0)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, str(HERE / "slow_cli.py"), *cli_args(root, interrupted)], env=e,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.8, 2.5)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    subprocess.run([sys.executable, str(HERE / "slow_cli.py"), *cli_args(root, interrupted)], env=e, check=True, capture_output=True)
    assert kills >= 1
    lines = read_jsonl(interrupted / "runs.jsonl")
    assert len(lines) == len({r["run_id"] for r in lines}) == len(expected)  # no duplicates, none lost
    assert comparable(interrupted) == expected
    assert not list((interrupted / "predictions").glob("*.partial.jsonl"))
    manifest = json.loads((interrupted / "splits" / "toyref" / "k2_s1.json").read_text())
    assert len(manifest["examples"]) == 2 and len(manifest["sha256"]) == 64


def test_ctrl_c_mid_run_resumes_from_partial_predictions(env):
    tmp, root, e = env
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest, plan
    from cptbench.tasks.spec import load_task_card
    import plugin_methods  # noqa: F401  (registers slow-random)

    task = load_task_card(tmp / "cards" / "toyref.yaml")
    request = RunRequest([task], ["slow-random"], [1], seeds=[0], data_root=str(root), chunk_size=4)
    store = ResultsStore(tmp / "res")
    calls = {"n": 0}

    def interrupt_after_two_chunks(stage, done, total):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Runner(request, store, progress=interrupt_after_two_chunks).run(plan(request))
    assert store.records() == []
    partial = next((tmp / "res" / "predictions").glob("*.partial.jsonl"))
    assert [len(c["rows"]) for c in read_jsonl(partial)] == [4, 4]  # two saved chunks
    new = Runner(request, store).run(plan(request))
    assert len(new) == 3 and new[0].resumed_examples == 8 and new[0].n == 48

    fresh = ResultsStore(tmp / "fresh")
    ref = Runner(request, fresh).run(plan(request))
    assert [r.stable_view() for r in new] == [r.stable_view() for r in ref]
