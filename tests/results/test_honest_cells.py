"""Cells that say only what their seeds support (issue 19, item 3), and tables that name every
non-default option of a row (item 4): no interval from fewer than 3 seeds (the cell says n),
intervals clipped to 0-100, no zero-width interval, zero-shot cells without RSD."""

import math

import pytest

from cptbench.report.aggregate import aggregate, default_options, seed_stats
from cptbench.report.cells import cell, compact_cell
from cptbench.report.stats import paired_seed_test
from record_fixture import make_record


def rec(seed, acc, method="cpt-blk", split="val", shots=1, task="t", **kw):
    return make_record(**{"task": task, "task_version": 1, "split": split, "method": method, "method_config_hash": "abc",
                          "model": "m", "proposals": "gt", "shots": shots, "limit": None, "seed": seed, "accuracy": acc,
                          "n": 100, "n_invalid": 0, **kw})


def test_two_seeds_give_no_interval_and_three_do():
    two = seed_stats([10.0, 20.0])
    assert math.isnan(two.ci95_low) and math.isnan(two.ci95_high) and two.std == 5.0
    three = seed_stats([10.0, 20.0, 30.0])
    # t(0.975, 2) = 4.302653, sample std 10: half width 24.84; 20 - 24.84 < 0 is clipped to 0
    assert three.ci95_low == 0.0 and three.ci95_high == pytest.approx(20 + 4.302653 * 10 / math.sqrt(3), rel=1e-6)


def test_intervals_are_clipped_to_the_accuracy_range():
    s = seed_stats([100.0, 100.0, 90.0])
    assert s.ci95_high == 100.0 and s.ci95_low < 100.0
    assert seed_stats([100.0, 100.0, 90.0], bounds=None).ci95_high > 100.0  # without the clip it would leave the range


def test_all_seeds_equal_has_no_zero_width_interval():
    (r,) = aggregate([rec(s, 26.83) for s in range(5)])
    assert math.isnan(r.ci95_low) and r.acc_std == 0.0
    assert cell(r) == "26.83 ± 0.00 (RSD 0.0%, all seeds equal)" and "[" not in cell(r)


def test_cells_say_n_instead_of_an_interval_below_three_seeds():
    (two,) = aggregate([rec(0, 10.0), rec(1, 20.0)])
    assert cell(two) == "15.00 ± 5.00 (n=2)" and compact_cell(two) == "15.00±5.00 n=2"
    (five,) = aggregate([rec(s, 30.0 + s) for s in range(5)])
    assert cell(five).startswith("32.00 ± 1.41 (RSD 4.4%) [") and compact_cell(five) == "32.00±1.41 4.4%"


def test_zero_shot_cells_have_no_rsd():
    # random runs every seed at k = 0: a spread, but not the spread over k-shot draws the RSD is about
    (zs,) = aggregate([rec(s, 18.0 + s, method="random", shots=0) for s in range(5)])
    assert "RSD" not in cell(zs) and "%" not in compact_cell(zs)
    assert cell(zs).startswith("20.00 ± 1.41 [") and compact_cell(zs) == "20.00±1.41"


def test_a_two_seed_comparison_gives_no_interval_of_the_difference():
    t = paired_seed_test({0: 30.0, 1: 40.0}, {0: 20.0, 1: 50.0})
    assert t.ci95 is None and t.t_p is not None
    assert any("2 shared seeds: no interval" in n for n in t.notes)
    t5 = paired_seed_test({s: 30.0 + s for s in range(5)}, {s: 20.0 + 2 * s for s in range(5)})
    assert t5.ci95 is not None and -100 <= t5.ci95[0] <= t5.ci95[1] <= 100


def test_tables_name_every_option_that_differs_from_the_defaults():
    defaults = default_options("cpt-blk", "synthref")
    assert defaults is not None and defaults["template"] == 1  # the synthref card's default, not the method's 3
    one_off = {**defaults, "palette": "release5"}
    rows = aggregate([rec(0, 30.0, task="synthref", method_config=defaults),
                      rec(0, 25.0, task="synthref", method_config_hash="p5", method_config=one_off)])
    assert {r.label for r in rows} == {"cpt-blk", "cpt-blk[palette=release5]"}
    # a one-off config alone in the results is still named by what differs from the defaults
    (alone,) = aggregate([rec(0, 25.0, task="synthref", method_config_hash="p5",
                              method_config={**one_off, "alpha": 0.4, "box_pixels": "cover"})])
    assert alone.label == "cpt-blk[alpha=0.4,box_pixels=cover,palette=release5]"
