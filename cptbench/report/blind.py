"""Each task's blind ceiling in the report: how much of it is solvable without looking.

``cptbench data audit TASK`` keeps its report in the results folder
(:meth:`~cptbench.results.layout.ResultsLayout.audit`). For every task and proposal setting the
report's tables show, this module reads that audit and gives, per split, the best blind baseline's
accuracy with its interval and chance (blind-text reads the expression and the boxes, no pixels;
blind-image reads neither expression nor pixels). An audit of other data (another content
fingerprint) than the runs', or no audit at all, becomes a note with the command that makes one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Sequence

#: the columns of the blind-ceiling table
HEADER = ("task", "proposals", "split", "chance %", "blind-text %", "blind-image %", "solvable without looking?")


@dataclass(frozen=True)
class BlindCeilings:
    """The blind-ceiling rows (one per task, proposals and split) and notes for what is missing."""

    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...]


def _cell(entry: dict | None) -> str:
    if not entry:
        return "-"
    mark = " (beats chance)" if entry.get("flagged") else ""
    return f"{entry['accuracy']:.2f} [{entry['ci_low']:.2f}, {entry['ci_high']:.2f}]{mark}"


def blind_ceilings(store, rows: Sequence) -> BlindCeilings:
    """The blind ceilings of the (task, proposals) settings of the report's ``rows``."""
    out, notes = [], []
    settings: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        settings.setdefault((r.task, r.proposals), set()).add(r.data_fingerprint)
    for (task, proposals), fingerprints in sorted(settings.items()):
        path = store.layout.audit(task, proposals)
        make = f"`cptbench data audit {task} --results {store.root}`" + ("" if proposals == "gt" else " --proposals FILE")
        if not path.is_file():
            notes.append(f"{task} ({proposals}): no shortcut audit in the results folder; {make} makes one.")
            continue
        try:
            audit = json.loads(path.read_text(encoding="utf-8"))
            summary = audit["solvable_without_looking"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            notes.append(f"{path}: unreadable audit ({exc}); {make} writes it again.")
            continue
        fp = audit.get("data_fingerprint", "")
        if fp and fp not in fingerprints:
            notes.append(f"{task} ({proposals}): the kept audit is of other data (content {fp[:12]}) than these runs "
                         f"({', '.join(sorted(f[:12] for f in fingerprints))}); {make} audits this data.")
            continue
        if not summary:
            notes.append(f"{task} ({proposals}): the kept audit ran no blind baseline; {make} runs them.")
            continue
        for split, entry in summary.items():
            base = entry.get("baselines", {})
            verdict = "yes: a blind baseline beats chance" if entry.get("flagged") else "no: within noise of chance"
            out.append((task, proposals, split, f"{entry['chance']:.2f}", _cell(base.get("blind-text")),
                        _cell(base.get("blind-image")), verdict))
    return BlindCeilings(tuple(out), tuple(notes))


def blind_html(b: BlindCeilings) -> str:
    """The section's HTML: the table (or a line saying there is none) and the notes."""
    parts = ["<p>A method's number means little beside a rule that never looks at the image: the best blind baselines "
             "of each task's shortcut audit (<code>cptbench data audit</code>), trained on the train split, with 95% "
             "intervals. Compare methods with these rows, not only with chance.</p>"]
    if b.rows:
        head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in b.rows)
        parts.append(f"<table class='blind'><tr>{head}</tr>{body}</table>")
    parts += [f"<p class='note'>{escape(n)}</p>" for n in b.notes]
    return "\n".join(parts)


def blind_markdown(b: BlindCeilings) -> list[str]:
    """The section's Markdown lines."""
    lines = ["Best blind baselines of each task's shortcut audit (`cptbench data audit`), trained on the train split, "
             "with 95% intervals: compare methods with these rows, not only with chance.", ""]
    if b.rows:
        lines += ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in b.rows]
        lines.append("")
    lines += [f"- note: {n}" for n in b.notes]
    return lines
