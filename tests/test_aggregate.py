import math

import pytest

from cptbench.aggregate import aggregate, long_csv, markdown, seed_stats, wide_tables


def rec(seed, acc, method="cpt-blk", split="val", shots=1, **kw):
    return {"task": "t", "task_version": 1, "split": split, "method": method, "method_config_hash": "abc",
            "model": "m", "proposals": "gt", "shots": shots, "limit": None, "seed": seed, "accuracy": acc,
            "n": 100, "n_invalid": 0, **kw}


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
    by = {(r["method"], r["split"]): r for r in rows}
    assert by[("cpt-blk", "val")]["n_seeds"] == 2 and by[("cpt-blk", "val")]["acc_mean"] == 15.0
    assert by[("cpt-blk", "val")]["acc_std"] == 5.0 and by[("cpt-blk", "val")]["rsd"] == pytest.approx(1 / 3)
    header = long_csv(rows).splitlines()[0].split(",")
    for col in ("task", "split", "method", "model", "proposals", "shots", "n_seeds", "acc_mean", "acc_std", "rsd", "ci95_low", "ci95_high"):
        assert col in header


def test_wide_table_rows_method_x_shots_columns_splits():
    rows = aggregate([rec(0, 10.0), rec(1, 20.0), rec(0, 30.0, split="testA"), rec(0, 7.0, shots=0),
                      rec(0, 99.0, method="oracle", uses_eval_labels=True)])
    (t,) = wide_tables(rows)
    assert t.header == ["model", "method", "shots", "val", "testA"]
    cells = {(r[1], r[2]): r[3:] for r in t.rows}
    assert cells[("cpt-blk", "1")][0].startswith("15.00 ± 5.00 (RSD 33.3%)")
    assert cells[("cpt-blk", "1")][1] == "30.00"
    assert ("oracle*", "1") in cells  # label-reading rows are marked
    assert "| model | method | shots | val | testA |" in markdown([t])


def test_different_configs_are_not_mixed():
    rows = aggregate([rec(0, 10.0), rec(0, 90.0, method_config_hash="zzz")])
    assert len(rows) == 2
    labels = {r[1] for r in wide_tables(rows)[0].rows}
    assert labels == {"cpt-blk#abc", "cpt-blk#zzz"}
