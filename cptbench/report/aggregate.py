"""Aggregation of run records into leaderboards (rebuilt from ``runs.jsonl`` alone).

Per group (task, task version, split, method, method config, model and its content fingerprint,
data fingerprint, proposals, shots, limit, data policy): a group never mixes fingerprints.
``n_seeds``, ``acc_mean``, ``acc_std`` (population, ddof 0, as the CPT paper), ``rsd`` = std / mean
(empty when the mean is 0), and a 95% confidence interval of the mean from the t distribution
(sample std, n - 1 degrees of freedom; empty for a single seed). The long CSV carries
``schema_version`` (:data:`CSV_SCHEMA_VERSION`); docs/results.md documents it column by column.

Tables (:func:`wide_tables`): rows (model, method, shots), columns = eval splits; every row says how
many seeds it averages, zero-shot rows are marked, and notes say where rows that sit side by side
average different numbers of seeds. Two configs of one method are named by the options in which
they differ (``cpt-blk[score=auto]``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

#: version of the leaderboard CSV layout (the ``schema_version`` column); bump when columns change meaning
CSV_SCHEMA_VERSION = 2

GROUP_KEYS = ("task", "task_version", "split", "method", "method_config_hash", "model", "model_fingerprint",
              "data_fingerprint", "proposals", "shots", "limit", "skip_bad")
LONG_COLUMNS = ("task", "split", "method", "model", "proposals", "shots", "n_seeds", "acc_mean", "acc_std", "rsd",
                "ci95_low", "ci95_high", "n", "n_invalid", "n_no_candidates", "n_skipped", "method_config_hash",
                "model_fingerprint", "data_fingerprint", "task_version", "limit", "skip_bad", "uses_eval_labels", "seeds",
                "label", "schema_version")
#: legend printed under every measured table
LEGEND = ("Accuracy % (IoU rule per task card). Cells: mean ± population std (ddof 0) over seeds, RSD = std / mean, "
          "[95% t-interval of the mean]; one number = one run. zs = zero-shot (k = 0). "
          "* = reads evaluation labels (an upper bound, not a method).")


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
        from scipy.special import stdtrit  # t quantile; scipy.stats costs ~1 s of import time

        half = float(stdtrit(n - 1, 0.975)) * float(v.std(ddof=1)) / math.sqrt(n)
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
            method_config=dict(recs[0].get("method_config") or {}),
            schema_version=CSV_SCHEMA_VERSION,
        )
        rows.append(row)
    rows.sort(key=lambda r: (r["task"], r["proposals"], r["model"], r["method"], r["method_config_hash"],
                             r["shots"], str(r["limit"]), r["split"]))
    labels = method_labels(rows)
    for r in rows:
        r["label"] = labels[row_identity(r)]
    return rows


def row_identity(r: dict[str, Any]) -> tuple:
    """What tells two rows of one method apart besides task, split and shots."""
    return (r["method"], r["method_config_hash"], r.get("model_fingerprint"), r.get("data_fingerprint"), r.get("skip_bad"))


def option_value(v: Any) -> str:
    """An option value as one would write it after ``--set KEY=``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


_MISSING = "<unset>"


def config_labels(method: str, configs: dict[str, dict[str, Any]], max_keys: int = 3) -> dict[str, str]:
    """Names for several configs (hash -> options) of one method, by the options in which they
    differ: ``cpt-blk[score=auto]`` / ``cpt-blk[score=auto-safe]``. Past ``max_keys`` differing
    options, or where the options do not tell them apart, the hash prefix is added."""
    if len(configs) < 2:
        return {h: method for h in configs}
    keys = sorted(set().union(*(c.keys() for c in configs.values())))
    differing = [k for k in keys if len({option_value(c.get(k, _MISSING)) for c in configs.values()}) > 1]
    out = {}
    for h, c in configs.items():
        if differing:
            label = method + "[" + ",".join(f"{k}={option_value(c.get(k, _MISSING))}" for k in differing[:max_keys]) + "]"
            if len(differing) > max_keys:
                label += f"#{h[:6]}"
        else:
            label = f"{method}#{h[:6]}"
        out[h] = label
    dup = {v for v in out.values() if list(out.values()).count(v) > 1}
    return {h: (f"{v}#{h[:6]}" if v in dup and "#" not in v else v) for h, v in out.items()}


