"""The -t / -m / -k filters of plot and report (cptbench.report.selection.select_runs), on the
synthetic results store of test_report (no model runs)."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.core.errors import UsageError
from cptbench.report.selection import select_runs
from cptbench.results.store import ResultsStore
from refer_fixture import write_refer_fixture, write_task_card
from results_fixture import load_splits, study


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("filters")
    root = write_refer_fixture(tmp / "data")
    write_task_card(tmp / "cards")
    old = os.environ.get("CPTBENCH_TASKS_PATH")
    os.environ["CPTBENCH_TASKS_PATH"] = str(tmp / "cards")
    _, splits = load_splits("toyref", root)
    s = ResultsStore(tmp / "res")
    study(s, splits)
    s.data_root = root  # for the commands that read the task's data
    yield s
    if old is None:
        os.environ.pop("CPTBENCH_TASKS_PATH", None)
    else:
        os.environ["CPTBENCH_TASKS_PATH"] = old


def test_method_filter_leaves_the_oracle_out(store):
    records, rows = select_runs(store, methods=["cpt-blk", "random"])
    assert {r.method for r in rows} == {"cpt-blk", "random"}
    assert {r.method for r in records} == {"cpt-blk", "random"}
    all_records, _ = select_runs(store)
    assert "oracle" in {r.method for r in all_records}


def test_shots_filter_keeps_untrained_references_at_their_one_k(store):
    _, rows = select_runs(store, shots=[2])
    trained = {r.shots for r in rows if r.method in ("cpt-blk", "ft")}
    assert trained == {2}
    # random and oracle exist only at k = 0 and do not train: they stay as references
    assert {(r.method, r.shots) for r in rows if r.method in ("random", "oracle")} == {("random", 0), ("oracle", 0)}


def test_shots_filter_with_nothing_left_names_the_k_present(store):
    with pytest.raises(UsageError, match=r"k = 7.*k present: 0, 1, 2"):
        select_runs(store, shots=[7])


def test_plot_and_report_take_the_filters(store, tmp_path):
    out = tmp_path / "plots"
    r = CliRunner().invoke(cli, ["plot", "--results", str(store.root), "--out", str(out), "-m", "cpt-blk,ft",
                                 "-k", "1-2", "--kind", "shots", "--format", "svg", "--y-range", "0,80"])
    assert r.exit_code == 0, r.output
    svgs = list(out.glob("*.svg"))
    assert svgs
    text = svgs[0].read_text()
    assert "cpt-blk" in text and "oracle" not in text
    page = tmp_path / "r.md"
    r = CliRunner().invoke(cli, ["report", "--results", str(store.root), "-o", str(page), "-m", "cpt-blk,ft",
                                 "--gallery", "0"])
    assert r.exit_code == 0, r.output
    body = page.read_text()
    assert "cpt-blk" in body and "oracle" not in body
    full = tmp_path / "all.md"
    r = CliRunner().invoke(cli, ["report", "--results", str(store.root), "-o", str(full), "--gallery", "0"])
    assert r.exit_code == 0, r.output
    assert "oracle" in full.read_text()


def test_bad_y_range_is_refused_with_the_forms(store):
    r = CliRunner().invoke(cli, ["plot", "--results", str(store.root), "--y-range", "tall"])
    assert r.exit_code != 0
    assert "--y-range" in r.output


def test_errors_defaults_to_every_split_of_the_method(store):
    args = ["errors", "-m", "cpt-blk", "-t", "toyref", "--results", str(store.root), "--data-root", str(store.data_root)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    splits = sorted({rec.split for rec in store.records() if rec.method == "cpt-blk"})
    assert len(splits) > 1
    heads = [line for line in r.output.splitlines() if line.startswith("cpt-blk on toyref")]
    assert sorted(h.split()[3].rstrip(",") for h in heads) == splits
    one = CliRunner().invoke(cli, [*args, "--split", splits[0]])
    assert one.exit_code == 0 and one.output.count("cpt-blk on toyref") == 1


def test_a_registered_method_without_runs_is_not_called_unknown(store):
    r = CliRunner().invoke(cli, ["compare", "cpt-blk", "ft-head", "--results", str(store.root)])
    assert r.exit_code == 2
    assert "has no runs in these results" in r.output and "cptbench run -m ft-head" in r.output
    r = CliRunner().invoke(cli, ["compare", "cpt-blk", "ft-haed", "--results", str(store.root)])
    assert r.exit_code == 2 and "has no runs" not in r.output
