"""Paired comparisons of two methods from a results folder (``cptbench compare A B``).

Per task, split and k the rows of A and B are paired. The design decides the test:

- k > 0 with two or more shared seeds: A and B were trained on the same k-shot draw at each
  seed, so the per-seed accuracies are paired (:func:`cptbench.report.stats.paired_seed_test`).
- one shared seed, or zero-shot single runs: the runs answered the same expressions, so the
  per-expression outcomes are paired (:func:`cptbench.report.stats.paired_expression_test`, read from
  the predictions files).

A pair that differs in model, model content, proposals, data content, task version, limit, data
policy, metric or k-shot draws is still compared, but every such difference is listed with the
result: nothing is compared across them silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from cptbench.core.errors import UsageError
from cptbench.report.aggregate import LeaderboardRow
from cptbench.report.stats import ExpressionTest, Headline, SeedTest, headline, paired_expression_test, paired_seed_test
from cptbench.report.tables import split_order
from cptbench.results.records import RunRecord
from cptbench.report.selection import load_predictions, records_of, select_rows
from cptbench.results.store import ResultsStore

#: what must agree for a like-for-like comparison (leaderboard-row fields), with how to name it
LIKE_FOR_LIKE = (("model", "model"), ("model_fingerprint", "model content (fingerprint)"),
                 ("proposals", "proposals"), ("data_fingerprint", "data content (fingerprint)"),
                 ("task_version", "task version"), ("limit", "limit (expressions per split)"),
                 ("skip_bad", "data policy (--skip-bad)"), ("strict_data", "box policy (--strict-data)"))


def _short(v: Any) -> str:
    s = "all" if v is None else str(v)
    return s[:12] if len(s) == 64 or (len(s) > 16 and s.isalnum()) else s


@dataclass
class SplitComparison:
    """A against B at one task, split and k: the rows paired, their per-seed accuracies, the test
    that applies (seed-paired or expression-paired), and what differs between the two sides."""

    task: str
    split: str
    shots: int
    a: LeaderboardRow
    b: LeaderboardRow
    a_values: dict[int, float]  # seed -> accuracy
    b_values: dict[int, float]
    seed_test: SeedTest | None = None
    expression_test: ExpressionTest | None = None
    expression_runs: tuple[str, str] | None = None
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def shared_seeds(self) -> list[int]:
        """The seeds both sides ran, ascending."""
        return sorted(set(self.a_values) & set(self.b_values))

    def paired_values(self) -> tuple[list[float], list[float]]:
        """The accuracies the comparison rests on: the shared seeds, or every run of each side
        where no seed is shared (zero-shot)."""
        shared = self.shared_seeds
        if shared:
            return [self.a_values[s] for s in shared], [self.b_values[s] for s in shared]
        return list(self.a_values.values()), list(self.b_values.values())

    def to_json(self) -> dict[str, Any]:
        """The comparison as a JSON-ready dict (labels, seeds, values, tests, differences, notes)."""
        return {"task": self.task, "split": self.split, "shots": self.shots, "a": self.a.label, "b": self.b.label,
                "a_seeds": sorted(self.a_values), "b_seeds": sorted(self.b_values), "a_values": self.a_values,
                "b_values": self.b_values, "a_mean": self.a.acc_mean, "b_mean": self.b.acc_mean,
                "seed_test": self.seed_test.to_json() if self.seed_test else None,
                "expression_test": self.expression_test.to_json() if self.expression_test else None,
                "expression_runs": list(self.expression_runs) if self.expression_runs else None,
                "differences": self.differences, "notes": self.notes}


@dataclass
class Comparison:
    """``compare A B``: one :class:`SplitComparison` per task/split/k both ran, the headline figures
    per (task, k), and notes on the whole."""

    a: str
    b: str
    splits: list[SplitComparison]
    headlines: list[tuple[str, int, Headline]]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The comparison as a JSON-ready dict."""
        return {"a": self.a, "b": self.b, "splits": [s.to_json() for s in self.splits],
                "headlines": [{"task": t, "shots": k, **h.to_json()} for t, k, h in self.headlines], "notes": self.notes}


