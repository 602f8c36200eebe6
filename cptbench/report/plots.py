"""Figures (matplotlib, Agg, no pyplot state): accuracy and RSD against shots, accuracy against the
number of candidates (:mod:`cptbench.report.plot_candidates`). Every builder returns
``(figure, series)``: ``series`` lists exactly what was drawn (label, split, x, y, band, seed points,
seed counts, reference lines, published points), so tests and the report can check the data, and
each drawn artist carries an SVG id ``<kind>-<split>-<label slug>``.

What the accuracy figure shows (:func:`accuracy_vs_shots`): per split, each trained method's mean
over seeds against k with a ±1 population-std band and every seed as a point (the legend gives the
seed count; a point averaging fewer seeds than its line says ``n=...``); methods that do not train
and ran at one k as dashed levels; published numbers of the same task, k and proposal setting as
hollow stars; and reference lines that do not set the scale (:mod:`cptbench.report.figure_style`):
the ceiling of a method that reads evaluation labels (oracle), chance (the mean of 1 / candidates,
from the predictions) and ``random``. Colours are the methods' own in every figure.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from cptbench.core.errors import CptbenchError
from cptbench.report.aggregate import MIN_SEEDS_FOR_INTERVAL, LeaderboardRow
from cptbench.report.figure_style import (apply_y_range, method_colour, png_bytes, reference_line, save,  # noqa: F401
                                          series_style, y_range)
from cptbench.report.selection import group_key, load_predictions
from cptbench.report.tables import split_order, table_title
from cptbench.results.records import RunRecord
from cptbench.results.store import ResultsStore


def slug(text: str) -> str:
    """An SVG-id-safe form of a label: ``cpt-blk[score=auto]`` -> ``cpt-blk_score_auto``."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")


def figure(n_panels: int, width_per: float = 3.6, height: float = 3.2):
    """A constrained-layout figure of ``n_panels`` panels (3 a row) and its axes."""
    from matplotlib.figure import Figure

    cols = min(n_panels, 3)
    rows = (n_panels + cols - 1) // cols
    fig = Figure(figsize=(width_per * cols + 0.6, height * rows + 0.7), layout="constrained")
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    return fig, axes


def method_trains(method: str) -> bool:
    """Whether a method trains (its accuracy can change with k); unknown plug-ins count as training."""
    try:
        from cptbench.methods.registry import get_method_class

        return bool(getattr(get_method_class(method), "trains", True))
    except Exception:
        return True


def figure_title(key: tuple) -> str:
    """The title of the figures of a table key (task, proposals, limit), as the table's."""
    return table_title(*key)


def series_label(r: LeaderboardRow, rows: Sequence[LeaderboardRow]) -> str:
    """A row's label in figures: its table label, with the model where the figure has several."""
    models = {x.model for x in rows if x.model != "none"}
    return r.label + (f" ({r.model})" if len(models) > 1 and r.model != "none" else "")


def exact_chance(store: ResultsStore | None, records: Sequence[RunRecord], key: tuple) -> dict[str, float]:
    """Per split of the table ``key``: the accuracy of a uniform pick, the mean over expressions of
    1 / candidates (0 without candidates), read from one predictions file of the split."""
    out: dict[str, float] = {}
    if store is None:
        return out
    for rec in records:
        if (rec.task, rec.proposals, rec.limit) != key or rec.split in out:
            continue
        try:
            preds = load_predictions(store, rec)
        except CptbenchError:
            continue
        if preds:
            out[rec.split] = 100.0 * float(np.mean([1.0 / len(p["scores"]) if p.get("scores") else 0.0 for p in preds]))
    return out


def published_points(key: tuple, ks: Sequence[int]) -> list[dict[str, Any]]:
    """Published accuracy rows of the table ``key``'s task and proposal kind at a k of the axis."""
    from cptbench.report.references import proposal_kind, published_rows, reference_method

    task, proposals, _ = key
    out = []
    for r in published_rows():
        if r["task"] == task and proposal_kind(r["proposals"]) == proposal_kind(proposals) and r["shots"] in ks:
            out.append({**r, "cptbench_method": reference_method(r["method"])})
    return out


def accuracy_vs_shots(records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], key: tuple, store=None,
                      y_mode="shared"):
    """Accuracy against k per split (module docstring); ``y_mode``: shared, panel or (low, high)."""
    return _over_shots(records, rows, key, "acc", store, y_mode)


def rsd_vs_shots(records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], key: tuple, store=None,
                 y_mode="shared"):
    """RSD (population std / mean, %) against k per split, only at the k where a method has
    :data:`~cptbench.report.aggregate.MIN_SEEDS_FOR_INTERVAL` or more seeds (two seeds give an RSD
    that is noise); zero-shot has no RSD."""
    return _over_shots(records, rows, key, "rsd", store, y_mode)


