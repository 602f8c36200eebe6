"""Statistics of `cptbench compare`, checked against hand-computed values and scipy."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from cptbench.report.stats import (headline, mcnemar_exact_p, paired_bootstrap_ci, paired_expression_test, paired_seed_test,
                            population_rsd, sign_flip_p)

A = {0: 31.0, 1: 29.0, 2: 33.0, 3: 30.5, 4: 32.0}
B = {0: 22.0, 1: 25.0, 2: 21.0, 3: 24.0, 4: 20.5}


def test_paired_seed_test_by_hand_and_scipy():
    t = paired_seed_test(A, B)
    # d = 9, 4, 12, 6.5, 11.5: mean 8.6; squared deviations 0.16 + 21.16 + 11.56 + 4.41 + 8.41 = 45.7
    sd = math.sqrt(45.7 / 4)
    assert t.n == 5 and t.diff_mean == pytest.approx(8.6)
    assert t.diff_sd == pytest.approx(sd)
    assert t.t == pytest.approx(8.6 / (sd / math.sqrt(5)))
    assert t.cohen_dz == pytest.approx(8.6 / sd)
    ref = sps.ttest_rel(list(A.values()), list(B.values()))
    assert t.t == pytest.approx(ref.statistic) and t.t_p == pytest.approx(ref.pvalue)
    half = sps.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert t.ci95 == pytest.approx((8.6 - half, 8.6 + half))
    # every difference positive: only "all +" and "all -" reach |mean| 8.6 -> 2 / 2**5
    assert t.perm_p == pytest.approx(2 / 32) and t.perm_exact
    assert t.wilcoxon_p == pytest.approx(2 / 32)
    assert t.wilcoxon_p == pytest.approx(sps.wilcoxon(np.subtract(list(A.values()), list(B.values()))).pvalue)


def test_sign_flip_p_enumerates_and_matches_scipy():
    # d = 1, -2, 3 (sum 2): sign patterns give sums 6, 0, 2, -4, 4, -2, 0, -6; |sum| >= 2 in 6 of 8
    p, exact = sign_flip_p([1.0, -2.0, 3.0])
    assert exact and p == pytest.approx(6 / 8)
    rng = np.random.default_rng(3)
    x, y = rng.normal(50, 3, 7), rng.normal(48, 3, 7)
    ref = sps.permutation_test((x, y), lambda a, b: np.mean(a - b), permutation_type="samples", n_resamples=np.inf)
    assert sign_flip_p(x - y)[0] == pytest.approx(ref.pvalue)


def test_sign_flip_monte_carlo_past_the_exact_limit():
    d = np.linspace(-1, 3, 12)
    exact, _ = sign_flip_p(d)
    approx, is_exact = sign_flip_p(d, max_exact=8, n_random=50_000)
    assert not is_exact and approx == pytest.approx(exact, abs=0.01)


def test_zero_variance_differences():
    t = paired_seed_test({0: 3.0, 1: 4.0, 2: 5.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert t.diff_mean == 2.0 and t.diff_sd == 0.0
    assert t.t is None and t.t_p is None and t.cohen_dz is None
    assert t.perm_p == pytest.approx(2 / 8)  # the all-positive and all-negative patterns only
    assert any("no variance" in n for n in t.notes)


def test_identical_methods():
    t = paired_seed_test(A, dict(A))
    assert t.diff_mean == 0 and t.perm_p == 1.0 and t.wilcoxon_p == 1.0 and t.t is None and t.ci95 == (0.0, 0.0)
    assert any("identical" in n for n in t.notes)
    e = paired_expression_test({"a": True, "b": False}, {"a": True, "b": False})
    assert e.diff == 0 and e.mcnemar_p == 1.0 and e.boot_ci95 == (0.0, 0.0) and e.a_only == e.b_only == 0


def test_one_seed_has_no_seed_test():
    t = paired_seed_test({0: 40.0, 1: 41.0}, {1: 30.0, 2: 35.0})
    assert t.seeds == (1,) and t.diff_mean == 11.0
    assert t.t is None and t.perm_p is None and t.wilcoxon_p is None and t.diff_sd is None
    assert "one shared seed" in t.notes[0]
    with pytest.raises(ValueError):
        paired_seed_test({0: 1.0}, {1: 2.0})


def test_mcnemar_exact_by_hand_and_scipy():
    # 10 vs 2 discordant: 2 * (C(12,0) + C(12,1) + C(12,2)) / 2**12 = 2 * 79 / 4096
    assert mcnemar_exact_p(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact_p(10, 2) == pytest.approx(sps.binomtest(10, 12, 0.5).pvalue)
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(0, 7) == pytest.approx(2 / 2 ** 7)


def test_expression_test_counts():
    a = {"1": True, "2": True, "3": False, "4": True, "5": False, "x": True}
    b = {"1": False, "2": True, "3": True, "4": False, "5": False}
    e = paired_expression_test(a, b)  # "x" is not shared
    assert e.n == 5 and (e.both_right, e.a_only, e.b_only, e.both_wrong) == (1, 2, 1, 1)
    assert e.acc_a == pytest.approx(60.0) and e.acc_b == pytest.approx(40.0) and e.diff == pytest.approx(20.0)
    assert e.odds_ratio == 2.0 and e.mcnemar_p == pytest.approx(sps.binomtest(2, 3, 0.5).pvalue)
    lo, hi = e.boot_ci95
    assert lo <= e.diff <= hi


def test_bootstrap_matches_resampling_expressions():
    n, a_only, b_only = 60, 14, 5
    ra = np.array([True] * a_only + [False] * b_only + [True] * 20 + [False] * 21)
    rb = np.array([False] * a_only + [True] * b_only + [True] * 20 + [False] * 21)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, n, size=(20_000, n))
    naive = 100 * (ra[idx].mean(1) - rb[idx].mean(1))
    lo, hi = paired_bootstrap_ci(a_only, b_only, n, resamples=20_000)
    assert lo == pytest.approx(np.quantile(naive, 0.025), abs=1.7)
    assert hi == pytest.approx(np.quantile(naive, 0.975), abs=1.7)
    assert paired_bootstrap_ci(n, 0, n) == (100.0, 100.0)  # A always right, B always wrong
    assert paired_bootstrap_ci(3, 1, 10, seed=5) == paired_bootstrap_ci(3, 1, 10, seed=5)  # seeded


def test_headline_by_hand():
    h = headline({"val": ([30, 32, 34], [20, 24, 28]), "testA": ([10, 10, 10], [5, 10, 15])})
    # val: RSD_A = sqrt(8/3)/32, RSD_B = sqrt(32/3)/24 -> 1 - RSD_A/RSD_B = 1 - 0.375 = 0.625
    assert h.rsd_a["val"] == pytest.approx(math.sqrt(8 / 3) / 32)
    assert h.rsd_reduction["val"] == pytest.approx(0.625)
    assert h.rsd_reduction["testA"] == pytest.approx(1.0)  # A has no seed variation there
    assert h.gain == {"val": 8.0, "testA": 0.0} and h.gain_mean == 4.0
    assert h.rsd_reduction_mean == pytest.approx(0.8125)
    ra, rb = math.sqrt(8 / 3) / 32, math.sqrt(32 / 3) / 24 + math.sqrt(50 / 3) / 10
    assert h.rsd_reduction_of_means == pytest.approx(1 - (ra / 2) / (rb / 2))
    assert "unweighted mean over splits" in h.AVERAGING


def test_headline_degenerate_splits_are_named():
    h = headline({"val": ([30, 32], [25, 25]), "testB": ([40], [30]), "testA": ([0, 0], [10, 12])})
    assert h.rsd_reduction == {"val": None, "testB": None, "testA": None}
    assert h.rsd_reduction_mean is None and h.rsd_reduction_of_means is None
    assert sorted(h.notes) == sorted([
        "no RSD reduction for val: RSD_B is 0 (B does not vary over seeds)",
        "no RSD reduction for testB: fewer than 2 seeds on a side (RSD says nothing about seed variation there)",
        "no RSD reduction for testA: a mean accuracy is 0"])
    assert h.gain_mean == pytest.approx(((31 - 25) + 10 + (0 - 11)) / 3)


def test_population_rsd():
    assert population_rsd([40.0, 50.0, 60.0]) == pytest.approx(math.sqrt(200 / 3) / 50)
    assert population_rsd([0.0, 0.0]) is None and population_rsd([]) is None


def test_equal_differences_up_to_rounding_have_no_t():
    # 3-expression splits: 2/3, 3/3, 1/3 right against 1/3, 2/3, 0/3: every seed 33.33 points apart,
    # but the float differences are not bit-identical (their sample std is ~5e-15, not 0)
    a = {0: 100 * 2 / 3, 1: 100.0, 2: 100 * 1 / 3}
    b = {0: 100 * 1 / 3, 1: 100 * 2 / 3, 2: 0.0}
    assert np.std(np.subtract(list(a.values()), list(b.values())), ddof=1) > 0  # the premise
    t = paired_seed_test(a, b)
    assert t.diff_mean == pytest.approx(100 / 3) and t.diff_sd == 0.0
    assert t.t is None and t.t_p is None and t.cohen_dz is None  # not t = 1e16, p = 7.6e-33, d_z = 6.6e15
    assert t.ci95 == pytest.approx((100 / 3, 100 / 3))
    assert any("every seed differs by the same +33.33 points" in n for n in t.notes)
    assert t.perm_p == pytest.approx(2 / 8)
    # a small but real spread still gets its t-test
    small = paired_seed_test({0: 50.0, 1: 50.001, 2: 50.0}, {0: 40.0, 1: 40.0, 2: 40.002})
    assert small.t is not None and small.diff_sd > 0 and not small.notes


def test_undefined_accuracies_have_no_seed_test():
    # a split without expressions has accuracy NaN: no test may come out of it (it gave perm p = 0)
    t = paired_seed_test({0: float("nan"), 1: 40.0, 2: 41.0}, {0: 30.0, 1: 31.0, 2: 33.0})
    assert t.perm_p is None and t.t is None and t.t_p is None and t.wilcoxon_p is None and t.ci95 is None
    assert any("undefined" in n and "seed(s) 0" in n for n in t.notes)


def test_exact_sign_flip_at_the_limit_stays_small():
    import tracemalloc

    d = np.arange(1.0, 21.0)  # 20 positive differences: only all + and all - reach the observed |mean|
    tracemalloc.start()
    try:
        p, exact = sign_flip_p(d)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert exact and p == pytest.approx(2 / 2 ** 20)
    assert peak < 40e6, f"{peak / 1e6:.0f} MB"  # the 2**20 x 20 sign matrices took ~700 MB
    d = np.array([1.0, -2.0, 3.0, 0.5, -0.25, 2.0, -1.5, 1.0])
    signs = 1.0 - 2.0 * ((np.arange(2 ** 8)[:, None] >> np.arange(8)) & 1)
    assert sign_flip_p(d)[0] == pytest.approx(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9))