def differences(a: LeaderboardRow, b: LeaderboardRow, recs_a: Sequence[RunRecord],
                recs_b: Sequence[RunRecord]) -> list[str]:
    """What keeps two rows from being like for like, in words (empty when nothing does)."""
    out = []
    for key, what in LIKE_FOR_LIKE:
        if getattr(a, key) != getattr(b, key):
            out.append(f"{what}: {_short(getattr(a, key))} vs {_short(getattr(b, key))}")
    if recs_a and recs_b and dict(recs_a[0].metric) != dict(recs_b[0].metric):
        out.append(f"metric: {dict(recs_a[0].metric)} vs {dict(recs_b[0].metric)}")
    if a.shots > 0:
        ma = {r.seed: r.manifest_sha256 for r in recs_a}
        mb = {r.seed: r.manifest_sha256 for r in recs_b}
        bad = sorted(s for s in set(ma) & set(mb) if ma[s] != mb[s])
        if bad:
            out.append(f"k-shot draws differ at seed(s) {', '.join(map(str, bad))} (manifest sha256): "
                       f"not the same training examples")
    return out


def _pick_pair(task: str, split: str, shots: int, cands_a: list[LeaderboardRow],
               cands_b: list[LeaderboardRow]) -> tuple[LeaderboardRow, LeaderboardRow, list[str]]:
    scored = []
    for ra in cands_a:
        for rb in cands_b:
            scored.append((sum(getattr(ra, k) != getattr(rb, k) for k, _ in LIKE_FOR_LIKE), ra, rb))
    scored.sort(key=lambda x: x[0])
    best = [s for s in scored if s[0] == scored[0][0]]
    if len(best) > 1:
        opts = "; ".join(f"{ra.label} ({ra.model}, proposals {ra.proposals}, limit {_short(ra.limit)}) vs "
                         f"{rb.label} ({rb.model}, proposals {rb.proposals}, limit {_short(rb.limit)})"
                         for _, ra, rb in best)
        raise UsageError(f"{task} {split} k={shots}: several equally close pairs of runs ({opts}); narrow them with "
                         f"--model or --proposals, or name a config by its label.")
    _, ra, rb = scored[0]
    notes = []
    unused = len(cands_a) + len(cands_b) - 2
    if unused:
        notes.append(f"{unused} other group(s) of runs at this task/split/k were not used (closest pair chosen)")
    return ra, rb, notes


def _expression_pair(store: ResultsStore, recs_a: Sequence[RunRecord], recs_b: Sequence[RunRecord], shots: int,
                     sc: SplitComparison) -> None:
    by_a = {r.seed: r for r in recs_a}
    by_b = {r.seed: r for r in recs_b}
    shared = sorted(set(by_a) & set(by_b))
    if shared:
        ra, rb = by_a[shared[0]], by_b[shared[0]]
    elif shots == 0:
        ra, rb = recs_a[0], recs_b[0]
        sc.notes.append(f"zero-shot: seed {ra.seed} of A against seed {rb.seed} of B (no training data at k=0; "
                        f"a seed only drives a method's own randomness)")
    else:
        sc.notes.append("no shared seed: A and B were never trained on the same k-shot draw, so there is "
                        "nothing to pair; run both with the same --seeds")
        return
    pa = {p["example_id"]: bool(p["correct"]) for p in load_predictions(store, ra)}
    pb = {p["example_id"]: bool(p["correct"]) for p in load_predictions(store, rb)}
    shared_ids = set(pa) & set(pb)
    if not shared_ids:
        sc.notes.append("the two runs share no expression (different data or limits): no per-expression test")
        return
    if len(shared_ids) != len(pa) or len(shared_ids) != len(pb):
        sc.notes.append(f"compared on the {len(shared_ids)} expressions both runs answered (A {len(pa)}, B {len(pb)})")
    sc.expression_test = paired_expression_test(pa, pb)
    sc.expression_runs = (ra.run_id, rb.run_id)


