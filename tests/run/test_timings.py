"""Records time what they name: ``load_seconds`` (imports and model load), ``fit_seconds`` (the fit
without loading), ``predict_seconds`` (the ``predict`` calls alone), ``seconds`` their sum; and
``bench`` times the same thing as a run (a fake clock makes every duration known)."""

from __future__ import annotations

import numpy as np
import pytest

from cptbench.methods import Method
from cptbench.methods.registry import method_registry
from cptbench.results.store import ResultsStore
from refer_fixture import write_refer_fixture, write_task_card


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


CLOCK = FakeClock()


class Timed(Method):
    """Loading costs 10 s of fake time (on its first use), a fit on examples 2 s, each predict 0.5 s
    per example."""

    needs_model = False
    trains = True

    def _load(self):
        from cptbench.models import loading

        if not getattr(self, "_loaded", False):
            CLOCK.now += 10.0
            loading._LOAD_CLOCK[0] += 10.0
            self._loaded = True

    def fit(self, train, seed):
        if train:
            self._load()
            CLOCK.now += 2.0

    def predict(self, examples):
        self._load()
        CLOCK.now += 0.5 * len(examples)
        return [np.arange(ex.n_candidates, dtype=float) for ex in examples]


if "timed-fake" not in method_registry():
    method_registry().add("timed-fake", lambda: Timed, origin="tests/run/test_timings.py")


@pytest.mark.parametrize("shots", [0, 2])
def test_records_split_loading_fitting_and_predicting(tmp_path, monkeypatch, shots):
    import cptbench.run.execute as execute
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest, plan
    from cptbench.tasks.spec import load_task_card

    root = write_refer_fixture(tmp_path / "data", splits={"train": 4, "val": 3, "testA": 2, "testB": 2})
    task = load_task_card(write_task_card(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(execute, "clock", CLOCK)
    request = RunRequest([task], ["timed-fake"], [shots], seeds=[0], data_root=str(root), chunk_size=5, sealed=False)
    recs = {r.split: r for r in Runner(request, ResultsStore(tmp_path / "res")).run(plan(request))}
    val, testA, testB = recs["val"], recs["testA"], recs["testB"]
    # loading happened once, during the job's first call: the first split carries it
    assert (val.load_seconds, testA.load_seconds, testB.load_seconds) == (10.0, 0.0, 0.0)
    assert val.fit_seconds == (2.0 if shots else 0.0) and testA.fit_seconds == testB.fit_seconds == 0.0
    for rec in recs.values():  # the predict calls alone: 0.5 s per expression, nothing else
        assert rec.predict_seconds == pytest.approx(0.5 * rec.n)
        assert rec.seconds == pytest.approx(rec.load_seconds + rec.fit_seconds + rec.predict_seconds)


def test_bench_and_run_time_the_same_predict_calls(tmp_path, monkeypatch):
    """On one workload (the same examples, chunks and method), bench's passes per second and a run's
    ``predict_seconds`` come from the same clock around the same calls."""
    import cptbench.run.bench as bench
    import cptbench.run.execute as execute

    monkeypatch.setattr(execute, "clock", CLOCK)
    monkeypatch.setattr(bench, "clock", CLOCK)
    fixture = bench.build_fixture(tmp_path, n_images=4, size=(64, 48), seed=0)

    class Passes(Timed):
        def take_counters(self):
            n, self.n = getattr(self, "n", 0), 0
            return {"expressions": n, "passes": n}

        def predict(self, examples):
            self.n = getattr(self, "n", 0) + len(examples)
            return super().predict(examples)

    method = Passes(None, None)
    method._loaded = True
    timer = bench._Timer(False)
    result = bench._timed(fixture, method, timer, null=True, cuda=False, chunk=64)
    n = len(fixture.examples)
    assert result["wall_s"] == pytest.approx(0.5 * n) and result["passes_per_s"] == pytest.approx(2.0, rel=0.01)
