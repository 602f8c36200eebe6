"""Published reference numbers, shown beside measured rows but never mixed with them.

Rows come from the ``cptbench.references`` entry-point group: each entry point is a zero-argument
callable returning dicts. An accuracy row has task, split, method, backbone, shots, proposals,
accuracy, source (few-shot rows also ``std`` and ``seeds``); a claim row (``kind: "claim"``) has
task, shots, method, baseline, gain, rsd_reduction, source: a headline such as the CPT paper's
"+17.3 points and 73.8% lower RSD at one shot on RefCOCO". cptbench's own baselines package
provides the numbers quoted in the protocol notes.

What is shown where: :func:`published_tables` (the published tables of the tasks and proposal
settings present), :func:`counterparts` (the published cell beside a measured one: same task,
split, k and method, a comparable proposal setting) and :func:`claims_for` (the headlines of a
comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Iterable, Sequence

from cptbench.report.tables import WideTable, split_order

ENTRY_POINT_GROUP = "cptbench.references"
#: the keys every published accuracy row must have
REQUIRED = ("task", "split", "method", "backbone", "shots", "proposals", "accuracy", "source")
#: the keys every published claim must have
CLAIM_REQUIRED = ("task", "shots", "method", "baseline", "gain", "rsd_reduction", "source")
#: published method names that are not cptbench method names or aliases (lower case)
PUBLISHED_NAMES = {"fine-tuning": "ft", "finetuning": "ft", "fine-tuning (head)": "ft-head"}
#: the proposal setting of rows that rank no proposals (a supervised detector that predicts boxes)
NO_PROPOSALS = "n/a (predicts boxes)"


def _entries() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        out += [(f"{ep.value} row {i}", dict(row)) for i, row in enumerate(ep.load()())]
    return out


def published_rows() -> list[dict[str, Any]]:
    """Every published accuracy row of every installed entry point (a :class:`ValueError` for a
    row that lacks a :data:`REQUIRED` key)."""
    rows = []
    for where, row in _entries():
        if row.get("kind", "accuracy") != "accuracy":
            continue
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValueError(f"published reference {where} lacks {missing}")
        rows.append(row)
    return rows


def published_claims() -> list[dict[str, Any]]:
    """Every published headline claim (``kind: "claim"``) of every installed entry point."""
    claims = []
    for where, row in _entries():
        if row.get("kind") == "claim":
            missing = [k for k in CLAIM_REQUIRED if k not in row]
            if missing:
                raise ValueError(f"published claim {where} lacks {missing}")
            claims.append(row)
    return claims


def reference_method(name: str) -> str | None:
    """The cptbench method a published method name stands for (``CPT-Blk`` -> ``cpt-blk``,
    ``fine-tuning`` -> ``ft``), or None where no installed method is the same thing."""
    low = str(name).strip().lower()
    if low in PUBLISHED_NAMES:
        return PUBLISHED_NAMES[low]
    try:
        from cptbench.methods.registry import canonical_method

        return canonical_method(low)
    except Exception:
        return None


def proposal_kind(proposals: str) -> str:
    """``gt``, ``det`` (any detections file) or ``none`` (a row that ranks no proposals)."""
    p = str(proposals)
    return "gt" if p == "gt" else "det" if p.startswith("det") else "none"


def published_cell(row: dict[str, Any]) -> str:
    """A published number as a cell: ``26.90``, or ``31.40 ± 2.10 (5 seeds)`` for a few-shot row."""
    text = f"{float(row['accuracy']):.2f}"
    if row.get("std") is not None:
        text += f" ± {float(row['std']):.2f}" + (f" ({row['seeds']} seeds)" if row.get("seeds") else "")
    return text


@dataclass(frozen=True)
class PublishedSelection:
    """What :func:`published_tables` shows and how many rows it left out (other proposal settings)."""

    tables: list[WideTable]
    hidden: int
    tasks_without: list[str]


def published_tables(tasks: Sequence[str] | None = None, settings: Iterable[tuple[str, str]] | None = None) -> list[WideTable]:
    """One table per (task, proposal setting): rows method x backbone x shots, columns splits.
    ``tasks``: only these; ``settings``: only the (task, proposals) pairs measured, matched by kind
    (``gt`` with ``gt``, a detections file with the published detections); rows that rank no
    proposals (the supervised reference) always come."""
    return select_published(tasks, settings).tables


def select_published(tasks: Sequence[str] | None = None,
                     settings: Iterable[tuple[str, str]] | None = None) -> PublishedSelection:
    """:func:`published_tables` with the count of rows left out for their proposal setting and the
    tasks that have no published row at all."""
    wanted = None if settings is None else {(t, proposal_kind(p)) for t, p in settings}
    groups: dict[tuple[str, str], dict[tuple[str, str, str, str], dict[str, str]]] = {}
    splits: dict[tuple[str, str], set[str]] = {}
    hidden = 0
    seen_tasks = set()
    for r in published_rows():
        if tasks and r["task"] not in tasks:
            continue
        seen_tasks.add(r["task"])
        kind = proposal_kind(r["proposals"])
        if wanted is not None and kind != "none" and (r["task"], kind) not in wanted:
            hidden += 1
            continue
        key = (r["task"], r["proposals"])
        rkey = (str(r["method"]), str(r["backbone"]), str(r["shots"]), str(r["source"]))
        groups.setdefault(key, {}).setdefault(rkey, {})[r["split"]] = published_cell(r)
        splits.setdefault(key, set()).add(r["split"])
    out = []
    for (task, proposals), body in sorted(groups.items()):
        cols = sorted(splits[(task, proposals)], key=split_order)
        rows = [[m, b, k, *[cells.get(c, "") for c in cols], src] for (m, b, k, src), cells in body.items()]
        out.append(WideTable(["method", "backbone", "shots", *cols, "source"], rows,
                             f"PUBLISHED (not measured here): {task}, proposals {proposals}"))
    missing = sorted(set(tasks or ()) - seen_tasks)
    return PublishedSelection(out, hidden, missing)


def counterparts(task: str, split: str, shots: int, method: str, proposals: str) -> list[dict[str, Any]]:
    """The published rows of the same task, split, k and method (by :func:`reference_method`) with
    a comparable proposal setting: what a measured cell is read against."""
    kind = proposal_kind(proposals)
    return [r for r in published_rows()
            if r["task"] == task and r["split"] == split and str(r["shots"]) == str(shots)
            and proposal_kind(r["proposals"]) == kind and reference_method(r["method"]) == method]


def claims_for(task: str, shots: int) -> list[dict[str, Any]]:
    """The published headline claims made for ``task`` at ``shots``."""
    return [c for c in published_claims() if c["task"] == task and int(c["shots"]) == int(shots)]


def claim_text(c: dict[str, Any]) -> str:
    """``the paper: CPT beats fine-tuning by +17.3 points and a 73.8% lower RSD at k=1 on refcoco
    (VinVL; on average over ...; source)``."""
    backbone = f"{c['backbone']}; " if c.get("backbone") else ""
    averaging = f"{c['averaging']}; " if c.get("averaging") else ""
    return (f"published: {c['method']} vs {c['baseline']} at k={c['shots']} on {c['task']}: gain "
            f"{float(c['gain']):+.1f} points, RSD reduction {float(c['rsd_reduction']):.1f}% ({backbone}{averaging}{c['source']})")