def compare(store: ResultsStore, records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], a: str, b: str, *,
            task: str | None = None, shots: Sequence[int] | None = None, splits: Sequence[str] | None = None,
            model: str | None = None, proposals: str | None = None) -> Comparison:
    """Compare ``a`` against ``b`` (labels or method names) at every task/split/k both have."""
    rows_a = select_rows(rows, a, task=task, shots=shots, splits=splits, model=model, proposals=proposals)
    rows_b = select_rows(rows, b, task=task, shots=shots, splits=splits, model=model, proposals=proposals)
    by_key_a: dict[tuple, list[LeaderboardRow]] = {}
    by_key_b: dict[tuple, list[LeaderboardRow]] = {}
    for r in rows_a:
        by_key_a.setdefault((r.task, r.split, r.shots), []).append(r)
    for r in rows_b:
        by_key_b.setdefault((r.task, r.split, r.shots), []).append(r)
    keys = sorted(set(by_key_a) & set(by_key_b), key=lambda k: (k[0], k[2], split_order(k[1])))
    if not keys:
        have_a = sorted({(t, k) for t, _, k in by_key_a})
        have_b = sorted({(t, k) for t, _, k in by_key_b})
        raise UsageError(f"{a!r} and {b!r} have no task/split/k in common ({a}: {_tk(have_a)}; {b}: {_tk(have_b)}); "
                         f"run them at the same k, e.g. `cptbench run -m {a.split('[')[0]},{b.split('[')[0]} -k 1`.")
    out: list[SplitComparison] = []
    for key in keys:
        t, s, k = key
        ra, rb, notes = _pick_pair(t, s, k, by_key_a[key], by_key_b[key])
        if ra is rb or (ra.label == rb.label and ra.method_config_hash == rb.method_config_hash
                        and ra.model_fingerprint == rb.model_fingerprint):
            raise UsageError(f"{a!r} and {b!r} name the same runs; compare two different methods or configs.")
        recs_a, recs_b = records_of(records, ra), records_of(records, rb)
        sc = SplitComparison(t, s, k, ra, rb, {r.seed: float(r.accuracy) for r in recs_a},
                             {r.seed: float(r.accuracy) for r in recs_b}, notes=notes)
        sc.differences = differences(ra, rb, recs_a, recs_b)
        shared = sc.shared_seeds
        if sorted(sc.a_values) != sorted(sc.b_values):
            sc.notes.append(f"A has seeds {_seeds(sc.a_values)}, B has {_seeds(sc.b_values)}"
                            + (f": paired on the {len(shared)} shared seed(s)" if shared else ""))
        if len(shared) >= 2:
            sc.seed_test = paired_seed_test(sc.a_values, sc.b_values)
            if k == 0:
                sc.notes.append("k=0: seeds are not k-shot draws here (zero-shot), only each method's own randomness")
            smallest = 2.0 / 2 ** len(shared)
            if smallest >= 0.05:
                sc.notes.append(f"with {len(shared)} seeds no two-sided permutation or Wilcoxon p can be below "
                                f"{smallest:.3g}")
        else:
            _expression_pair(store, recs_a, recs_b, k, sc)
        out.append(sc)
    heads = []
    for t, k in sorted({(sc.task, sc.shots) for sc in out}):
        part = [sc for sc in out if sc.task == t and sc.shots == k]
        heads.append((t, k, headline({sc.split: sc.paired_values() for sc in part})))
    notes = []
    if any(sc.differences for sc in out):
        notes.append("some pairs are not like for like (see 'differs' under each); read those differences as "
                     "differences of setting as much as of method")
    return Comparison(a, b, out, heads, notes)


def _seeds(values: dict[int, float]) -> str:
    return ",".join(map(str, sorted(values))) or "none"


def _tk(pairs) -> str:
    return ", ".join(f"{t} k={k}" for t, k in pairs) or "nothing"


# -- text forms (shared by the CLI and the report) ----------------------------------------------
SEED_HEADER = ["split", "k", "A", "B", "A-B", "95% CI", "p t", "p perm", "p W", "d_z"]
EXPRESSION_HEADER = ["split", "k", "A", "B", "A-B", "boot 95% CI", "McNemar p", "A only", "B only", "n"]


