"""Statistics for comparing two methods on one benchmark (pure functions, no I/O).

Two designs, two kinds of test:

- **Seeds** (k > 0): method A and method B are trained on the *same* k-shot draw per seed, so their
  per-seed accuracies are paired. :func:`paired_seed_test` runs a paired t-test, the exact
  sign-flip permutation test and the Wilcoxon signed-rank test on the per-seed differences, with
  Cohen's d_z (mean difference / sample std of the differences) as the effect size. The unit of
  replication is the seed: the test asks whether the gain would hold for another k-shot draw.
- **Expressions** (zero-shot, or one run each): both methods answered the same expressions, so
  their per-expression right/wrong outcomes are paired. :func:`paired_expression_test` gives
  McNemar's exact test on the discordant pairs and a paired bootstrap interval of the accuracy
  difference. It speaks about this run on this split, not about other k-shot draws.

:func:`headline` computes the CPT paper's two headline figures for one k: the absolute accuracy
gain and the RSD reduction ``1 - RSD_A / RSD_B``, averaged over splits as stated in its result.

Accuracies are in percent. Standard deviations for RSD are population std (ddof 0, as the paper
and the leaderboard); the t-test and d_z use the sample std of the differences (ddof 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from cptbench.report.aggregate import MIN_SEEDS_FOR_INTERVAL, is_missing, seed_stats

#: sign-flip permutations are enumerated exactly up to this many pairs (2**20 assignments)
EXACT_PERMUTATION_MAX = 20
#: absolute tolerance when comparing permuted statistics with the observed one (percent points)
_TIE_TOL = 1e-9
#: a std of the differences below this share of the largest accuracy is float rounding, not spread
#: (accuracies 33.33 points apart at every seed differ by ~5e-15 in their last bits)
_SD_RTOL = 1e-9


def _nan_to_none(x: float | None) -> float | None:
    return None if is_missing(x) else float(x)


@dataclass(frozen=True)
class SeedTest:
    """A paired comparison over the seeds both methods ran."""

    seeds: tuple[int, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    diff_mean: float  # mean of A - B over the shared seeds (points)
    diff_sd: float | None  # sample std (ddof 1) of the differences; None with one seed
    t: float | None
    df: int
    t_p: float | None  # two-sided p of the paired t-test
    ci95: tuple[float, float] | None  # t interval of the mean difference
    perm_p: float | None  # two-sided exact sign-flip permutation p
    perm_exact: bool
    wilcoxon_p: float | None
    cohen_dz: float | None
    notes: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        """The number of shared seeds."""
        return len(self.seeds)

    def to_json(self) -> dict:
        """The test as a JSON-ready dict."""
        return {"seeds": list(self.seeds), "a": list(self.a), "b": list(self.b), "n": self.n,
                "diff_mean": self.diff_mean, "diff_sd": self.diff_sd, "t": self.t, "df": self.df,
                "t_p": self.t_p, "ci95": list(self.ci95) if self.ci95 else None, "perm_p": self.perm_p,
                "perm_exact": self.perm_exact, "wilcoxon_p": self.wilcoxon_p, "cohen_dz": self.cohen_dz,
                "notes": list(self.notes)}


def sign_flip_p(diffs: Sequence[float], max_exact: int = EXACT_PERMUTATION_MAX, n_random: int = 200_000,
                seed: int = 0) -> tuple[float, bool]:
    """Two-sided p of the paired permutation test: the share of the 2**n sign assignments of the
    differences whose |mean| is at least the observed |mean|. Exact for n <= ``max_exact``;
    otherwise Monte Carlo with a fixed seed (returns ``(p, exact)``)."""
    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n == 0:
        return float("nan"), True
    observed = abs(d.mean())
    if n <= max_exact:
        # the sum of every sign pattern, built one difference at a time (2**(n-1) floats at the end,
        # not 2**n x n sign matrices); the first sign stays +: a pattern and its negation have the
        # same |sum|, so half the patterns give the same share
        sums = d[:1].copy()
        for x in d[1:]:
            sums = np.concatenate((sums + x, sums - x))
        return float(np.mean(np.abs(sums) / n >= observed - _TIE_TOL)), True
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_random, n))
    stats = np.abs(signs @ d) / n
    # the observed assignment counts as one of the draws (a valid Monte Carlo p, never 0)
    return float((np.sum(stats >= observed - _TIE_TOL) + 1) / (n_random + 1)), False


def paired_seed_test(a: Mapping[int, float], b: Mapping[int, float]) -> SeedTest:
    """Paired tests over the seeds present in both ``a`` and ``b`` (seed -> accuracy %).

    Degenerate cases answer with ``None`` and say why in ``notes``: one shared seed (no test), all
    differences equal up to float rounding (the t statistic is undefined or infinite; the
    permutation p still holds), identical methods (every difference 0: p = 1 for the permutation
    test), an undefined accuracy (NaN: a split without expressions; no test)."""
    seeds = tuple(sorted(set(a) & set(b)))
    if not seeds:
        raise ValueError("the two methods share no seed: nothing to pair")
    va = np.array([float(a[s]) for s in seeds])
    vb = np.array([float(b[s]) for s in seeds])
    d = va - vb
    ta, tb = tuple(float(x) for x in va), tuple(float(x) for x in vb)
    n = len(seeds)
    notes: list[str] = []
    diff_mean = float(d.mean())
    if n < 2:
        notes.append("one shared seed: no seed-level test (the per-expression test applies)")
        return SeedTest(seeds, ta, tb, diff_mean, None, None, 0, None, None, None, True, None, None, tuple(notes))
    df = n - 1
    undefined = [s for s, x in zip(seeds, d) if not math.isfinite(x)]
    if undefined:
        notes.append(f"an accuracy is undefined at seed(s) {', '.join(map(str, undefined))} (a split without "
                     "expressions): no seed-level test")
        return SeedTest(seeds, ta, tb, diff_mean, None, None, df, None, None, None, True, None, None, tuple(notes))
    sd = float(d.std(ddof=1))
    tol = _SD_RTOL * max(1.0, float(np.max(np.abs(np.concatenate((va, vb))))))
    t = t_p = dz = None
    ci = None
    if sd > tol:
        from scipy.special import stdtr, stdtrit

        t = diff_mean / (sd / math.sqrt(n))
        t_p = float(2.0 * stdtr(df, -abs(t)))
        half = float(stdtrit(df, 0.975)) * sd / math.sqrt(n)
        ci = (diff_mean - half, diff_mean + half)
        dz = diff_mean / sd
    elif np.all(np.abs(d) <= tol):
        d, diff_mean, sd = np.zeros_like(d), 0.0, 0.0  # equal up to float rounding
        notes.append("identical per-seed accuracies: every difference is 0")
        ci = (0.0, 0.0)
    else:
        sd = 0.0  # rounding noise of equal differences
        notes.append(f"every seed differs by the same {diff_mean:+.2f} points: the differences have no variance, "
                     "so the t statistic and d_z are undefined (infinite); the permutation p still holds")
        ci = (diff_mean, diff_mean)
    if ci is not None and n < MIN_SEEDS_FOR_INTERVAL:
        notes.append(f"{n} shared seeds: no interval of the difference (t(0.975, {df}) = "
                     f"{_t_quantile(df):.1f}: fewer than {MIN_SEEDS_FOR_INTERVAL} seeds give intervals that say nothing)")
        ci = None
    elif ci is not None:  # a difference of two accuracies lies in [-100, 100]
        ci = (max(ci[0], -100.0), min(ci[1], 100.0))
    perm_p, exact = sign_flip_p(d)
    if not exact:
        notes.append(f"{n} seeds: permutation p by Monte Carlo (200,000 sign flips, seed 0)")
    w_p = _wilcoxon(d, notes)
    return SeedTest(seeds, ta, tb, diff_mean, sd, _nan_to_none(t), df, t_p, ci, perm_p, exact, w_p,
                    _nan_to_none(dz), tuple(notes))


def _t_quantile(df: int) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.975))


def _wilcoxon(d: np.ndarray, notes: list[str]) -> float | None:
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0
    import warnings

    from scipy.stats import wilcoxon

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ties = np.unique(np.abs(nz)).size < nz.size
            method = "exact" if nz.size <= 50 and not ties else "auto"
            res = wilcoxon(nz, zero_method="wilcox", method=method)
        if d.size != nz.size:
            notes.append(f"Wilcoxon drops the {d.size - nz.size} seed(s) with a zero difference")
        return float(res.pvalue)
    except ValueError:
        return None


@dataclass(frozen=True)
class ExpressionTest:
    """A paired comparison over the expressions both runs answered."""

    n: int
    acc_a: float  # percent over the shared expressions
    acc_b: float
    both_right: int
    a_only: int  # A right, B wrong
    b_only: int  # A wrong, B right
    both_wrong: int
    mcnemar_p: float  # exact (binomial) two-sided
    boot_ci95: tuple[float, float]  # percentile interval of acc_a - acc_b (points)
    boot_resamples: int
    boot_seed: int
    odds_ratio: float | None  # a_only / b_only (None when b_only is 0)
    notes: tuple[str, ...] = ()

    @property
    def diff(self) -> float:
        """acc_a - acc_b (points)."""
        return self.acc_a - self.acc_b

    def to_json(self) -> dict:
        """The test as a JSON-ready dict."""
        return {"n": self.n, "acc_a": self.acc_a, "acc_b": self.acc_b, "diff": self.diff,
                "both_right": self.both_right, "a_only": self.a_only, "b_only": self.b_only,
                "both_wrong": self.both_wrong, "mcnemar_p": self.mcnemar_p, "boot_ci95": list(self.boot_ci95),
                "boot_resamples": self.boot_resamples, "boot_seed": self.boot_seed, "odds_ratio": self.odds_ratio,
                "notes": list(self.notes)}


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p: a binomial test of ``a_only`` successes in ``a_only + b_only``
    discordant pairs at p = 1/2 (1.0 when there is no discordant pair)."""
    m = a_only + b_only
    if m == 0:
        return 1.0
    from scipy.special import bdtr

    return float(min(1.0, 2.0 * bdtr(min(a_only, b_only), m, 0.5)))