def method_labels(rows: Sequence[dict[str, Any]]) -> dict[tuple, str]:
    """Display name per :func:`row_identity`: the method name, plus the options that differ where
    one method ran with several configs (:func:`config_labels`), ``[model <fp>]`` / ``[data <fp>]``
    where its rows differ by the model's or the data's content, ``[skip-bad]`` for runs that
    dropped bad data; a ``*`` marks methods that read evaluation labels."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = seen.setdefault(r["method"], {"config": {}, "model": set(), "data": set()})
        d["config"].setdefault(r["method_config_hash"], dict(r.get("method_config") or {}))
        d["model"].add((r["model"], r.get("model_fingerprint")))
        d["data"].add((r["task"], r.get("data_fingerprint")))
    names = {m: config_labels(m, d["config"]) for m, d in seen.items()}
    out = {}
    for r in rows:
        d = seen[r["method"]]
        name = names[r["method"]][r["method_config_hash"]] + ("*" if r.get("uses_eval_labels") else "")
        if len({fp for m, fp in d["model"] if m == r["model"]}) > 1:
            name += f" [model {str(r.get('model_fingerprint'))[:6]}]"
        if len({fp for t, fp in d["data"] if t == r["task"]}) > 1:
            name += f" [data {str(r.get('data_fingerprint'))[:6]}]"
        if r.get("skip_bad"):
            name += " [skip-bad]"
        out[row_identity(r)] = name
    return out


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def json_safe(x: Any) -> Any:
    """``x`` with every NaN or infinite float (at any depth of dicts, lists and tuples) as None,
    for ``json.dumps(..., allow_nan=False)``: JSON has neither."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def long_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LONG_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if isinstance(r.get(k), float) and math.isnan(r[k]) else
                        (round(r[k], 4) if isinstance(r.get(k), float) else r.get(k))) for k in LONG_COLUMNS})
    return buf.getvalue()


