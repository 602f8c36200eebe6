"""A gallery of painted prompts with the model's recorded choice, some right and some wrong.

Honest and cheap: nothing is run again. The choice, the scores and right/wrong come from the run's
predictions file; the image is the painted copy the method fed the model for the chosen candidate's
group, re-painted now from the task's data with the run's own palette, alpha and painting mode
(the painting is deterministic). The ground-truth box is outlined in green for the reader; the
model never saw that outline. The prompt is the run's template filled with the expression (before
any cut to the model's text length; cuts are counted in the record's ``method_info``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cptbench.report.aggregate import LeaderboardRow
from cptbench.report.data import load_examples
from cptbench.report.tables import split_order
from cptbench.results.records import RunRecord
from cptbench.report.selection import load_predictions, records_of
from cptbench.results.store import ResultsStore

GT_COLOUR = (0, 200, 83)


@dataclass
class GalleryItem:
    """One painted prompt: the expression, the run's choice and score, right or wrong, and the PNG."""

    example_id: str
    split: str
    expression: str
    prompt: str
    correct: bool
    pred: int
    colour: str  # the colour word of the chosen candidate in its pass
    n_candidates: int
    score: float  # the run's score of its choice (inf where it was infinite, stored as null)
    iou: float
    png: bytes


@dataclass
class Gallery:
    """The painted prompts of one run (``run_id``), with notes on examples that could not be shown."""

    label: str
    task: str
    split: str
    shots: int
    seed: int
    run_id: str
    items: list[GalleryItem]
    notes: list[str]


def painting_method(method: str):
    """The method's class if it paints candidates (a CPT method), else None."""
    try:
        from cptbench.cpt.method import CptMethod
        from cptbench.methods.registry import get_method_class

        cls = get_method_class(method)
    except Exception:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, CptMethod) else None


def pick_run(rows: Sequence[LeaderboardRow], records: Sequence[RunRecord],
             label: str | None = None) -> tuple[LeaderboardRow, RunRecord] | tuple[None, None]:
    """(row, record) to show: the first painting method's row (or ``label``'s) at the smallest
    k > 0 (else 0), first split in paper order, smallest seed; ``(None, None)`` when none painted."""
    cands = [r for r in rows if painting_method(r.method) is not None and (label is None or r.label == label)]
    if not cands:
        return None, None
    ks = sorted({r.shots for r in cands})
    k = next((x for x in ks if x > 0), ks[0])
    here = [r for r in cands if r.shots == k]
    first_label = sorted({r.label for r in here})[0] if label is None else label
    row = sorted((r for r in here if r.label == first_label), key=lambda r: split_order(r.split))[0]
    rec = records_of(records, row)[0]
    return row, rec


def _choose(preds: Sequence[dict[str, Any]], n_right: int, n_wrong: int, salt: str) -> list[dict[str, Any]]:
    order = sorted((p for p in preds if p.get("status") == "ok"),
                   key=lambda p: hashlib.sha256(f"{salt}|{p['example_id']}".encode()).hexdigest())
    right = [p for p in order if p["correct"]][:n_right]
    wrong = [p for p in order if not p["correct"]][:n_wrong]
    return right + wrong


def _render(painted: np.ndarray, gt_box: np.ndarray, target: int = 200) -> bytes:
    from PIL import Image, ImageDraw

    h, w = painted.shape[:2]
    scale = target / max(h, w)
    img = Image.fromarray(painted).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                          Image.NEAREST if scale >= 1 else Image.BILINEAR)
    x1, y1, x2, y2 = (float(v) * scale for v in gt_box)
    ImageDraw.Draw(img).rectangle([x1, y1, x2, y2], outline=GT_COLOUR, width=2)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def build_gallery(store: ResultsStore, records: Sequence[RunRecord], rows: Sequence[LeaderboardRow], ds, *, label: str | None = None,
                  n_right: int = 3, n_wrong: int = 3, proposals_file=None) -> Gallery | None:
    """The gallery for the run :func:`pick_run` chooses (None when no painting method ran)."""
    from cptbench.cpt.painting import Painter, candidate_groups, parse_palette
    from cptbench.cpt.prompts import clean_expression, fill_template

    row, rec = pick_run(rows, records, label)
    if rec is None:
        return None
    cls = painting_method(rec.method)
    cfg = {**{f: getattr(cls.Config(), f) for f in ("palette", "alpha", "template")}, **dict(rec.method_config)}
    palette = parse_palette(str(cfg["palette"]))
    painter = Painter(palette, float(cfg["alpha"]), cls.mode, prepare=lambda x: x)
    chosen = _choose(load_predictions(store, rec), n_right, n_wrong, rec.run_id)
    examples, labels = load_examples(ds, rec.split, [p["example_id"] for p in chosen], rec.proposals, proposals_file,
                                     bool(rec.skip_bad), rec.strict_data)
    items, notes = [], []
    for p in chosen:
        ex = examples.get(p["example_id"])
        if ex is None or ex.n_candidates != len(p.get("scores") or []):
            notes.append(f"{p['example_id']}: not shown, the data no longer matches the run (missing, or a different "
                         f"number of candidates)")
            continue
        pred = int(p["pred"])
        # a non-finite score is stored as null; the chosen one (the arg-max of scores without NaN) is +inf
        score = float("inf") if p["scores"][pred] is None else float(p["scores"][pred])
        groups = candidate_groups(ex.n_candidates, len(palette))
        g = next(i for i, grp in enumerate(groups) if pred in grp)
        colour = palette.words[list(groups[g]).index(pred)]
        png = _render(painter.painted(ex, g), labels[ex.example_id].box)
        items.append(GalleryItem(ex.example_id, rec.split, ex.expression,
                                 fill_template(int(cfg["template"]), clean_expression(ex.expression), "[MASK]"),
                                 bool(p["correct"]), pred, colour, ex.n_candidates, score,
                                 float(p.get("iou", 0.0)), png))
    if sum(i.correct for i in items) < n_right:
        notes.append(f"fewer than {n_right} right answers in this run")
    if sum(not i.correct for i in items) < n_wrong:
        notes.append(f"fewer than {n_wrong} wrong answers in this run")
    return Gallery(row.label, rec.task, rec.split, rec.shots, rec.seed, rec.run_id, items, notes)
