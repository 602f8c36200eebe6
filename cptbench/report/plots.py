"""Figures (matplotlib, Agg, no pyplot state): accuracy and RSD against shots, accuracy against the
number of candidates. Every builder returns ``(figure, series)``: ``series`` lists exactly what was
drawn (label, split, x, y, band, seed points), so tests and the report can check the data, and each
drawn artist carries an SVG id ``<kind>-<split>-<label slug>``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cptbench.report.aggregate import LeaderboardRow
from cptbench.report.tables import split_order, table_title
from cptbench.results.records import RunRecord
from cptbench.report.selection import group_key, load_predictions
from cptbench.results.store import ResultsStore

#: candidate-count bins when a task has more distinct counts than fit on an axis
CANDIDATE_BINS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 7), (8, 10), (11, 15), (16, 20), (21, 30), (31, 50), (51, 10**6))


def slug(text: str) -> str:
    """An SVG-id-safe form of a label: ``cpt-blk[score=auto]`` -> ``cpt-blk_score_auto``."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")


def _figure(n_panels: int, width_per: float = 3.6, height: float = 3.2):
    from matplotlib.figure import Figure

    cols = min(n_panels, 3)
    rows = (n_panels + cols - 1) // cols
    fig = Figure(figsize=(width_per * cols + 0.6, height * rows + 0.5), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return fig, axes


def method_trains(method: str) -> bool:
    """Whether a method trains (its accuracy can change with k); unknown plug-ins count as training."""
    try:
        from cptbench.methods.registry import get_method_class

        return bool(getattr(get_method_class(method), "trains", True))
    except Exception:
        return True


def _panels(rows: Sequence[LeaderboardRow]) -> dict[tuple, list[LeaderboardRow]]:
    """Rows per figure: (task, proposals, limit), as the leaderboard's tables."""
    out: dict[tuple, list[LeaderboardRow]] = {}
    for r in rows:
        out.setdefault((r.task, r.proposals, r.limit), []).append(r)
    return out


def figure_title(key: tuple) -> str:
    """The title of the figures of a table key (task, proposals, limit), as the table's."""
    return table_title(*key)


def _label(r: LeaderboardRow, rows: Sequence[LeaderboardRow]) -> str:
    models = {x.model for x in rows if x.model != "none"}
    return r.label + (f" ({r.model})" if len(models) > 1 and r.model != "none" else "")


def accuracy_vs_shots(records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], key: tuple):
    """One panel per split: per method, the mean accuracy over seeds against k (evenly spaced k
    positions), a mean ± population-std band, and every seed as a point. A method that does not
    train and ran at one k only (random, oracle) is a dashed horizontal level."""
    return _over_shots(records, rows, key, "acc")


def rsd_vs_shots(records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], key: tuple):
    """One panel per split: per method, RSD (population std / mean, %) against k, for the k with
    two or more seeds."""
    return _over_shots(records, rows, key, "rsd")