def _ms(values: Sequence[float]) -> str:
    import numpy as np

    v = np.asarray(values, dtype=float)
    return f"{v.mean():.1f}" if v.size < 2 else f"{v.mean():.1f}±{v.std(ddof=0):.1f}"


def _num(x: float | None, fmt: str = "+.2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def seed_rows(cmp: Comparison) -> list[list[str]]:
    """One row per seed-paired split: means ± population std over the shared seeds, the mean
    difference with its t interval, the three p values and d_z (seed counts: :func:`seed_counts`)."""
    from cptbench.report.stats import format_p

    out = []
    for sc in cmp.splits:
        t = sc.seed_test
        if t is None:
            continue
        ci = "n/a" if t.ci95 is None else f"[{t.ci95[0]:+.1f}, {t.ci95[1]:+.1f}]"
        out.append([sc.split, str(sc.shots), _ms(t.a), _ms(t.b), f"{t.diff_mean:+.1f}", ci, format_p(t.t_p),
                    format_p(t.perm_p), format_p(t.wilcoxon_p), _num(t.cohen_dz, ".1f")])
    return out


def seed_counts(cmp: Comparison) -> str:
    """``5 shared seeds`` or ``2-5 shared seeds`` over the seed-paired splits."""
    ns = sorted({sc.seed_test.n for sc in cmp.splits if sc.seed_test})
    if not ns:
        return ""
    return f"{ns[0]} shared seeds" if len(ns) == 1 else f"{ns[0]}-{ns[-1]} shared seeds"


def expression_rows(cmp: Comparison) -> list[list[str]]:
    """One row per expression-paired split: accuracies over the shared expressions, the
    difference with its paired bootstrap interval, McNemar's exact p, the discordant counts."""
    from cptbench.report.stats import format_p

    out = []
    for sc in cmp.splits:
        e = sc.expression_test
        if e is None:
            continue
        out.append([sc.split, str(sc.shots), f"{e.acc_a:.2f}", f"{e.acc_b:.2f}", f"{e.diff:+.2f}",
                    f"[{e.boot_ci95[0]:+.1f}, {e.boot_ci95[1]:+.1f}]", format_p(e.mcnemar_p), str(e.a_only),
                    str(e.b_only), str(e.n)])
    return out


def headline_lines(cmp: Comparison) -> list[str]:
    """The paper's two figures per task and k, with the averaging stated."""
    lines = []
    for task, k, h in cmp.headlines:
        splits = ", ".join(h.splits)
        text = f"{task} k={k}: gain {h.gain_mean:+.2f} points (unweighted mean over {splits})"
        if h.rsd_reduction_mean is not None:
            text += (f"; RSD reduction {100 * h.rsd_reduction_mean:.1f}% (mean over splits of 1 - RSD_A/RSD_B), "
                     f"{100 * h.rsd_reduction_of_means:.1f}% (1 - mean RSD_A / mean RSD_B)"
                     if h.rsd_reduction_of_means is not None else
                     f"; RSD reduction {100 * h.rsd_reduction_mean:.1f}% (mean over splits of 1 - RSD_A/RSD_B)")
        else:
            text += "; RSD reduction undefined (no split with seed variation on both sides)"
        lines.append(text)
        lines += [f"  {n}" for n in h.notes]
    return lines


def note_lines(cmp: Comparison) -> list[str]:
    """Differences and notes per split, collapsed where several splits share them."""
    seen: dict[str, list[str]] = {}
    for sc in cmp.splits:
        for d in sc.differences:
            seen.setdefault(f"differs: {d}", []).append(f"{sc.split} k={sc.shots}")
        for n in [*sc.notes, *(sc.seed_test.notes if sc.seed_test else ()), *(sc.expression_test.notes if sc.expression_test else ())]:
            seen.setdefault(n, []).append(f"{sc.split} k={sc.shots}")
    out = [f"{text} ({', '.join(where)})" for text, where in seen.items()]
    return out + list(cmp.notes)
