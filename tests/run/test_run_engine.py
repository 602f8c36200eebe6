"""The run engine's steps: frozen plans, the one context builder, the device policy, claims and the
results layout."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cptbench.core.boxes import MetricSpec
from cptbench.core.errors import ResultsError
from cptbench.methods.base import MethodContext
from cptbench.methods.registry import get_method_class
from cptbench.results.layout import ResultsLayout, safe_component
from cptbench.results.store import ResultsStore
from cptbench.run.context import build_context
from cptbench.run.engine import Runner
from cptbench.run.plan import RunRequest, plan
from cptbench.tasks import get_task
from cptbench.tasks.spec import load_task_card
from refer_fixture import write_refer_fixture, write_task_card


@pytest.fixture
def toy(tmp_path, monkeypatch):
    root = write_refer_fixture(tmp_path / "data", splits={"train": 6, "val": 3, "testA": 2, "testB": 1})
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path, root, load_task_card(tmp_path / "cards" / "toyref.yaml")


def test_jobs_are_frozen_and_prepare_returns_them_with_runs(toy):
    tmp, root, task = toy
    request = RunRequest([task], ["random", "oracle"], [0], seeds=[0, 1], data_root=str(root))
    jobs = plan(request)
    assert [(j.method_cls.name, j.seed) for j in jobs] == [("random", 0), ("random", 1), ("oracle", 0)]
    assert all(not j.prepared and j.runs == () for j in jobs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        jobs[0].seed = 3
    prepared = Runner(request, ResultsStore(tmp / "res")).prepare(jobs)
    assert all(j.prepared and len(j.runs) == 3 for j in prepared)
    assert all(not j.prepared for j in jobs)  # the planned jobs are unchanged
    assert prepared[0].runs[0].run_id != prepared[1].runs[0].run_id  # seeds differ


def test_the_context_carries_the_cards_metric_and_the_resolved_policy():
    card = get_task("synthref")
    cpt, ft, rnd = (get_method_class(m) for m in ("cpt", "ft", "random"))
    ctx = build_context(card, cpt, cpt.Config(), device="cpu", eval_batch_size="auto")
    assert ctx.metric == card.metric and ctx.precision == "fp32" and ctx.eval_batch_size == "auto"
    assert build_context(card, cpt, cpt.Config(precision="bf16"), device="cpu").precision == "bf16"
    assert build_context(card, ft, ft.Config(precision="fp32"), device="cuda").precision == "fp32"
    assert build_context(card, ft, ft.Config(), device="cuda").precision == "bf16"  # auto on CUDA
    assert build_context(card, rnd, rnd.Config(), device="cuda").precision == "fp32"  # no model, no autocast
    with pytest.raises(ValueError, match="eval_batch_size"):
        MethodContext(eval_batch_size=0)
    with pytest.raises(ValueError, match="resolved precision"):
        MethodContext(precision="auto")
    with pytest.raises(TypeError, match="MetricSpec"):
        MethodContext(metric={"iou_convention": "inclusive"})
    assert MethodContext(metric=MetricSpec("continuous", 0.5, "ge")).metric.hits(0.5)


def test_precision_request_sets_the_option_of_every_model_method_only():
    card = get_task("synthref")
    base = RunRequest([card], ["cpt", "ft", "random"], [1], seeds=[0])
    same = dataclasses.replace(base, precision="auto")  # the default, spelled out: the same runs
    other = dataclasses.replace(base, precision="fp32")
    configs = {name: [j.config for j in plan(r)] for name, r in (("base", base), ("same", same), ("other", other))}
    assert configs["base"] == configs["same"]
    assert [getattr(c, "precision", None) for c in configs["other"]] == ["fp32", "fp32", None]


def test_records_name_precision_and_method_version_and_locks_are_removed(toy):
    tmp, root, task = toy
    res = tmp / "res"
    request = RunRequest([task], ["oracle"], [0], seeds=[0], data_root=str(root))
    recs = Runner(request, ResultsStore(res)).run(plan(request))
    assert len(recs) == 3 and all(r.precision == "fp32" and r.method_version == 0 for r in recs)
    assert not list((res / "locks").glob("*.lock"))  # a finished run leaves no lock file
    line = json.loads((res / "runs.jsonl").read_text().splitlines()[0])
    assert line["precision"] == "fp32" and line["method_version"] == 0
    assert get_method_class("ft").version == 2 and get_method_class("cpt").version == 0


def test_the_layout_refuses_paths_that_leave_the_results_folder(tmp_path):
    layout = ResultsLayout(tmp_path / "res")
    assert layout.inside("predictions/abc.jsonl", "predictions_path") == tmp_path / "res" / "predictions" / "abc.jsonl"
    for bad in ("../elsewhere.jsonl", "predictions/../../x.jsonl", str(tmp_path / "abs.jsonl")):
        with pytest.raises(ResultsError, match="outside the results folder"):
            layout.inside(bad, "predictions_path")
    for bad in ("..", ".", "a/b", ".hidden", ""):
        with pytest.raises(ResultsError, match="cannot name a file"):
            safe_component(bad, "task name")
    assert layout.manifest("refcoco+", 1, 0) == tmp_path / "res" / "splits" / "refcoco+" / "k1_s0.json"
    with pytest.raises(ResultsError):
        layout.manifest("..", 1, 0)


def test_threads_are_a_setting_recorded_in_perf(toy, monkeypatch):
    torch = pytest.importorskip("torch")
    from click.testing import CliRunner

    from cptbench.cli.main import cli

    tmp, root, task = toy
    before = torch.get_num_threads()
    try:
        for args, env, want in ((["--threads", "1"], {}, 1), ([], {"CPTBENCH_THREADS": "1"}, 1)):
            res = tmp / f"res-{len(args)}"
            r = CliRunner().invoke(cli, ["run", "-t", "toyref", "-m", "cpt", "-k", "0", "--data-root", str(root),
                                         "--model", "bundled:mini-vilt", "--results", str(res), "--no-leaderboard", *args],
                                   env={"CPTBENCH_TASKS_PATH": str(tmp / "cards"), **env})
            assert r.exit_code == 0, r.output
            assert {rec.perf["threads"] for rec in ResultsStore(res).records()} == {want}
        r = CliRunner().invoke(cli, ["run", "-t", "toyref", "-m", "cpt", "-k", "0", "--data-root", str(root),
                                     "--model", "bundled:mini-vilt", "--results", str(tmp / "r3")],
                               env={"CPTBENCH_TASKS_PATH": str(tmp / "cards"), "CPTBENCH_THREADS": "many"})
        assert r.exit_code == 2 and "--threads" in r.output and "many" in r.output
    finally:
        torch.set_num_threads(before)