def paired_bootstrap_ci(a_only: int, b_only: int, n: int, resamples: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the accuracy difference (points) when the ``n`` shared expressions are
    resampled with replacement. Only discordant expressions change the difference, so a resample is
    drawn as multinomial counts of (A only right, B only right, the rest): the same distribution
    as resampling expression indices, at a fraction of the cost."""
    if n <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    p = np.array([a_only, b_only, n - a_only - b_only], dtype=np.float64) / n
    counts = rng.multinomial(n, p, size=resamples)
    diffs = 100.0 * (counts[:, 0] - counts[:, 1]) / n
    lo, hi = np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_expression_test(a: Mapping[str, bool], b: Mapping[str, bool], resamples: int = 10_000,
                           seed: int = 0) -> ExpressionTest:
    """McNemar's exact test and a paired bootstrap interval over the expressions (example id ->
    correct) present in both runs."""
    ids = sorted(set(a) & set(b))
    if not ids:
        raise ValueError("the two runs share no expression: nothing to pair")
    ra = np.array([bool(a[i]) for i in ids])
    rb = np.array([bool(b[i]) for i in ids])
    n = len(ids)
    both = int(np.sum(ra & rb))
    a_only = int(np.sum(ra & ~rb))
    b_only = int(np.sum(~ra & rb))
    neither = n - both - a_only - b_only
    notes = []
    if a_only == b_only == 0:
        notes.append("no discordant expression: both runs are right and wrong on the same expressions")
    lo, hi = paired_bootstrap_ci(a_only, b_only, n, resamples, seed)
    odds = a_only / b_only if b_only else None
    return ExpressionTest(n, float(100.0 * ra.mean()), float(100.0 * rb.mean()), both, a_only, b_only, neither,
                          mcnemar_exact_p(a_only, b_only), (lo, hi), resamples, seed, odds, tuple(notes))


def population_rsd(values: Sequence[float]) -> float | None:
    """std (ddof 0) / mean; None for a zero or undefined mean."""
    rsd = seed_stats(values).rsd
    return None if is_missing(rsd) else rsd


@dataclass(frozen=True)
class Headline:
    """The paper's headline figures for one k over several splits."""

    splits: tuple[str, ...]
    gain: Mapping[str, float]  # split -> mean_A - mean_B (points)
    rsd_a: Mapping[str, float | None]
    rsd_b: Mapping[str, float | None]
    rsd_reduction: Mapping[str, float | None]  # split -> 1 - RSD_A / RSD_B (None where undefined)
    gain_mean: float  # unweighted mean over the splits
    rsd_reduction_mean: float | None  # unweighted mean of the per-split reductions that are defined
    rsd_reduction_of_means: float | None  # 1 - mean(RSD_A) / mean(RSD_B) over the same splits
    notes: tuple[str, ...] = field(default=())

    AVERAGING = ("gain: unweighted mean over splits of (mean_A - mean_B); RSD reduction: unweighted mean over "
                 "splits of 1 - RSD_A/RSD_B (the paper does not state its averaging; the ratio of the "
                 "split-averaged RSDs, 1 - mean RSD_A / mean RSD_B, is given beside it)")

    def to_json(self) -> dict:
        """The figures as a JSON-ready dict, with the averaging stated."""
        return {"splits": list(self.splits), "gain": dict(self.gain), "rsd_a": dict(self.rsd_a),
                "rsd_b": dict(self.rsd_b), "rsd_reduction": dict(self.rsd_reduction), "gain_mean": self.gain_mean,
                "rsd_reduction_mean": self.rsd_reduction_mean, "rsd_reduction_of_means": self.rsd_reduction_of_means,
                "averaging": self.AVERAGING, "notes": list(self.notes)}


