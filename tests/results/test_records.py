"""Honest records: timings counted once, method facts per split, typed and validated lines."""

from __future__ import annotations

import json

import pytest

from cptbench.results.records import SCHEMA_VERSION, RecordError, RunRecord
from cptbench.run.engine import Runner
from cptbench.run.plan import RunRequest, plan
from cptbench.results.store import ResultsStore
from cptbench.tasks.spec import load_task_card
from record_fixture import make_record
from refer_fixture import write_refer_fixture, write_task_card


@pytest.fixture
def toy(tmp_path, monkeypatch):
    root = write_refer_fixture(tmp_path / "data", splits={"train": 6, "val": 4, "testA": 2, "testB": 1})
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    import plugin_methods  # noqa: F401  (registers fake-trainer)

    return tmp_path, root, load_task_card(tmp_path / "cards" / "toyref.yaml")


def test_fit_is_counted_once_and_counters_are_per_split(toy):
    tmp, root, task = toy
    request = RunRequest([task], ["fake-trainer"], [2], seeds=[0], data_root=str(root), chunk_size=3)
    recs = Runner(request, ResultsStore(tmp / "res")).run(plan(request))
    assert [r.split for r in recs] == ["val", "testA", "testB"]
    assert recs[0].fit_seconds >= 0 and all(r.fit_seconds == 0 for r in recs[1:])
    for r in recs:
        assert r.seconds == pytest.approx(r.fit_seconds + r.predict_seconds, abs=2e-3)
        assert r.method_info["expressions"] == r.n  # this split's own count, not the job's running total
        assert r.method_info["passes"] == {"total": 2 * r.n}
        assert r.method_info["train_steps"] == 6 and r.seed_policy == "release"
    assert [r.n for r in recs] == [16, 8, 4]


def test_cpt_records_name_their_split_only(toy, tiny_vilt_dir):
    tmp, root, task = toy
    request = RunRequest([task], ["cpt"], [1], seeds=[0], data_root=str(root), model=str(tiny_vilt_dir),
                         options={"steps": "2"})
    recs = Runner(request, ResultsStore(tmp / "res")).run(plan(request))
    for r in recs:
        assert r.method_info["expressions"] == r.n and r.method_info["passes"] == 3 * r.n  # 3 candidates, 1 colour
        assert r.method_info["train_steps"] == 2 and r.method_info["score_rule"] == "ratio"
        assert "painted_copies" in r.perf and "painted_copies" not in r.method_info


def test_record_round_trip_and_validation():
    rec = make_record()
    back = RunRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert back == rec and back.schema_version == SCHEMA_VERSION
    with pytest.raises(RecordError, match="field 'n' is str"):
        RunRecord.from_json({**rec.to_json(), "n": "10"}, "x")
    with pytest.raises(RecordError, match="lacks accuracy"):
        RunRecord.from_json({k: v for k, v in rec.to_json().items() if k != "accuracy"}, "x")
    assert rec["accuracy"] == rec.accuracy == 50.0  # mapping-style reads for older scripts


def test_stable_view_drops_only_volatile_fields():
    a = make_record(seconds=1.0, fit_seconds=0.5, predict_seconds=0.5, perf={"x": 1}, created_at="t1")
    b = make_record(seconds=9.0, fit_seconds=4.5, predict_seconds=4.5, perf={"x": 7}, created_at="t2", resumed_examples=3)
    assert a.stable_view() == b.stable_view()
    assert make_record(accuracy=1.0).stable_view() != a.stable_view()
