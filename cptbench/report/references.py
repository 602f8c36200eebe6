"""Published reference numbers, shown beside measured rows but never mixed with them.

Rows come from the ``cptbench.references`` entry-point group: each entry point is a zero-argument
callable returning dicts with task, split, method, backbone, shots, proposals, accuracy, source.
(cptbench's own baselines package provides the numbers quoted in the protocol notes.)
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Sequence

from cptbench.report.tables import WideTable, split_order

ENTRY_POINT_GROUP = "cptbench.references"
#: the keys every published row must have
REQUIRED = ("task", "split", "method", "backbone", "shots", "proposals", "accuracy", "source")


def published_rows() -> list[dict[str, Any]]:
    """Every published row of every installed entry point (a :class:`ValueError` for a row that
    lacks a :data:`REQUIRED` key)."""
    rows: list[dict[str, Any]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        for i, row in enumerate(ep.load()()):
            missing = [k for k in REQUIRED if k not in row]
            if missing:
                raise ValueError(f"published reference {ep.value} row {i} lacks {missing}")
            rows.append(dict(row))
    return rows


def published_tables(tasks: Sequence[str] | None = None) -> list[WideTable]:
    """One table per (task, proposal setting): rows method x shots, columns splits."""
    groups: dict[tuple[str, str], dict[tuple[str, str, str, str], dict[str, str]]] = {}
    splits: dict[tuple[str, str], set[str]] = {}
    for r in published_rows():
        if tasks and r["task"] not in tasks:
            continue
        key = (r["task"], r["proposals"])
        rkey = (str(r["method"]), str(r["backbone"]), str(r["shots"]), str(r["source"]))
        groups.setdefault(key, {}).setdefault(rkey, {})[r["split"]] = f"{float(r['accuracy']):.2f}"
        splits.setdefault(key, set()).add(r["split"])
    out = []
    for (task, proposals), body in sorted(groups.items()):
        cols = sorted(splits[(task, proposals)], key=split_order)
        rows = [[m, b, k, *[cells.get(c, "") for c in cols], src] for (m, b, k, src), cells in body.items()]
        out.append(WideTable(["method", "backbone", "shots", *cols, "source"], rows,
                             f"PUBLISHED (not measured here): {task}, proposals {proposals}"))
    return out