def long_json(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The long rows as JSON-safe dicts (NaN -> null), with the CSV's columns plus ``method_config``."""
    out = []
    for r in rows:
        d = {k: json_safe(r.get(k)) for k in LONG_COLUMNS}
        d["method_config"] = r.get("method_config", {})
        out.append(d)
    return out


# -- cells ---------------------------------------------------------------------------------------
def mean_std_text(row: dict[str, Any], digits: int = 2) -> str:
    """``31.27 ± 1.19`` (2+ seeds), ``31.27`` (one run), ``n/a`` (no accuracy)."""
    if not row.get("n_seeds") or _isnan(row.get("acc_mean")):
        return "n/a"
    if row["n_seeds"] > 1:
        return f"{row['acc_mean']:.{digits}f} ± {row['acc_std']:.{digits}f}"
    return f"{row['acc_mean']:.{digits}f}"


def rsd_text(row: dict[str, Any]) -> str:
    """``RSD 3.8%``; ``RSD n/a (mean 0)`` where the mean is 0; empty for one run."""
    if row.get("n_seeds", 0) < 2:
        return ""
    if _isnan(row.get("rsd")):
        return "RSD n/a (mean 0)" if row.get("acc_mean") == 0 else "RSD n/a"
    return f"RSD {100 * row['rsd']:.1f}%"


def ci_text(row: dict[str, Any], digits: int = 2) -> str:
    """``[29.79, 32.75]`` (95% t-interval); empty for one run."""
    if row.get("n_seeds", 0) < 2 or _isnan(row.get("ci95_low")):
        return ""
    return f"[{row['ci95_low']:.{digits}f}, {row['ci95_high']:.{digits}f}]"


def cell(row: dict[str, Any]) -> str:
    """Paper-style one-line cell: ``31.27 ± 1.19 (RSD 3.8%) [29.79, 32.75]``; one run: ``31.27``."""
    if row.get("n_seeds", 0) > 1 and not _isnan(row.get("acc_mean")):
        return f"{mean_std_text(row)} ({rsd_text(row)}) {ci_text(row)}".rstrip()
    return mean_std_text(row)


def cell_lines(row: dict[str, Any]) -> list[str]:
    """Compact cell: mean ± std, then RSD, then the interval (one decimal), each on its own line."""
    lines = [mean_std_text(row)]
    if row.get("n_seeds", 0) > 1 and not _isnan(row.get("acc_mean")):
        lines += [rsd_text(row), ci_text(row, 1)]
    return lines


def split_order(split: str) -> tuple[int, str]:
    """val first, then the test splits, then anything else (the order papers print)."""
    return (0 if split == "val" else 1 if split.startswith("test") else 2, split)


def shots_text(shots: Any, compact: bool = False) -> str:
    if shots == 0:
        return "0 zs" if compact else "0 (zero-shot)"
    return str(shots)


@dataclass
class TableEntry:
    """One measured table row: a method (label) at one k, with its aggregate row per split."""

    model: str
    label: str
    shots: int
    cells: dict[str, dict[str, Any]]

    @property
    def seed_counts(self) -> list[int]:
        return sorted({int(c["n_seeds"]) for c in self.cells.values()})

    def seeds_text(self) -> str:
        counts = self.seed_counts
        return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


@dataclass
class WideTable:
    """Rows = (model, method, shots); columns = eval splits. ``header``/``rows`` are the one-line
    text form (Markdown, CSV); ``entries`` the measured rows behind them (empty for published
    tables), for layouts that format cells themselves."""

    header: list[str]
    rows: list[list[str]]
    title: str
    #: data-quality and comparability notes: invalid predictions, skipped data, differing seed counts
    notes: list[str] = field(default_factory=list)
    entries: list[TableEntry] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return sorted({e.model for e in self.entries})


def _seed_notes(entries: Sequence[TableEntry]) -> list[str]:
    notes = []
    for e in entries:
        if len(e.seed_counts) > 1:
            per = ", ".join(f"{s} {c['n_seeds']}" for s, c in sorted(e.cells.items(), key=lambda x: split_order(x[0])))
            notes.append(f"{e.label} k={e.shots}: seed counts differ across splits ({per}).")
    by_k: dict[int, list[TableEntry]] = {}
    for e in entries:
        if e.shots != 0:
            by_k.setdefault(e.shots, []).append(e)
    for k, es in sorted(by_k.items()):
        counts = {e.seeds_text() for e in es}
        if len(counts) > 1:
            per = ", ".join(f"{e.label} {e.seeds_text()}" for e in es)
            notes.append(f"k={k}: rows average different numbers of seeds ({per}); their means are not equally "
                         f"precise, and `cptbench compare` pairs them on the shared seeds only.")
    return notes


def table_title(task: str, proposals: str, limit: Any) -> str:
    """The title of the table of (task, proposals, limit): ``synthref (proposals: gt)``."""
    return f"{task} (proposals: {proposals}" + (f", first {limit} expressions per split" if limit else "") + ")"


def wide_tables(rows: Sequence[dict[str, Any]]) -> list[WideTable]:
    """The tables of ``rows`` (aggregate rows), each row named by the ``label`` that
    :func:`aggregate` gave it over every row, so a table of a subset (one task) names its rows as
    the CSV, the JSON and ``compare`` do; rows without a label are named among themselves."""
    labels = None if all("label" in r for r in rows) else method_labels(rows)
    tables: dict[tuple, dict[tuple, dict[str, dict[str, Any]]]] = {}
    splits: dict[tuple, list[str]] = {}
    notes: dict[tuple, list[str]] = {}
    for r in rows:
        tkey = (r["task"], r["proposals"], r["limit"])
        rkey = (r["model"], r["label"] if labels is None else labels[row_identity(r)], r["shots"])
        tables.setdefault(tkey, {}).setdefault(rkey, {})[r["split"]] = r
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
        title = table_title(task, proposals, limit)
        # methods that use no model (random, oracle) after the measured ones, as reference levels
        order = sorted(body, key=lambda x: (x[0] == "none", x[0], x[1], x[2]))
        entries = [TableEntry(m, meth, k, body[(m, meth, k)]) for (m, meth, k) in order]
        text_rows = [[e.model, e.label, shots_text(e.shots), e.seeds_text(),
                      *[cell(e.cells[c]) if c in e.cells else "" for c in cols]] for e in entries]
        out.append(WideTable(["model", "method", "shots", "seeds", *cols], text_rows, title,
                             notes.get(tkey, []) + _seed_notes(entries), entries, cols))
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
        parts += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
        parts.append("")
        parts += [f"- {n}" for n in t.notes]
        if t.notes:
            parts.append("")
    if any(t.entries for t in tables):
        parts.append(LEGEND)
    return "\n".join(parts) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def latex(tables: Sequence[WideTable]) -> str:
    """booktabs tables (``\\usepackage{booktabs}``): measured cells as mean $\\pm$ std with a seeds
    column; published tables captioned as such."""
    parts = []
    for t in tables:
        if t.entries:
            header = ["Model", "Method", "$k$", "Seeds", *[latex_escape(s) for s in t.splits]]
            body = []
            for e in t.entries:
                cells = []
                for s in t.splits:
                    c = e.cells.get(s)
                    cells.append("" if c is None else latex_escape(mean_std_text(c)).replace("±", r"$\pm$"))
                body.append([latex_escape(e.model), latex_escape(e.label), shots_text(e.shots),
                             e.seeds_text(), *cells])
            caption = (f"{latex_escape(t.title)}. Accuracy (\\%), mean $\\pm$ population standard deviation (ddof 0) "
                       f"over the seeds counted in the Seeds column; one number is one run.")
            align = "llrr" + "c" * len(t.splits)
        else:
            header = [latex_escape(h) for h in t.header]
            body = [[latex_escape(c) for c in row] for row in t.rows]
            caption = latex_escape(t.title) + "."
            align = "l" * (len(header))
        parts += [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{caption}}}",
                  f"\\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
        parts += [" & ".join(row) + r" \\" for row in body]
        parts += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(parts)


def write_leaderboard(store, rows: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write leaderboard.csv (long), leaderboard_wide.csv and leaderboard.md; return paths and tables."""
    from cptbench.results.store import write_atomic

    if rows is None:
        rows = aggregate(store.records())
    tables = wide_tables(rows)
    paths = {
        "long": store.root / "leaderboard.csv",
        "wide": store.root / "leaderboard_wide.csv",
        "markdown": store.root / "leaderboard.md",
    }
    write_atomic(paths["long"], long_csv(rows).encode(), kill_point="leaderboard.tmp")
    write_atomic(paths["wide"], wide_csv(tables).encode())
    write_atomic(paths["markdown"], markdown(tables).encode())
    return {"paths": paths, "rows": rows, "tables": tables}