def _over_shots(records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], key: tuple, what: str):
    rows = [r for r in rows if (r.task, r.proposals, r.limit) == key]
    splits = sorted({r.split for r in rows}, key=split_order)
    ks = sorted({r.shots for r in rows})
    pos = {k: i for i, k in enumerate(ks)}
    acc_by_group: dict[tuple, dict[int, float]] = {}
    for rec in records:
        acc_by_group.setdefault(group_key(rec), {})[rec.seed] = float(rec.accuracy)
    fig, axes = _figure(len(splits))
    series = []
    labels = sorted({_label(r, rows) for r in rows})
    colours = {lab: f"C{i % 10}" for i, lab in enumerate(labels)}
    for ax, split in zip(axes, splits):
        here = [r for r in rows if r.split == split]
        for lab in labels:
            pts = sorted((r for r in here if _label(r, rows) == lab), key=lambda r: r.shots)
            if what == "rsd":
                pts = [r for r in pts if r.n_seeds >= 2 and r.rsd == r.rsd]
            if not pts:
                continue
            c = colours[lab]
            sid = f"{split}-{slug(lab)}"
            level = len(pts) == 1 and len(ks) > 1 and not method_trains(pts[0].method)
            if what == "acc":
                mean = np.array([r.acc_mean for r in pts])
                std = np.array([r.acc_std for r in pts])
                seeds = [acc_by_group.get(group_key(r), {}) for r in pts]
                if level:
                    x = np.array([0, len(ks) - 1], dtype=float)
                    mean, std = np.repeat(mean, 2), np.repeat(std, 2)
                    ax.plot(x, mean, "--", color=c, lw=1.2, label=f"{lab} (does not train)", gid=f"mean-{sid}")
                else:
                    x = np.array([pos[r.shots] for r in pts], dtype=float)
                    ax.plot(x, mean, "-o", color=c, lw=1.5, ms=3.5, label=lab, gid=f"mean-{sid}")
                banded = any(r.n_seeds > 1 for r in pts)
                if banded:
                    ax.fill_between(x, mean - std, mean + std, color=c, alpha=0.15, lw=0, gid=f"band-{sid}")
                sx, sy = [], []
                for r, vals in zip(pts, seeds):
                    if r.n_seeds < 2 or level:
                        continue
                    offs = np.linspace(-0.12, 0.12, len(vals)) if len(vals) > 1 else np.zeros(1)
                    sx += list(pos[r.shots] + offs)
                    sy += [vals[s] for s in sorted(vals)]
                if sx:
                    ax.scatter(sx, sy, s=9, color=c, alpha=0.55, lw=0, gid=f"seeds-{sid}")
                series.append({"kind": "acc", "split": split, "label": lab, "shots": [r.shots for r in pts],
                               "mean": [float(v) for v in mean[: len(pts)]] if not level else [float(mean[0])],
                               "std": [float(r.acc_std) for r in pts], "n_seeds": [int(r.n_seeds) for r in pts],
                               "seed_points": list(zip(map(float, sx), map(float, sy))), "level": level, "id": sid})
            elif level:
                y = np.repeat(100 * pts[0].rsd, 2)
                ax.plot([0, len(ks) - 1], y, "--", color=c, lw=1.2, label=f"{lab} (does not train)", gid=f"rsd-{sid}")
                series.append({"kind": "rsd", "split": split, "label": lab, "shots": [pts[0].shots],
                               "rsd_percent": [float(y[0])], "n_seeds": [int(pts[0].n_seeds)], "level": True, "id": sid})
            else:
                x = np.array([pos[r.shots] for r in pts], dtype=float)
                y = np.array([100 * r.rsd for r in pts])
                ax.plot(x, y, "-o", color=c, lw=1.5, ms=3.5, label=lab, gid=f"rsd-{sid}")
                series.append({"kind": "rsd", "split": split, "label": lab, "shots": [r.shots for r in pts],
                               "rsd_percent": [float(v) for v in y], "n_seeds": [int(r.n_seeds) for r in pts],
                               "level": False, "id": sid})
        ax.set_xticks(range(len(ks)), [("0\n(zero-shot)" if k == 0 else str(k)) for k in ks])
        ax.set_xlabel("k (training expressions)")
        ax.set_ylabel("accuracy (%)" if what == "acc" else "RSD (%)")
        ax.set_title(split)
        ax.grid(alpha=0.3)
    if axes:
        handles, names = axes[0].get_legend_handles_labels()
        for ax in axes[1:]:
            for h, n in zip(*ax.get_legend_handles_labels()):
                if n not in names:
                    handles.append(h)
                    names.append(n)
        fig.legend(handles, names, loc="outside lower center", ncols=min(4, max(1, len(names))), fontsize=8, frameon=False)
    what_text = ("accuracy: mean over seeds, band = ±1 population std, points = seeds" if what == "acc"
                 else "RSD = population std / mean over seeds (k with 2+ seeds)")
    fig.suptitle(f"{figure_title(key)}: {what_text}", fontsize=9)
    return fig, series


def default_candidate_shots(rows: Sequence[LeaderboardRow]) -> int:
    """The k the candidates plot uses unless told: the smallest k > 0 present, else 0."""
    ks = sorted({r.shots for r in rows if r.shots > 0})
    return ks[0] if ks else 0


