"""Aggregation of records into leaderboard rows and tables: hand-computed statistics, grouping, labels, layouts and formats."""

import json
import math

import pytest
from rich.console import Console

from cptbench.report.aggregate import aggregate, config_labels, seed_stats
from cptbench.report.tables import (CSV_SCHEMA_VERSION, cell, cell_lines, latex, long_csv, long_json, markdown,
                                    wide_tables)
from cptbench.cli.state import AppState
from cptbench.cli.ui import print_tables
from record_fixture import make_record


def rec(seed, acc, method="cpt-blk", split="val", shots=1, **kw):
    return make_record(**{"task": "t", "task_version": 1, "split": split, "method": method, "method_config_hash": "abc",
                          "model": "m", "proposals": "gt", "shots": shots, "limit": None, "seed": seed, "accuracy": acc,
                          "n": 100, "n_invalid": 0, **kw})


def test_stats_hand_computed():
    s = seed_stats([40.0, 50.0, 60.0])
    assert s.mean == 50.0
    assert s.std == pytest.approx(math.sqrt(200 / 3))  # population std: mean sq dev = (100+0+100)/3
    assert s.rsd == pytest.approx(math.sqrt(200 / 3) / 50)
    # t(0.975, 2) = 4.302653; sample std = 10; half width = 4.302653 * 10 / sqrt(3)
    assert s.ci95_high - 50 == pytest.approx(4.302653 * 10 / math.sqrt(3), rel=1e-5)
    assert s.ci95_low == pytest.approx(100 - s.ci95_high)


def test_single_seed_has_no_interval():
    s = seed_stats([42.0])
    assert s.std == 0.0 and math.isnan(s.ci95_low)


def test_groups_and_columns():
    rows = aggregate([rec(0, 10.0), rec(1, 20.0), rec(0, 30.0, split="testA"), rec(0, 5.0, method="ft", shots=1)])
    by = {(r.method, r.split): r for r in rows}
    assert by[("cpt-blk", "val")].n_seeds == 2 and by[("cpt-blk", "val")].acc_mean == 15.0
    assert by[("cpt-blk", "val")].acc_std == 5.0 and by[("cpt-blk", "val")].rsd == pytest.approx(1 / 3)
    lines = long_csv(rows).splitlines()
    header = lines[0].split(",")
    for col in ("task", "split", "method", "model", "proposals", "shots", "n_seeds", "acc_mean", "acc_std", "rsd",
                "ci95_low", "ci95_high", "label", "schema_version"):
        assert col in header
    assert header[:6] == ["task", "split", "method", "model", "proposals", "shots"]  # the stable prefix
    assert all(line.split(",")[header.index("schema_version")] == str(CSV_SCHEMA_VERSION) for line in lines[1:])
    single = next(line.split(",") for line in lines[1:] if line.split(",")[2] == "ft")
    assert single[header.index("ci95_low")] == "" and single[header.index("n_seeds")] == "1"


def test_wide_table_rows_say_what_they_average():
    rows = aggregate([rec(0, 10.0), rec(1, 20.0), rec(0, 30.0, split="testA"), rec(1, 32.0, split="testA"),
                      rec(0, 7.0, shots=0), rec(0, 99.0, method="oracle", uses_eval_labels=True)])
    (t,) = wide_tables(rows)
    assert t.header == ["model", "method", "shots", "seeds", "val", "testA"]
    cells = {(r[1], r[2]): r[3:] for r in t.rows}
    seeds, val, _ = cells[("cpt-blk", "1")]
    # two seeds: t(0.975, 1) = 12.7 would give [-48.53, 78.53]; the cell says n=2 instead of an RSD and an interval
    assert seeds == "2" and val == "15.00 ± 5.00 (n=2)"
    assert cells[("cpt-blk", "0 (zero-shot)")] == ["1", "7.00", ""]  # zero-shot is marked, one run is one number
    assert ("oracle*", "1") in cells  # label-reading rows are marked
    md = markdown([t])
    assert "| model | method | shots | seeds | val | testA |" in md and "95% t-interval" in md


def test_zero_mean_is_not_an_empty_rsd():
    (r,) = aggregate([rec(0, 0.0), rec(1, 0.0), rec(2, 0.0)])
    assert cell(r) == "0.00 ± 0.00 (RSD n/a (mean 0), all seeds equal)"  # and no zero-width interval
    assert cell_lines(r) == ["0.00 ± 0.00", "RSD n/a (mean 0)"]
    assert "(RSD %)" not in cell(r)


def test_different_seed_counts_are_noted():
    rows = aggregate([*(rec(s, 50.0 + s) for s in range(5)), rec(0, 30.0, method="ft"), rec(1, 31.0, method="ft"),
                      rec(0, 40.0, method="random", shots=0), rec(0, 41.0, shots=0)])
    (t,) = wide_tables(rows)
    notes = " ".join(t.notes)
    assert "k=1: rows average different numbers of seeds (cpt-blk 5, ft 2)" in notes
    assert "k=0" not in notes  # zero-shot single runs are one run by design, marked as such
    uneven = aggregate([rec(0, 1.0), rec(1, 2.0), rec(2, 3.0), rec(0, 5.0, split="testA")])
    (t2,) = wide_tables(uneven)
    assert t2.rows[0][3] == "1-3" and "seed counts differ across splits (val 3, testA 1)" in " ".join(t2.notes)


