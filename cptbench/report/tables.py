"""Leaderboard rows as text: the long CSV and JSON, cells, wide tables, Markdown and LaTeX.

The long CSV carries ``schema_version`` (:data:`CSV_SCHEMA_VERSION`); docs/results.md documents
it column by column.

Tables (:func:`wide_tables`): rows (model, method, shots), columns = eval splits; every row says how
many seeds it averages, zero-shot rows are marked, and notes say where rows that sit side by side
average different numbers of seeds.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from cptbench.report.aggregate import LeaderboardRow, label_key, method_labels
# the cell texts live in cptbench.report.cells; re-exported here, where callers have always found them
from cptbench.report.cells import (COMPACT_LEGEND, LEGEND, cell, cell_lines, ci_text, compact_cell,  # noqa: F401
                                   mean_std_text, rsd_text, shots_text)

#: version of the leaderboard CSV layout (the ``schema_version`` column); bump when columns change meaning
#: (4: ``ci95_low`` / ``ci95_high`` need 3+ seeds with some spread and are clipped to 0-100)
CSV_SCHEMA_VERSION = 4

#: the long CSV's columns, in order (the fields of :class:`LeaderboardRow` and ``schema_version``)
LONG_COLUMNS = ("task", "split", "method", "model", "proposals", "shots", "n_seeds", "acc_mean", "acc_std", "rsd",
                "ci95_low", "ci95_high", "n", "n_invalid", "n_no_candidates", "n_skipped", "method_config_hash",
                "model_fingerprint", "data_fingerprint", "task_version", "limit", "skip_bad", "uses_eval_labels", "seeds",
                "sampler", "label", "schema_version")
def _column(r: LeaderboardRow, key: str) -> Any:
    return CSV_SCHEMA_VERSION if key == "schema_version" else getattr(r, key)


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


def long_csv(rows: Sequence[LeaderboardRow]) -> str:
    """The long CSV (:data:`LONG_COLUMNS`): floats rounded to 4 decimals, NaN as an empty cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LONG_COLUMNS)
    for r in rows:
        w.writerow([_csv_value(_column(r, k)) for k in LONG_COLUMNS])
    return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else round(v, 4)
    return v


def long_json(rows: Sequence[LeaderboardRow]) -> list[dict[str, Any]]:
    """The long rows as JSON-safe dicts (NaN -> null), with the CSV's columns plus ``method_config``."""
    out = []
    for r in rows:
        d = {k: json_safe(_column(r, k)) for k in LONG_COLUMNS}
        d["method_config"] = dict(r.method_config)
        out.append(d)
    return out


def split_order(split: str) -> tuple[int, str]:
    """val first, then the test splits, then anything else (the order papers print)."""
    return (0 if split == "val" else 1 if split.startswith("test") else 2, split)


# -- wide tables ---------------------------------------------------------------------------------
@dataclass
class TableEntry:
    """One measured table row: a method (label) at one k, with its aggregate row per split."""

    model: str
    label: str
    shots: int
    cells: dict[str, LeaderboardRow]

    @property
    def seed_counts(self) -> list[int]:
        """The distinct seed counts of the row's cells, ascending."""
        return sorted({int(c.n_seeds) for c in self.cells.values()})

    def seeds_text(self) -> str:
        """The seed count, or its range (``1-3``) where the splits differ."""
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
        """The models of the measured rows, sorted."""
        return sorted({e.model for e in self.entries})


def _seed_notes(entries: Sequence[TableEntry]) -> list[str]:
    notes = []
    for e in entries:
        if len(e.seed_counts) > 1:
            per = ", ".join(f"{s} {c.n_seeds}" for s, c in sorted(e.cells.items(), key=lambda x: split_order(x[0])))
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


def wide_tables(rows: Sequence[LeaderboardRow]) -> list[WideTable]:
    """The tables of ``rows``, each row named by the ``label`` that :func:`~cptbench.report.aggregate.aggregate`
    gave it over every row, so a table of a subset (one task) names its rows as the CSV, the JSON
    and ``compare`` do; rows without a label are named among themselves."""
    labels = None if all(r.label for r in rows) else method_labels(rows)
    tables: dict[tuple, dict[tuple, dict[str, LeaderboardRow]]] = {}
    splits: dict[tuple, list[str]] = {}
    notes: dict[tuple, list[str]] = {}
    for r in rows:
        tkey = (r.task, r.proposals, r.limit)
        rkey = (r.model, r.label if labels is None else labels[label_key(r)], r.shots)
        tables.setdefault(tkey, {}).setdefault(rkey, {})[r.split] = r
        bits = [f"{getattr(r, k)} {what}" for k, what in (("n_invalid", "invalid predictions"),
                                                          ("n_no_candidates", "expressions without candidates (scored as misses)"),
                                                          ("n_skipped", "bad expressions/boxes skipped")) if getattr(r, k)]
        if bits:
            notes.setdefault(tkey, []).append(f"{rkey[1]} k={r.shots} {r.split}: " + ", ".join(bits)
                                              + (f" (over {r.n_seeds} seeds)" if r.n_seeds > 1 else ""))
        if r.split not in splits.setdefault(tkey, []):
            splits[tkey].append(r.split)
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


# -- whole documents -----------------------------------------------------------------------------
def wide_csv(tables: Sequence[WideTable]) -> str:
    """The tables' text rows as one CSV, each row prefixed by its table's title."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for t in tables:
        w.writerow(["table", *t.header])
        for row in t.rows:
            w.writerow([t.title, *row])
    return buf.getvalue()


def markdown(tables: Sequence[WideTable]) -> str:
    """The tables as Markdown, each under its title with its notes, and the legend where any is measured."""
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
    """``text`` with LaTeX's special characters escaped."""
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
