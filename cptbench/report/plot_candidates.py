"""Accuracy against the number of candidates an expression has (read from the predictions files:
the length of each score list), pooled over seeds and splits, at one k.

Each bin's tick says how many expressions it holds; chance (1 / candidates, averaged over the bin's
expressions: exact also for merged bins) is drawn once, as a dotted reference; marker area grows
with the number of (expression, seed) trials in the bin; colours are the methods' own.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cptbench.report.aggregate import LeaderboardRow
from cptbench.report.figure_style import REFERENCE_STYLE, series_style
from cptbench.report.plots import figure, figure_title, method_trains, series_label, slug
from cptbench.report.selection import group_key, load_predictions
from cptbench.results.records import RunRecord
from cptbench.results.store import ResultsStore

#: candidate-count bins when a task has more distinct counts than fit on an axis
CANDIDATE_BINS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 7), (8, 10), (11, 15), (16, 20), (21, 30), (31, 50), (51, 10**6))


def default_candidate_shots(rows: Sequence[LeaderboardRow]) -> int:
    """The k the candidates plot uses unless told: the smallest k > 0 present, else 0."""
    ks = sorted({r.shots for r in rows if r.shots > 0})
    return ks[0] if ks else 0


def accuracy_vs_candidates(store: ResultsStore, records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], key: tuple,
                           shots: int | None = None):
    """The figure and its series (module docstring) of the table ``key`` at ``shots`` (default: the
    smallest k > 0); methods that do not train come at their only k."""
    rows = [r for r in rows if (r.task, r.proposals, r.limit) == key]
    k = default_candidate_shots(rows) if shots is None else shots
    chosen = [r for r in rows if r.shots == k]
    labels_at_k = {r.label for r in chosen}
    chosen += [r for r in rows if r.label not in labels_at_k and len({x.shots for x in rows if x.label == r.label}) == 1
               and not method_trains(r.method)]
    per_label: dict[str, list[tuple[int, bool]]] = {}
    expressions: dict[str, int] = {}  # example id (per split) -> candidates
    keys = {group_key(r): series_label(r, rows) for r in chosen}
    for rec in records:
        lab = keys.get(group_key(rec))
        if lab is None:
            continue
        for p in load_predictions(store, rec):
            n = len(p.get("scores") or []) if p.get("status") != "no_candidates" else 0
            per_label.setdefault(lab, []).append((n, bool(p["correct"])))
            expressions[f"{rec.split}/{p['example_id']}"] = n
    counts = sorted({n for n in expressions.values() if n > 0})
    binned = len(counts) > 12
    bins = [b for b in CANDIDATE_BINS if any(b[0] <= n <= b[1] for n in counts)] if binned else [(n, n) for n in counts]
    fig, (ax,) = figure(1, width_per=6.0, height=3.6)
    series = []
    for lab in sorted(per_label):
        data = np.array(per_label[lab], dtype=float)
        xs, ys, ns = [], [], []
        for j, (lo, hi) in enumerate(bins):
            m = (data[:, 0] >= lo) & (data[:, 0] <= hi)
            if m.any():
                xs.append(j)
                ys.append(100.0 * data[m, 1].mean())
                ns.append(int(m.sum()))
        style = series_style(lab)
        ax.plot(xs, ys, ls=style["ls"], color=style["color"], lw=1.3, label=lab, gid=f"cand-{slug(lab)}")
        ax.scatter(xs, ys, s=[8 + 40 * np.sqrt(n / max(ns)) for n in ns], color=style["color"], marker=style["marker"],
                   zorder=3)
        series.append({"kind": "candidates", "label": lab, "bins": [list(bins[j]) for j in xs], "accuracy": ys, "trials": ns})
    per_bin = [[n for n in expressions.values() if lo <= n <= hi] for lo, hi in bins]
    chance = [100.0 * float(np.mean([1.0 / n for n in ns])) for ns in per_bin]
    ref = REFERENCE_STYLE["chance"]
    xs, ys = (list(range(len(bins))), chance) if len(bins) > 1 else ([-0.3, 0.3], chance * 2)  # one bin: a short segment
    ax.plot(xs, ys, ls=ref["ls"], color=ref["color"], lw=ref["lw"], label="chance (1/candidates)", gid="cand-chance")
    series.append({"kind": "chance", "bins": [list(b) for b in bins], "accuracy": chance,
                   "expressions": [len(ns) for ns in per_bin]})
    ticks = [(str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 10**6 else f"{lo}+")) + f"\n{len(ns)}"
             for (lo, hi), ns in zip(bins, per_bin)]
    ax.set_xticks(range(len(bins)), ticks)
    ax.set_xlabel("candidates per expression (second line: expressions in the bin)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, frameon=False, ncols=2 if len(per_label) > 4 else 1)
    ax.set_title(f"{figure_title(key)}: accuracy by number of candidates, k={k} (all splits and seeds pooled)", fontsize=9)
    return fig, series