def _kind(r: LeaderboardRow) -> str:
    if r.uses_eval_labels:
        return "ceiling"
    if r.method == "random":
        return "chance"
    return "measured"


def _over_shots(records, rows, key, what, store, y_mode):
    rows = [r for r in rows if (r.task, r.proposals, r.limit) == key]
    splits = sorted({r.split for r in rows}, key=split_order)
    ks = sorted({r.shots for r in rows if what == "acc" or r.shots > 0})
    pos = {k: i for i, k in enumerate(ks)}
    acc_by_group: dict[tuple, dict[int, float]] = {}
    for rec in records:
        acc_by_group.setdefault(group_key(rec), {})[rec.seed] = float(rec.accuracy)
    chance = exact_chance(store, records, key) if what == "acc" else {}
    published = published_points(key, ks) if what == "acc" else []
    fig, axes = figure(len(splits))
    series: list[dict[str, Any]] = []
    labels = sorted({series_label(r, rows) for r in rows})
    refs: list[list[tuple[float, str, str, str]]] = []
    ranges = []
    for ax, split in zip(axes, splits):
        here = [r for r in rows if r.split == split]
        data: list[float] = []
        panel_refs: list[tuple[float, str, str, str]] = []
        for lab in labels:
            pts = sorted((r for r in here if series_label(r, rows) == lab), key=lambda r: r.shots)
            if what == "rsd":
                pts = [r for r in pts if r.shots > 0 and r.n_seeds >= MIN_SEEDS_FOR_INTERVAL and r.rsd == r.rsd]
            if not pts:
                continue
            sid = f"{split}-{slug(lab)}"
            if what == "acc" and _kind(pts[0]) != "measured" and len(pts) == 1:
                kind = _kind(pts[0])
                text = f"{lab} (ceiling)" if kind == "ceiling" else f"{lab} ({pts[0].n_seeds} seeds)"
                panel_refs.append((float(pts[0].acc_mean), text, kind, f"mean-{sid}"))
                series.append({"kind": "acc", "split": split, "label": lab, "shots": [pts[0].shots],
                               "mean": [float(pts[0].acc_mean)], "std": [float(pts[0].acc_std)],
                               "n_seeds": [int(pts[0].n_seeds)], "seed_points": [], "level": True, "reference": kind,
                               "id": sid})
                continue
            series.append(_draw(ax, lab, pts, pos, ks, what, sid, acc_by_group, data))
        if split in chance:
            panel_refs.append((chance[split], "chance (mean 1/candidates)", "chance", f"chance-{split}"))
        for p in (x for x in published if x["split"] == split):
            colour = method_colour(p["cptbench_method"]) if p["cptbench_method"] else "#555555"
            ax.scatter([pos[p["shots"]]], [p["accuracy"]], marker="*", s=70, facecolors="none", edgecolors=colour,
                       linewidths=1.0, zorder=4, label=f"published: {p['method']} ({p['backbone']}, {p['proposals']})",
                       gid=f"published-{split}-{slug(p['method'])}")
            data.append(float(p["accuracy"]))
            series.append({"kind": "published", "split": split, "label": p["method"], "shots": [p["shots"]],
                           "accuracy": [float(p["accuracy"])], "source": p["source"], "proposals": p["proposals"]})
        refs.append(panel_refs)
        ranges.append(y_range(data, min_span=10.0 if what == "acc" else 5.0,
                              bounds=(0.0, 100.0) if what == "acc" else (0.0, 1000.0)))
        ax.set_xticks(range(len(ks)), [("0\n(zero-shot)" if k == 0 else str(k)) for k in ks])
        ax.set_xlim(-0.5, len(ks) - 0.5)
        ax.set_xlabel("k (training expressions)")
        ax.set_ylabel("accuracy (%)" if what == "acc" else "RSD (%)")
        ax.set_title(split)
        ax.grid(alpha=0.3)
    limits = apply_y_range(axes, ranges, y_mode if what == "acc" or not isinstance(y_mode, tuple) else "shared")
    for ax, panel_refs, lim, split in zip(axes, refs, limits, splits):
        for slot, (y, text, kind, gid) in enumerate(sorted(panel_refs, key=lambda x: -x[0])):
            style = {"color": method_colour("random"), "ls": "--"} if text.startswith("random") else None
            visible = reference_line(ax, y, text, kind, lim, gid, slot, style)
            series.append({"kind": "reference", "split": split, "label": text, "y": y, "reference": kind,
                           "visible": visible, "id": gid})
    _legend(fig, axes)
    what_text = ("accuracy: mean over seeds, band = ±1 population std, points = seeds" if what == "acc"
                 else f"RSD = population std / mean over seeds (k with {MIN_SEEDS_FOR_INTERVAL}+ seeds)")
    fig.suptitle(f"{figure_title(key)}: {what_text}", fontsize=9)
    return fig, series


