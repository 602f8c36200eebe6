"""One --threads for run, sweep and bench: one parser and one environment variable
(cptbench.methods.numerics), recorded in every record's perf; bench measures each count of a
comma list in turn."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.core.errors import UsageError
from cptbench.methods.numerics import THREADS_ENV, parse_threads, threads_setting
from cptbench.results.store import ResultsStore


@pytest.fixture
def keep_threads():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_one_parser_for_option_and_environment(monkeypatch):
    assert parse_threads("2") == [2] and parse_threads(3) == [3]
    assert parse_threads("1, 2,1,4") == [1, 2, 4]
    for bad in ("0", "two", "1,", "-1"):
        with pytest.raises(UsageError, match="whole numbers >= 1"):
            parse_threads(bad)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert threads_setting(None) == 3 and threads_setting(2) == 2
    monkeypatch.setenv(THREADS_ENV, "1,2")
    with pytest.raises(UsageError, match="only for `cptbench bench`"):
        threads_setting(None)
    monkeypatch.delenv(THREADS_ENV)
    assert threads_setting(None) is None


def test_run_takes_one_count():
    r = CliRunner().invoke(cli, ["run", "-m", "random", "--threads", "1,2"])
    assert r.exit_code == 2 and "one thread count" in r.output
    r = CliRunner().invoke(cli, ["run", "-m", "random", "--threads", "0"])
    assert r.exit_code == 2 and "--threads" in r.output


def test_sweep_records_the_threads_like_run(tmp_path, keep_threads):
    study = tmp_path / "study.yaml"
    study.write_text(f"methods: [random]\nshots: [0]\nseeds: [0]\nlimit: 3\nresults: {tmp_path / 'res'}\n")
    r = CliRunner().invoke(cli, ["sweep", str(study), "--threads", "1", "--no-leaderboard"])
    assert r.exit_code == 0, r.output
    recs = ResultsStore(tmp_path / "res").records()
    assert recs and {rec.perf["threads"] for rec in recs} == {1}
    # the same count from the study file's key (the --config schema)
    study.write_text(f"methods: [random]\nshots: [0]\nseeds: [1]\nlimit: 3\nthreads: 1\nresults: {tmp_path / 'r2'}\n")
    r = CliRunner().invoke(cli, ["sweep", str(study), "--no-leaderboard"])
    assert r.exit_code == 0, r.output
    assert {rec.perf["threads"] for rec in ResultsStore(tmp_path / "r2").records()} == {1}


def _bench(tmp_path, *threads: str, env=None):
    out = tmp_path / "b.json"
    r = CliRunner().invoke(cli, ["bench", "--model", "tiny", "--images", "2", "--no-forward", "--json", str(out),
                                 *threads], env=env or {})
    assert r.exit_code == 0, r.output
    return r.output, json.loads(out.read_text())


def test_bench_one_entry_per_thread_count(tmp_path, keep_threads):
    out, doc = _bench(tmp_path, "--threads", "1,2")
    assert isinstance(doc, list) and [d["threads"] for d in doc] == [1, 2]
    assert all(d["null"]["passes"] > 0 for d in doc)
    table = out[out.index("threads  null passes/s"):].splitlines()
    assert [line.split()[0] for line in table[1:3]] == ["1", "2"]


def test_bench_single_count_keeps_the_one_object(tmp_path, keep_threads):
    _, doc = _bench(tmp_path, "--threads", "1")
    assert isinstance(doc, dict) and doc["threads"] == 1
    _, doc = _bench(tmp_path, env={THREADS_ENV: "1"})
    assert isinstance(doc, dict) and doc["threads"] == 1


def test_bench_is_never_silent_for_long(monkeypatch, keep_threads):
    """A measured run reports progress at most every PROGRESS_EVERY_S seconds, within a predict call
    too (a fake clock makes every call look 3 s after the last)."""
    from cptbench.run import bench

    now = [0.0]

    def fake_clock():
        now[0] += 3.0
        return now[0]

    monkeypatch.setattr(bench, "clock", fake_clock)
    lines = []
    bench.run_benchmark(model="tiny", images=2, forward=False, chunk=4, progress=lines.append)
    within = [line for line in lines if "passes of this call" in line]
    between = [line for line in lines if line.strip().endswith("expressions")]
    assert within and between, lines