def accuracy_vs_candidates(store: ResultsStore, records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], key: tuple,
                           shots: int | None = None):
    """Accuracy against the number of candidates of an expression (read from the predictions
    files: the length of each score list), pooled over seeds and splits, at one k (methods that do
    not train at their only k). A dotted line marks 1/n, the chance of a uniform pick with one
    right candidate. Marker area grows with the number of (expression, seed) trials in the bin."""
    rows = [r for r in rows if (r.task, r.proposals, r.limit) == key]
    k = default_candidate_shots(rows) if shots is None else shots
    chosen = [r for r in rows if r.shots == k]
    labels_at_k = {r.label for r in chosen}
    chosen += [r for r in rows if r.label not in labels_at_k and len({x.shots for x in rows if x.label == r.label}) == 1
               and not method_trains(r.method)]
    per_label: dict[str, list[tuple[int, bool]]] = {}
    keys = {group_key(r): _label(r, rows) for r in chosen}
    for rec in records:
        lab = keys.get(group_key(rec))
        if lab is None:
            continue
        for p in load_predictions(store, rec):
            n = len(p.get("scores") or []) if p.get("status") != "no_candidates" else 0
            per_label.setdefault(lab, []).append((n, bool(p["correct"])))
    counts = sorted({n for v in per_label.values() for n, _ in v if n > 0})
    binned = len(counts) > 12
    bins = [b for b in CANDIDATE_BINS if any(b[0] <= n <= b[1] for n in counts)] if binned else [(n, n) for n in counts]
    fig, (ax,) = _figure(1, width_per=6.0, height=3.6)
    series = []
    for i, lab in enumerate(sorted(per_label)):
        data = np.array(per_label[lab], dtype=float)
        xs, ys, ns = [], [], []
        for j, (lo, hi) in enumerate(bins):
            m = (data[:, 0] >= lo) & (data[:, 0] <= hi)
            if m.any():
                xs.append(j)
                ys.append(100.0 * data[m, 1].mean())
                ns.append(int(m.sum()))
        c = f"C{i % 10}"
        ax.plot(xs, ys, "-", color=c, lw=1.3, label=lab, gid=f"cand-{slug(lab)}")
        ax.scatter(xs, ys, s=[8 + 40 * np.sqrt(n / max(ns)) for n in ns], color=c, zorder=3)
        series.append({"kind": "candidates", "label": lab, "bins": [list(bins[j]) for j in xs], "accuracy": ys, "trials": ns})
    chance = [100.0 / ((lo + min(hi, 60)) / 2) for lo, hi in bins]
    ax.plot(range(len(bins)), chance, ":", marker="_", ms=14, color="grey", lw=1, label="1/n (uniform pick)", gid="cand-chance")
    ax.set_xticks(range(len(bins)), [str(lo) if lo == hi else (f"{lo}-{hi}" if hi < 10**6 else f"{lo}+") for lo, hi in bins])
    ax.set_xlabel("candidates per expression")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(f"{figure_title(key)}: accuracy by number of candidates, k={k} (all splits and seeds pooled)", fontsize=9)
    return fig, series


def save(fig, stem: Path, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write ``stem.<fmt>`` for each format (SVG keeps text as text); returns the paths."""
    import matplotlib

    out = []
    stem.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cptbench"}):
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            fig.savefig(path, format=fmt, dpi=130, metadata={"Date": None} if fmt == "svg" else None)
            out.append(path)
    return out


def png_bytes(fig, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def all_figures(store: ResultsStore, records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], kinds: Sequence[str] = ("shots", "candidates", "rsd"),
                candidate_shots: int | None = None) -> list[tuple[str, tuple, Any, list[dict]]]:
    """``(kind, table key, figure, series)`` for every results table and kind asked for; a kind
    with nothing to draw for a table (RSD with one seed, one k) is skipped."""
    out = []
    panels = _panels(rows)
    for key in sorted(panels, key=lambda k: (k[0], k[1], str(k[2]))):
        here = panels[key]
        if "shots" in kinds:
            fig, s = accuracy_vs_shots(records, here, key)
            out.append(("shots", key, fig, s))
        if "rsd" in kinds and any(r.n_seeds >= 2 for r in here):
            fig, s = rsd_vs_shots(records, here, key)
            if s:
                out.append(("rsd", key, fig, s))
        if "candidates" in kinds:
            fig, s = accuracy_vs_candidates(store, records, here, key, candidate_shots)
            if s:
                out.append(("candidates", key, fig, s))
    return out


def file_stem(kind: str, key: tuple) -> str:
    """The file name (without suffix) of a figure: ``<task>[_<proposals>][_limit<n>]_<kind>``."""
    task, proposals, limit = key
    base = {"shots": "accuracy_vs_shots", "rsd": "rsd_vs_shots", "candidates": "accuracy_vs_candidates"}[kind]
    extra = "" if proposals == "gt" else "_" + slug(proposals)
    return f"{slug(task)}{extra}{'' if not limit else f'_limit{limit}'}_{base}"