def headline(per_split: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> Headline:
    """Gain and RSD reduction of A over B; ``per_split``: split -> (A's accuracies, B's accuracies)
    over the same seeds. A split with fewer than 2 seeds on a side, a zero mean or RSD_B = 0 has
    no RSD reduction; it is left out of both RSD averages and named in ``notes``."""
    if not per_split:
        raise ValueError("no split to average over")
    splits = tuple(per_split)
    gain, ra, rb, red = {}, {}, {}, {}
    why: dict[str, list[str]] = {}
    for s in splits:
        xa, xb = (np.asarray(v, dtype=np.float64) for v in per_split[s])
        gain[s] = float(xa.mean() - xb.mean())
        ra[s], rb[s] = population_rsd(xa), population_rsd(xb)
        reason = None
        if xa.size < 2 or xb.size < 2:
            reason = "fewer than 2 seeds on a side (RSD says nothing about seed variation there)"
        elif ra[s] is None or rb[s] is None:
            reason = "a mean accuracy is 0"
        elif rb[s] == 0:
            reason = "RSD_B is 0 (B does not vary over seeds)"
        if reason:
            red[s] = None
            why.setdefault(reason, []).append(s)
        else:
            red[s] = 1.0 - ra[s] / rb[s]
    notes = [f"no RSD reduction for {', '.join(where)}: {reason}" for reason, where in why.items()]
    defined = [s for s in splits if red[s] is not None]
    mean_red = float(np.mean([red[s] for s in defined])) if defined else None
    of_means = None
    if defined:
        mb = float(np.mean([rb[s] for s in defined]))
        of_means = 1.0 - float(np.mean([ra[s] for s in defined])) / mb if mb else None
    return Headline(splits, gain, ra, rb, red, float(np.mean(list(gain.values()))), mean_red, of_means, tuple(notes))


def format_p(p: float | None) -> str:
    """A p value for a table: ``n/a``, ``<1e-4``, or 2-3 significant digits."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    if p < 1e-4:
        return "<1e-4"
    if p < 0.01:
        return f"{p:.2g}"
    return f"{p:.3g}" if p < 0.1 else f"{p:.2f}"
