"""The data-quality report of one split: what the box policy (:mod:`cptbench.data.box_policy`) kept,
what it refused, and refuse-or-skip.

Refused, with a count and examples (``--skip-bad`` drops them and counts them):

* an expression that is empty after stripping, or has no word (only punctuation);
* an expression whose ground-truth box (the referred annotation) is refused: the expression is dropped;
* a candidate box that is refused: the candidate is dropped from that image's candidates.

Kept and counted (by default; ``--strict-data`` refuses them as above): candidate and ground-truth
boxes that reach past the image or have zero area. Records carry the counts (``n_kept``), the
console shows them and ``cptbench data check`` lists every such box.

An expression whose image has no candidate at all (a detections file that lists nothing for that
image, or matches none of the images) is refused too; with ``--skip-bad`` it is *kept* and counted
as a miss with status ``no_candidates`` (dropping it would raise the accuracy of a detector that
finds nothing). Records and tables show ``n_no_candidates`` and the skipped counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cptbench.core.errors import DataError
from cptbench.data.box_policy import BAD, KEPT_KINDS, OUTSIDE, ZERO_AREA, classify_box, classify_boxes

#: problems quoted in an error message
EXAMPLES_SHOWN = 3
#: what kept boxes are called in counts (records' ``n_kept``) and listings
KEPT_TITLES = {
    "candidates_outside": "candidate box(es) reaching past the image: kept, painted clipped, scored on the raw box",
    "candidates_zero_area": "zero-area candidate box(es): kept, painting nothing",
    "targets_outside": "expression(s) whose ground-truth box reaches past the image: kept, scored on the raw box",
    "targets_zero_area": "expression(s) whose ground-truth box has zero area: kept (no candidate can reach IoU > 0 with it)",
}


def _fmt(box) -> list[float]:
    return [round(float(v), 2) for v in box]


@dataclass
class QualityReport:
    """What one split's loading found; :meth:`raise_unless` applies the policy (``strict``:
    ``--strict-data``)."""

    split: str
    strict: bool = False
    bad_expressions: list[str] = field(default_factory=list)
    bad_candidates: list[str] = field(default_factory=list)
    without_candidates: list[str] = field(default_factory=list)
    kept: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KEPT_TITLES})
    hint: str = ""

    def bad_expression(self, what: str) -> None:
        """Record an expression left out (an empty text or a refused ground-truth box)."""
        self.bad_expressions.append(what)

    def no_candidates(self, what: str) -> None:
        """Record an expression whose image has no candidate box."""
        self.without_candidates.append(what)

    def target(self, box, image_size: tuple[int, int]) -> tuple[str, str]:
        """(kind, why) of an expression's ground-truth box under this report's policy: kind ``bad``
        when it is refused (also an ``outside`` / ``zero_area`` box under ``strict``)."""
        kind, why = classify_box(box, image_size)
        return ("bad" if self.strict and kind in KEPT_KINDS else kind), why

    def kept_target(self, kind: str, what: str) -> None:
        """Record an expression kept with a ground-truth box of ``kind`` (``outside`` / ``zero_area``)."""
        self.kept[f"targets_{kind}"].append(what)

    def clean_candidates(self, cand, image_size: tuple[int, int], where: str):
        """``cand`` without its refused boxes (each recorded); boxes kept by the policy (reaching past
        the image, zero area) are recorded in :attr:`kept`. The test is one array operation;
        :func:`~cptbench.data.box_policy.classify_box` words the few boxes that are not ``ok``."""
        from cptbench.core.boxes import xyxy_to_xywh
        from cptbench.data.proposals import Candidates

        if cand.n == 0:
            return cand
        xywh = xyxy_to_xywh(cand.boxes)
        codes = classify_boxes(xywh, image_size)
        if not codes.any():
            return cand
        for i in np.flatnonzero(codes):
            name = f"{cand.id_name} {cand.ids[i]}" if len(cand.ids) == cand.n else f"candidate #{i}"
            line = f"{where}: {name} box {_fmt(xywh[i])} {classify_box(xywh[i], image_size)[1]}"
            if codes[i] == BAD or self.strict:
                self.bad_candidates.append(line)
            else:
                self.kept["candidates_outside" if codes[i] == OUTSIDE else "candidates_zero_area"].append(line)
        bad = (codes == BAD) | (self.strict & np.isin(codes, (OUTSIDE, ZERO_AREA)))
        if not bad.any():
            return cand
        keep = np.flatnonzero(~bad).tolist()
        return Candidates(cand.boxes[keep].reshape(-1, 4), tuple(cand.categories[i] for i in keep),
                          tuple(cand.masks[i] for i in keep) if len(cand.masks) == cand.n else cand.masks,
                          tuple(cand.ids[i] for i in keep) if len(cand.ids) == cand.n else cand.ids, cand.id_name)

    def skipped(self) -> dict[str, int]:
        """How many expressions and candidate boxes were left out."""
        return {"expressions": len(self.bad_expressions), "candidates": len(self.bad_candidates)}

    def kept_counts(self) -> dict[str, int]:
        """How many boxes the default policy kept, by :data:`KEPT_TITLES` key (zeros under ``strict``)."""
        return {k: len(v) for k, v in self.kept.items()}

    def problems(self) -> list[tuple[str, list[str]]]:
        """(title, items) of each kind of problem found; [] when the split is clean."""
        out = []
        also = " or, with --strict-data, zero-area or reaching past it" if self.strict else ""
        if self.bad_expressions:
            out.append(("expression(s) with an empty text or a refused ground-truth box", self.bad_expressions))
        if self.bad_candidates:
            out.append((f"degenerate candidate box(es) (NaN, infinite or negative size, or wholly outside the "
                        f"image{also})", self.bad_candidates))
        if self.without_candidates:
            out.append(("expression(s) whose image has no candidate box", self.without_candidates))
        return out

    def raise_unless(self, skip_bad: bool, what: str) -> None:
        """Raise :class:`DataError` listing the problems, unless there are none or ``skip_bad``."""
        problems = self.problems()
        if not problems or skip_bad:
            return
        lines = [f"{what}: bad data, refused (nothing was run)."]
        for title, items in problems:
            distinct = list(dict.fromkeys(items))
            shown = "; ".join(distinct[:EXAMPLES_SHOWN]) + (f"; ... ({len(distinct) - EXAMPLES_SHOWN} more)" if len(distinct) > EXAMPLES_SHOWN else "")
            lines.append(f"  {len(items)} {title}, e.g. {shown}")
        if self.hint:
            lines.append(f"  {self.hint}")
        lines.append("Fix the files, or pass --skip-bad to drop bad expressions and boxes (counted in every record; "
                     "expressions without candidates are then kept and scored as misses).")
        if self.strict:
            lines.append("Without --strict-data, boxes reaching past the image and zero-area boxes are kept, as the "
                         "CPT release keeps them (`cptbench data check` lists them).")
        raise DataError("\n".join(lines))