def _draw(ax, lab, pts, pos, ks, what, sid, acc_by_group, data) -> dict[str, Any]:
    """One measured series on one panel: a level (a method that does not train, at one k) or a line
    with its band, seed points and seed-count notes."""
    style = series_style(lab)
    c = style["color"]
    counts = [int(r.n_seeds) for r in pts]
    typical = max(counts)
    name = f"{lab} ({typical} seed{'s' if typical != 1 else ''})"
    level = len(pts) == 1 and len(ks) > 1 and not method_trains(pts[0].method)
    if what == "rsd":
        x = np.array([pos[r.shots] for r in pts], dtype=float)
        y = np.array([100 * r.rsd for r in pts])
        ax.plot(x, y, ls=style["ls"], marker=style["marker"], color=c, lw=1.5, ms=3.5, label=name, gid=f"rsd-{sid}")
        data += list(y)
        return {"kind": "rsd", "split": pts[0].split, "label": lab, "shots": [r.shots for r in pts],
                "rsd_percent": [float(v) for v in y], "n_seeds": counts, "level": False, "id": sid}
    mean = np.array([r.acc_mean for r in pts])
    std = np.array([r.acc_std for r in pts])
    if level:
        x = np.array([0, len(ks) - 1], dtype=float)
        mean, std = np.repeat(mean, 2), np.repeat(std, 2)
        ax.plot(x, mean, "--", color=c, lw=1.2, label=f"{name}, does not train", gid=f"mean-{sid}")
    else:
        x = np.array([pos[r.shots] for r in pts], dtype=float)
        ax.plot(x, mean, ls=style["ls"], marker=style["marker"], color=c, lw=1.5, ms=3.5, label=name, gid=f"mean-{sid}")
    if any(r.n_seeds > 1 for r in pts):
        ax.fill_between(x, mean - std, mean + std, color=c, alpha=0.15, lw=0, gid=f"band-{sid}")
        if len(x) == 1:  # a band of one point has no width: the same ±1 std as an error bar
            ax.errorbar(x, mean, yerr=std, color=c, lw=1.2, capsize=4, gid=f"band-{sid}-bar")
    data += list(mean - std) + list(mean + std)
    sx, sy = [], []
    for r in pts:
        vals = acc_by_group.get(group_key(r), {})
        if r.n_seeds < 2 or level:
            continue
        offs = np.linspace(-0.12, 0.12, len(vals)) if len(vals) > 1 else np.zeros(1)
        sx += list(pos[r.shots] + offs)
        sy += [vals[s] for s in sorted(vals)]
    if sx:
        ax.scatter(sx, sy, s=9, color=c, alpha=0.55, lw=0, gid=f"seeds-{sid}")
        data += sy
    notes = []
    for r in pts:
        if not level and r.n_seeds < typical:
            ax.annotate(f"n={r.n_seeds}", (pos[r.shots], r.acc_mean), textcoords="offset points", xytext=(4, -9),
                        fontsize=6.5, color=c, gid=f"count-{sid}-{r.shots}")
            notes.append(r.shots)
    return {"kind": "acc", "split": pts[0].split, "label": lab, "shots": [r.shots for r in pts],
            "mean": [float(v) for v in mean[: len(pts)]] if not level else [float(mean[0])],
            "std": [float(r.acc_std) for r in pts], "n_seeds": counts, "count_notes": notes,
            "seed_points": list(zip(map(float, sx), map(float, sy))), "level": level, "id": sid, "colour": c}


def _legend(fig, axes) -> None:
    if not axes:
        return
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    if names:
        fig.legend(handles, names, loc="outside lower center", ncols=min(3, max(1, len(names))), fontsize=7.5,
                   frameon=False)


def all_figures(store: ResultsStore, records: Sequence[RunRecord], rows: Sequence[LeaderboardRow],
                kinds: Sequence[str] = ("shots", "candidates", "rsd"), candidate_shots: int | None = None,
                y_mode="shared") -> list[tuple[str, tuple, Any, list[dict]]]:
    """``(kind, table key, figure, series)`` for every results table and kind asked for; a kind
    with nothing to draw for a table (RSD without 3 seeds at any k > 0, one k) is skipped."""
    from cptbench.report.plot_candidates import accuracy_vs_candidates

    out = []
    panels: dict[tuple, list[LeaderboardRow]] = {}
    for r in rows:
        panels.setdefault((r.task, r.proposals, r.limit), []).append(r)
    for key in sorted(panels, key=lambda k: (k[0], k[1], str(k[2]))):
        here = panels[key]
        if "shots" in kinds:
            fig, s = accuracy_vs_shots(records, here, key, store, y_mode)
            out.append(("shots", key, fig, s))
        if "rsd" in kinds and any(r.n_seeds >= MIN_SEEDS_FOR_INTERVAL and r.shots > 0 for r in here):
            fig, s = rsd_vs_shots(records, here, key, store, y_mode)
            if any(x["kind"] == "rsd" for x in s):
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
