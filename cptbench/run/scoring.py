"""The one scorer: every method's predictions are judged here, the same way.

A prediction is the arg-max of the method's per-candidate scores (first index on ties). It is
*invalid* when the score array has the wrong length or holds NaN/inf-only values; invalid
predictions count as incorrect and are reported (``n_invalid``), never silently folded into misses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from cptbench.core.boxes import MetricSpec
from cptbench.data.examples import Example, Label


@dataclass(frozen=True)
class ScoredExample:
    """The scorer's verdict on one expression (a row of the predictions file)."""

    example_id: str
    pred_index: int  # -1 when invalid or no candidates
    iou: float
    correct: bool
    status: str  # "ok", "invalid", "no_candidates"
    detail: str = ""

    def to_json(self, scores: np.ndarray | None = None) -> dict[str, Any]:
        """The predictions-file row (with the method's ``scores`` rounded, non-finite as null)."""
        row = {"example_id": self.example_id, "pred": self.pred_index, "iou": round(self.iou, 6),
               "correct": self.correct, "status": self.status}
        if self.detail:
            row["detail"] = self.detail
        if scores is not None:
            row["scores"] = [None if not np.isfinite(s) else round(float(s), 6) for s in np.asarray(scores, dtype=np.float64).ravel()]
        return row


def score_example(example: Example, label: Label, scores: Any, metric: MetricSpec) -> ScoredExample:
    """Judge one expression: the arg-max candidate against the label under the task's metric, or
    ``invalid`` (wrong shape or length, NaN, no finite score) or ``no_candidates``."""
    n = example.n_candidates
    if n == 0:
        return ScoredExample(example.example_id, -1, 0.0, False, "no_candidates")
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        return ScoredExample(example.example_id, -1, 0.0, False, "invalid", "scores are not numeric")
    if s.ndim != 1:
        return ScoredExample(example.example_id, -1, 0.0, False, "invalid", f"scores have shape {s.shape}, not one score per candidate")
    if s.shape[0] != n:
        return ScoredExample(example.example_id, -1, 0.0, False, "invalid", f"{s.shape[0]} scores for {n} candidates")
    if np.isnan(s).any() or not np.isfinite(s).any():
        return ScoredExample(example.example_id, -1, 0.0, False, "invalid", "NaN or no finite score")
    pred = int(np.argmax(s))
    value = float(metric.ious(example.boxes[pred], label.box)[0])
    return ScoredExample(example.example_id, pred, value, bool(metric.hits(value)), "ok")


@dataclass(frozen=True)
class Summary:
    """Counts over a split's rows."""

    n: int
    n_correct: int
    n_invalid: int
    n_no_candidates: int

    @property
    def accuracy(self) -> float:
        """Percent correct (NaN for an empty split)."""
        return 100.0 * self.n_correct / self.n if self.n else float("nan")


def summarize(rows: Sequence[Mapping[str, Any]]) -> Summary:
    """The :class:`Summary` of predictions-file rows."""
    return Summary(
        n=len(rows),
        n_correct=sum(1 for r in rows if r["correct"]),
        n_invalid=sum(1 for r in rows if r["status"] == "invalid"),
        n_no_candidates=sum(1 for r in rows if r["status"] == "no_candidates"),
    )


def proposal_recall(examples: Sequence[Example], labels: Mapping[str, Label], metric: MetricSpec) -> float:
    """Percent of expressions with at least one candidate that counts as a hit (the oracle ceiling)."""
    hits = 0
    for ex in examples:
        if ex.n_candidates:
            hits += bool(np.any(metric.hits(metric.ious(ex.boxes, labels[ex.example_id].box))))
    return 100.0 * hits / len(examples) if examples else float("nan")