def test_configs_are_named_by_the_options_that_differ():
    cfg_a = {"score": "auto", "template": 3, "alpha": 0.4980392156862745}
    cfg_b = {"score": "auto-safe", "template": 3, "alpha": 0.4980392156862745}
    rows = aggregate([rec(0, 10.0, method_config=cfg_a), rec(0, 90.0, method_config_hash="zzz", method_config=cfg_b)])
    assert len(rows) == 2
    assert {r[1] for r in wide_tables(rows)[0].rows} == {"cpt-blk[score=auto]", "cpt-blk[score=auto-safe]"}
    assert {r.label for r in rows} == {"cpt-blk[score=auto]", "cpt-blk[score=auto-safe]"}
    text = _printed(wide_tables(rows), 80)  # brackets are text, not rich markup
    assert "cpt-blk[score=auto]" in text and "cpt-blk[score=auto-safe]" in text
    # configs that do not tell themselves apart by options fall back to the hash
    assert config_labels("m", {"abc123x": {}, "def456y": {}}) == {"abc123x": "m#abc123", "def456y": "m#def456"}
    many = config_labels("m", {"h1": {"a": 1, "b": 1, "c": 1, "d": 1}, "h2": {"a": 2, "b": 2, "c": 2, "d": 2}}, max_keys=3)
    assert many == {"h1": "m[a=1,b=1,c=1]#h1", "h2": "m[a=2,b=2,c=2]#h2"}
    assert config_labels("m", {"h1": {"x": True}, "h2": {"x": False}}) == {"h1": "m[x=true]", "h2": "m[x=false]"}


def test_fingerprint_differences_stay_visible():
    rows = aggregate([rec(0, 10.0, model_fingerprint="aaaaaaa"), rec(0, 20.0, model_fingerprint="bbbbbbb")])
    assert len(rows) == 2
    labels = {r[1] for r in wide_tables(rows)[0].rows}
    assert labels == {"cpt-blk [model aaaaaa]", "cpt-blk [model bbbbbb]"}


def _printed(tables, width, layout="auto"):
    console = Console(width=width, record=True, color_system=None)
    print_tables(AppState(), tables, layout=layout, console=console)
    return console.export_text()


def test_compact_layout_fits_80_columns_and_wide_uses_one_line():
    recs = []
    for m in ("cpt-blk", "cpt-seg", "ft"):
        for k in (0, 1, 16):
            for s in ([0] if k == 0 else range(5)):
                for split, base in (("val", 31.0), ("testA", 22.0), ("testB", 100.0)):
                    recs.append(rec(s, base - s * 0.7, method=m, split=split, shots=k, model="bundled:mini-vilt"))
    tables = wide_tables(aggregate(recs))
    text = _printed(tables, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    # seeds 31.0, 30.3, 29.6, 28.9, 28.2: mean 29.6, population std 0.99, RSD 3.3%; one line per row
    row = next(ln for ln in text.splitlines() if ln.startswith("cpt-seg") and " 16 " in ln)
    assert "29.60±0.99 3.3%" in row and "[28" not in text  # the interval is the full layout's
    assert sum(ln.startswith(("cpt-blk", "cpt-seg", "ft ")) for ln in text.splitlines()) == 9  # 9 rows, 9 lines
    assert "0 zs" in text and "· model bundled:mini-vilt" in text
    wide = _printed(tables, 220)
    line = next(ln for ln in wide.splitlines() if "cpt-seg" in ln and "  16 " in ln)
    assert "29.60 ± 0.99 (RSD 3.3%) [28.23, 30.97]" in line  # everything of a cell on the row's one line
    assert max(len(ln) for ln in wide.splitlines()) > 80


def test_latex_and_json():
    rows = aggregate([rec(0, 10.0), rec(1, 20.0), rec(0, 7.0, shots=0, method="my_method")])
    tex = latex(wide_tables(rows))
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"15.00 $\pm$ 5.00" in tex and r"my\_method" in tex and "0 (zero-shot)" in tex and r"\%" in tex
    doc = long_json(rows)
    json.dumps(doc, allow_nan=False)  # NaN became null
    single = next(d for d in doc if d["method"] == "my_method")
    assert single["ci95_low"] is None and single["schema_version"] == CSV_SCHEMA_VERSION


def test_table_of_a_subset_keeps_the_labels_of_the_whole():
    # two configs of cpt-blk on task t, one on task u: u's table must name its row as the CSV does
    # (labels are made per task: on u the one config is simply cpt-blk, on t the two differ by score)
    rows = aggregate([rec(0, 10.0, method_config={"score": "auto"}),
                      rec(0, 20.0, method_config_hash="zzz", method_config={"score": "safe"}),
                      rec(0, 30.0, task="u", method_config_hash="zzz", method_config={"score": "safe"})])
    only_u = [r for r in rows if r.task == "u"]
    assert only_u[0].label == "cpt-blk"
    assert {r.label for r in rows if r.task == "t"} == {"cpt-blk[score=auto]", "cpt-blk[score=safe]"}
    (t,) = wide_tables(only_u)
    assert [row[1] for row in t.rows] == ["cpt-blk"] and t.entries[0].label == "cpt-blk"


def test_wide_spreads_print_one_decimal_rather_than_cut_cells():
    # double-digit std on every split: two decimals would need more than 80 columns
    recs = [rec(s, base + 13.0 * (s - 2), method=m, split=split, shots=k)
            for m in ("blind-image", "ft") for k in (1, 2) for s in range(5)
            for split, base in (("val", 73.0), ("testA", 67.0), ("testB", 65.0))]
    text = _printed(wide_tables(aggregate(recs)), 80)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    # seeds 47, 60, 73, 86, 99: mean 73.0, population std 18.38, RSD 25.2%: one decimal, RSD in whole percent
    row = next(ln for ln in text.splitlines() if ln.startswith("blind-image") and ln.split()[1] == "1")
    assert "73.0±18.4 25%" in row
    assert "73.00±18.38 25.2%" in _printed(wide_tables(aggregate(recs)), 120, layout="compact")
