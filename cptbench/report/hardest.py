"""The hardest expressions of a method: wrong at every seed (``cptbench errors``).

For each expression the method got wrong at (at least) ``min_wrong`` of its seeds: the expression,
the candidate it chose most often and its box and IoU, the true box, and the score margin
``score(chosen) - score(best-scoring candidate that counts as a hit)``, averaged over the seeds where
it was wrong (a large margin = confidently wrong). An expression with no candidate that counts as a
hit (possible with detected proposals) has no margin: no method could get it right.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from cptbench.core.boxes import iou_matrix, is_hit
from cptbench.core.errors import ResultsError
from cptbench.report.data import load_examples
from cptbench.results.records import RunRecord
from cptbench.report.selection import load_predictions
from cptbench.results.store import ResultsStore

#: the columns of :func:`to_csv`, in order
CSV_COLUMNS = ("rank", "example_id", "ref_id", "sent_id", "split", "expression", "n_wrong", "n_seeds", "chosen",
               "chosen_box", "chosen_iou", "true_box", "best_hit", "margin_mean", "picks", "n_candidates")


@dataclass
class HardExpression:
    """An expression the method got wrong at ``n_wrong`` of ``n_seeds`` seeds, with what it chose."""

    example_id: str
    split: str
    expression: str
    n_wrong: int
    n_seeds: int
    chosen: int  # the candidate picked most often when wrong (-1: invalid)
    chosen_box: list[float] | None
    chosen_iou: float
    true_box: list[float]
    best_hit: int | None  # the hit candidate with the highest score when wrong (None: no candidate is a hit)
    margin_mean: float | None
    picks: dict[int, int] = field(default_factory=dict)  # seed -> picked candidate
    n_candidates: int = 0

    def to_row(self, rank: int) -> dict[str, Any]:
        """The CSV row (:data:`CSV_COLUMNS`) of this expression at ``rank``."""
        ref, _, sent = self.example_id.partition(":")
        box = lambda b: "" if b is None else " ".join(f"{v:.1f}" for v in b)  # noqa: E731
        return {"rank": rank, "example_id": self.example_id, "ref_id": ref, "sent_id": sent, "split": self.split,
                "expression": self.expression, "n_wrong": self.n_wrong, "n_seeds": self.n_seeds, "chosen": self.chosen,
                "chosen_box": box(self.chosen_box), "chosen_iou": round(self.chosen_iou, 4), "true_box": box(self.true_box),
                "best_hit": "" if self.best_hit is None else self.best_hit,
                "margin_mean": "" if self.margin_mean is None else round(self.margin_mean, 6),
                "picks": " ".join(f"{s}:{p}" for s, p in sorted(self.picks.items())), "n_candidates": self.n_candidates}


def hardest(store: ResultsStore, records: Sequence[RunRecord], ds, *, min_wrong: int | None = None,
            proposals_file=None) -> list[HardExpression]:
    """The expressions wrong at ``min_wrong`` (default: all) of ``records``, the runs of one method
    at one task, split and k (one per seed); hardest first (most seeds wrong, then the largest margin)."""
    if not records:
        return []
    split = records[0].split
    metric = dict(records[0].metric)
    threshold, rule = float(metric.get("threshold", 0.5)), str(metric.get("threshold_rule", "gt"))
    convention = str(metric.get("iou_convention", "inclusive"))
    need = len(records) if min_wrong is None else min_wrong
    per_id: dict[str, list[tuple[int, dict]]] = {}
    for rec in records:
        for p in load_predictions(store, rec):
            per_id.setdefault(p["example_id"], []).append((rec.seed, p))
    wrong = {eid: rows for eid, rows in per_id.items() if sum(not p["correct"] for _, p in rows) >= need}
    if not wrong:
        return []
    examples, labels = load_examples(ds, split, wrong, records[0].proposals, proposals_file, bool(records[0].skip_bad),
                                     records[0].strict_data)
    out = []
    for eid, rows in wrong.items():
        ex = examples.get(eid)
        if ex is None:
            raise ResultsError(f"{split}: expression {eid} of the predictions is not in the task's data any more "
                               f"(the data changed since the run); rerun, or point --data-root at the data the run used.")
        label = labels[eid]
        ious = iou_matrix(ex.boxes, label.box, convention)[:, 0] if ex.n_candidates else np.zeros(0)
        hits = [i for i in range(ex.n_candidates) if bool(is_hit(float(ious[i]), threshold, rule))]
        bad = [(s, p) for s, p in rows if not p["correct"]]
        picks = {s: int(p["pred"]) for s, p in bad}
        margins, best_hits = [], []
        for _, p in bad:
            scores = p.get("scores") or []
            if len(scores) != ex.n_candidates:
                raise ResultsError(f"{split}: expression {eid} has {ex.n_candidates} candidates in the data but "
                                   f"{len(scores)} recorded scores: the data or proposals changed since the run.")
            if hits and p["pred"] >= 0 and scores[p["pred"]] is not None:
                hs = [(scores[i], i) for i in hits if scores[i] is not None]
                if hs:
                    top, i = max(hs)
                    margins.append(float(scores[p["pred"]]) - float(top))
                    best_hits.append(i)
        chosen = Counter(picks.values()).most_common(1)[0][0]
        out.append(HardExpression(
            eid, split, ex.expression, len(bad), len(rows), chosen,
            [float(v) for v in ex.boxes[chosen]] if chosen >= 0 else None,
            float(ious[chosen]) if chosen >= 0 else 0.0, [float(v) for v in label.box],
            Counter(best_hits).most_common(1)[0][0] if best_hits else None,
            float(np.mean(margins)) if margins else None, picks, ex.n_candidates))
    out.sort(key=lambda h: (-h.n_wrong, h.margin_mean is None, -(h.margin_mean or 0.0), h.example_id))
    return out


def to_csv(items: Sequence[HardExpression]) -> str:
    """``items`` as CSV, ranked in their order."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for i, h in enumerate(items, 1):
        w.writerow(h.to_row(i))
    return buf.getvalue()
