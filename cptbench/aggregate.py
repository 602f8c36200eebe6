"""Aggregation of run records into leaderboards (rebuilt from ``runs.jsonl`` alone).

Per group (task, task version, split, method, method config, model and its content fingerprint,
data fingerprint, proposals, shots, limit, data policy): a group never mixes fingerprints.
``n_seeds``, ``acc_mean``, ``acc_std`` (population, ddof 0, as the CPT paper), ``rsd`` = std / mean,
and a 95% confidence interval of the mean from the t distribution (sample std, n - 1 degrees of
freedom; empty for a single seed).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

GROUP_KEYS = ("task", "task_version", "split", "method", "method_config_hash", "model", "model_fingerprint",
              "data_fingerprint", "proposals", "shots", "limit", "skip_bad")
LONG_COLUMNS = ("task", "split", "method", "model", "proposals", "shots", "n_seeds", "acc_mean", "acc_std", "rsd",
                "ci95_low", "ci95_high", "n", "n_invalid", "n_no_candidates", "n_skipped", "method_config_hash",
                "model_fingerprint", "data_fingerprint", "task_version", "limit", "skip_bad", "uses_eval_labels", "seeds")


@dataclass(frozen=True)
class Stats:
    n: int
    mean: float
    std: float
    rsd: float
    ci95_low: float
    ci95_high: float


def seed_stats(values: Sequence[float]) -> Stats:
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return Stats(0, nan, nan, nan, nan, nan)
    mean = float(v.mean())
    std = float(v.std(ddof=0))
    rsd = std / mean if mean != 0 else float("nan")
    if n > 1:
        from scipy.stats import t

        half = float(t.ppf(0.975, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
    else:
        lo = hi = float("nan")
    return Stats(n, mean, std, rsd, lo, hi)


def _as_dict(rec: Any) -> dict[str, Any]:
    return rec.to_json() if hasattr(rec, "to_json") else dict(rec)


def aggregate(records: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per group, sorted by task, split, method, shots (records: :class:`RunRecord` or dicts)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in map(_as_dict, records):
        groups.setdefault(tuple(rec.get(k) for k in GROUP_KEYS), []).append(rec)
    rows = []
    for key, recs in groups.items():
        recs = sorted(recs, key=lambda r: r["seed"])
        s = seed_stats([r["accuracy"] for r in recs])
        row = dict(zip(GROUP_KEYS, key))
        row.update(
            n_seeds=s.n, acc_mean=s.mean, acc_std=s.std, rsd=s.rsd, ci95_low=s.ci95_low, ci95_high=s.ci95_high,
            n=int(round(float(np.mean([r["n"] for r in recs])))), n_invalid=sum(r["n_invalid"] for r in recs),
            n_no_candidates=sum(r.get("n_no_candidates", 0) for r in recs),
            n_skipped=sum(sum((r.get("n_skipped") or {}).values()) for r in recs),
            uses_eval_labels=any(r.get("uses_eval_labels") for r in recs),
            seeds=" ".join(str(r["seed"]) for r in recs),
        )
        rows.append(row)
    rows.sort(key=lambda r: (r["task"], r["proposals"], r["model"], r["method"], r["method_config_hash"],
                             r["shots"], str(r["limit"]), r["split"]))
    return rows


def row_identity(r: dict[str, Any]) -> tuple:
    """What tells two rows of one method apart besides task, split and shots."""
    return (r["method"], r["method_config_hash"], r.get("model_fingerprint"), r.get("data_fingerprint"), r.get("skip_bad"))


def method_labels(rows: Sequence[dict[str, Any]]) -> dict[tuple, str]:
    """Display name per :func:`row_identity`: the method name, plus the config hash where one method
    ran with several configs, ``[model <fp>]`` / ``[data <fp>]`` where its rows differ by the model's
    or the data's content, ``[skip-bad]`` for runs that dropped bad data; a ``*`` marks methods that
    read evaluation labels."""
    seen: dict[str, dict[str, set]] = {}
    for r in rows:
        d = seen.setdefault(r["method"], {"config": set(), "model": set(), "data": set()})
        d["config"].add(r["method_config_hash"])
        d["model"].add((r["model"], r.get("model_fingerprint")))
        d["data"].add((r["task"], r.get("data_fingerprint")))
    out = {}
    for r in rows:
        d = seen[r["method"]]
        name = r["method"] + ("*" if r.get("uses_eval_labels") else "")
        if len(d["config"]) > 1:
            name += f"#{r['method_config_hash'][:6]}"
        if len({fp for m, fp in d["model"] if m == r["model"]}) > 1:
            name += f" [model {str(r.get('model_fingerprint'))[:6]}]"
        if len({fp for t, fp in d["data"] if t == r["task"]}) > 1:
            name += f" [data {str(r.get('data_fingerprint'))[:6]}]"
        if r.get("skip_bad"):
            name += " [skip-bad]"
        out[row_identity(r)] = name
    return out


def _fmt(x: float, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def long_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LONG_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(r.get(k), float) and math.isnan(r[k]) else
                        (round(r[k], 4) if isinstance(r.get(k), float) else r.get(k))) for k in LONG_COLUMNS})
    return buf.getvalue()


def cell(row: dict[str, Any]) -> str:
    """Paper-style cell: mean ± std, with RSD in percent for multi-seed groups."""
    if row["n_seeds"] > 1:
        return f"{_fmt(row['acc_mean'])} ± {_fmt(row['acc_std'])} (RSD {_fmt(100 * row['rsd'], 1)}%)"
    return _fmt(row["acc_mean"])


def split_order(split: str) -> tuple[int, str]:
    """val first, then the test splits, then anything else (the order papers print)."""
    return (0 if split == "val" else 1 if split.startswith("test") else 2, split)


@dataclass
class WideTable:
    """Rows = (task, proposals, model, method, shots[, limit]); columns = eval splits."""

    header: list[str]
    rows: list[list[str]]
    title: str
    #: data-quality notes: rows with invalid predictions, expressions without candidates, skipped data
    notes: list[str] = field(default_factory=list)


def wide_tables(rows: Sequence[dict[str, Any]]) -> list[WideTable]:
    labels = method_labels(rows)
    tables: dict[tuple, dict[tuple, dict[str, str]]] = {}
    splits: dict[tuple, list[str]] = {}
    notes: dict[tuple, list[str]] = {}
    for r in rows:
        tkey = (r["task"], r["proposals"], r["limit"])
        rkey = (r["model"], labels[row_identity(r)], r["shots"])
        tables.setdefault(tkey, {}).setdefault(rkey, {})[r["split"]] = cell(r)
        bits = [f"{r[k]} {what}" for k, what in (("n_invalid", "invalid predictions"),
                                                 ("n_no_candidates", "expressions without candidates (scored as misses)"),
                                                 ("n_skipped", "bad expressions/boxes skipped")) if r.get(k)]
        if bits:
            notes.setdefault(tkey, []).append(f"{rkey[1]} k={r['shots']} {r['split']}: " + ", ".join(bits)
                                              + (f" (over {r['n_seeds']} seeds)" if r["n_seeds"] > 1 else ""))
        if r["split"] not in splits.setdefault(tkey, []):
            splits[tkey].append(r["split"])
    out = []
    for tkey, body in tables.items():
        task, proposals, limit = tkey
        cols = sorted(splits[tkey], key=split_order)
        title = f"{task} (proposals: {proposals}" + (f", first {limit} expressions per split" if limit else "") + ")"
        out.append(WideTable(["model", "method", "shots", *cols],
                             [[m, meth, str(k), *[body[(m, meth, k)].get(c, "") for c in cols]]
                              for (m, meth, k) in sorted(body, key=lambda x: (x[0], x[1], x[2]))], title,
                             notes.get(tkey, [])))
    return out


def wide_csv(tables: Sequence[WideTable]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for t in tables:
        w.writerow(["table", *t.header])
        for row in t.rows:
            w.writerow([t.title, *row])
    return buf.getvalue()


def markdown(tables: Sequence[WideTable]) -> str:
    parts = []
    for t in tables:
        parts.append(f"### {t.title}\n")
        parts.append("| " + " | ".join(t.header) + " |")
        parts.append("|" + "|".join("---" for _ in t.header) + "|")
        parts += ["| " + " | ".join(row) + " |" for row in t.rows]
        parts.append("")
        parts += [f"- {n}" for n in t.notes]
        if t.notes:
            parts.append("")
    parts.append("Accuracy % (IoU rule per task card); mean ± population std over seeds, RSD = std / mean. "
                 "`*` = reads evaluation labels (an upper bound, not a method).")
    return "\n".join(parts) + "\n"


def write_leaderboard(store, rows: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write leaderboard.csv (long), leaderboard_wide.csv and leaderboard.md; return paths and tables."""
    from .store import write_atomic

    if rows is None:
        rows = aggregate(store.records())
    tables = wide_tables(rows)
    paths = {
        "long": store.root / "leaderboard.csv",
        "wide": store.root / "leaderboard_wide.csv",
        "markdown": store.root / "leaderboard.md",
    }
    write_atomic(paths["long"], long_csv(rows).encode())
    write_atomic(paths["wide"], wide_csv(tables).encode())
    write_atomic(paths["markdown"], markdown(tables).encode())
    return {"paths": paths, "rows": rows, "tables": tables}
