"""The degenerate-data policy: what counts as a bad box or expression, and refuse-or-skip.

Bad, by default refused with a count and examples (``--skip-bad`` drops them and counts them):

* an expression that is empty after stripping;
* a ground-truth box (the referred annotation) that is degenerate: the expression is dropped;
* a candidate box that is degenerate: the candidate is dropped from that image's candidates.

A box ``[x, y, w, h]`` is degenerate when a value is not a finite number, ``w <= 0`` or ``h <= 0``,
or it reaches more than :data:`EDGE_TOLERANCE` pixels past the image on any side (COCO's own
float rounding stays well inside that).

An expression whose image has no candidate at all (a detections file that lists nothing for that
image, or matches none of the images) is refused too; with ``--skip-bad`` it is *kept* and counted
as a miss with status ``no_candidates`` (dropping it would raise the accuracy of a detector that
finds nothing). Records and tables show ``n_no_candidates`` and the skipped counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cptbench.core.errors import DataError

#: how far (pixels) a box may reach past the image before it counts as outside
EDGE_TOLERANCE = 1.0
#: problems quoted in an error message
EXAMPLES_SHOWN = 3


def bad_box_reason(box: Any, image_size: tuple[int, int] | None = None) -> str | None:
    """Why an ``[x, y, w, h]`` box is degenerate, or ``None`` when it is usable.

    ``image_size`` is (W, H); (0, 0) or ``None`` skips the bounds test."""
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        return "is not four numbers"
    if len(vals) != 4:
        return f"has {len(vals)} values, not 4 ([x, y, w, h])"
    if not all(math.isfinite(v) for v in vals):
        return "has a NaN or infinite value"
    x, y, w, h = vals
    if w <= 0 or h <= 0:
        return f"has {'zero' if min(w, h) == 0 else 'negative'} width or height"
    if image_size and tuple(image_size) != (0, 0):
        W, H = image_size
        t = EDGE_TOLERANCE
        if x < -t or y < -t or x + w > W + t or y + h > H + t:
            return f"lies outside the {W}x{H} image"
    return None


def _usable(xywh: np.ndarray, image_size: tuple[int, int] | None) -> np.ndarray:
    """Per box of an ``(n, 4)`` xywh array: the vectorised :func:`bad_box_reason` is ``None``."""
    x, y, w, h = xywh.T
    ok = np.isfinite(xywh).all(axis=1) & (w > 0) & (h > 0)
    if image_size and tuple(image_size) != (0, 0):
        W, H = image_size
        t = EDGE_TOLERANCE
        with np.errstate(invalid="ignore"):
            ok &= (x >= -t) & (y >= -t) & (x + w <= W + t) & (y + h <= H + t)
    return ok


@dataclass
class QualityReport:
    """What one split's loading found; :meth:`raise_unless` applies the policy."""

    split: str
    bad_expressions: list[str] = field(default_factory=list)
    bad_candidates: list[str] = field(default_factory=list)
    without_candidates: list[str] = field(default_factory=list)
    hint: str = ""

    def bad_expression(self, what: str) -> None:
        """Record an expression left out (an empty text or a degenerate ground-truth box)."""
        self.bad_expressions.append(what)

    def no_candidates(self, what: str) -> None:
        """Record an expression whose image has no candidate box."""
        self.without_candidates.append(what)

    def clean_candidates(self, cand, image_size: tuple[int, int], where: str):
        """``cand`` without its degenerate boxes (each recorded). The test is one array operation;
        :func:`bad_box_reason` words the message for the few boxes that fail it."""
        from cptbench.data.proposals import Candidates

        if cand.n == 0:
            return cand
        from cptbench.core.boxes import xyxy_to_xywh

        xywh = xyxy_to_xywh(cand.boxes)
        bad = ~_usable(xywh, image_size)
        if not bad.any():
            return cand
        for i in np.flatnonzero(bad):
            b = xywh[i]
            self.bad_candidates.append(f"{where}: candidate #{i} box {[round(float(v), 2) for v in b]} "
                                       f"{bad_box_reason(b, image_size)}")
        keep = np.flatnonzero(~bad).tolist()
        return Candidates(cand.boxes[keep].reshape(-1, 4), tuple(cand.categories[i] for i in keep),
                          tuple(cand.masks[i] for i in keep) if len(cand.masks) == cand.n else cand.masks)

    def skipped(self) -> dict[str, int]:
        """How many expressions and candidate boxes were left out."""
        return {"expressions": len(self.bad_expressions), "candidates": len(self.bad_candidates)}

    def problems(self) -> list[tuple[str, list[str]]]:
        """(title, items) of each kind of problem found; [] when the split is clean."""
        out = []
        if self.bad_expressions:
            out.append(("expression(s) with an empty text or a degenerate ground-truth box", self.bad_expressions))
        if self.bad_candidates:
            out.append(("degenerate candidate box(es) (zero, negative or NaN size, or outside the image)", self.bad_candidates))
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
        raise DataError("\n".join(lines))
