"""The box policy: which boxes are used as they are, kept and counted, or refused.

Every box ``[x, y, w, h]`` (a candidate or an expression's target) is of one kind, judged against
its image's (W, H):

``ok``
    four finite numbers, ``w > 0`` and ``h > 0``, inside the image to within
    :data:`EDGE_TOLERANCE` pixels (COCO's own float rounding stays well inside that);
``outside``
    a positive size, reaching more than :data:`EDGE_TOLERANCE` pixels past the border while still
    covering part of the image (detector boxes do). **Kept by default**, as the CPT release keeps
    it: painted clipped to the image, scored on the raw box (the one IoU,
    :mod:`cptbench.core.boxes`);
``zero_area``
    zero width or height, not negative, touching the image (COCO train2014 has such annotations,
    e.g. ann 2206849 on image 550395, and every annotation of an image is a ground-truth
    candidate). **Kept by default**: it paints nothing, and its IoU with any box is 0;
``bad``
    not four numbers, a NaN or infinite value, a negative width or height, or a box wholly outside
    the image. **Always refused** (``--skip-bad`` drops it and counts it).

``--strict-data`` (``strict=True``) refuses ``outside`` and ``zero_area`` boxes too: the policy of
cptbench before it followed the release. An image size of (0, 0) (unknown) skips the bounds tests.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

#: how far (pixels) a box may reach past the image before it counts as reaching past it
EDGE_TOLERANCE = 1.0
#: the kinds of box, in the order of the codes :func:`classify_boxes` returns
KINDS = ("ok", "outside", "zero_area", "bad")
OK, OUTSIDE, ZERO_AREA, BAD = range(4)
#: the kinds kept by default and refused under ``--strict-data``
KEPT_KINDS = ("outside", "zero_area")


def classify_boxes(xywh, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """The kind code (an index into :data:`KINDS`) of each box of an ``(n, 4)`` xywh array."""
    b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    codes = np.full(len(b), OK, dtype=np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(b).all(axis=1)
        x, y, w, h = np.where(finite[:, None], b, 0.0).T
        negative = (w < 0) | (h < 0)
        zero = ~negative & ((w == 0) | (h == 0))
        if image_size and tuple(image_size) != (0, 0):
            W, H = (float(v) for v in image_size)
            t = EDGE_TOLERANCE
            x2, y2 = x + w, y + h
            inside = (x >= -t) & (y >= -t) & (x2 <= W + t) & (y2 <= H + t)
            # a positive box must cover some of the image; a zero-area one must touch it
            covers = (np.minimum(x2, W) - np.maximum(x, 0.0) > 0) & (np.minimum(y2, H) - np.maximum(y, 0.0) > 0)
            touches = (x <= W + t) & (x2 >= -t) & (y <= H + t) & (y2 >= -t)
            codes[~inside & ~zero & covers] = OUTSIDE
            codes[~inside & ~zero & ~covers] = BAD
            codes[zero & (inside | touches)] = ZERO_AREA
            codes[zero & ~inside & ~touches] = BAD
        else:
            codes[zero] = ZERO_AREA
        codes[negative | ~finite] = BAD
    return codes


def classify_box(box: Any, image_size: tuple[int, int] | None = None) -> tuple[str, str]:
    """(kind, why) of one ``[x, y, w, h]`` box: the kind of :func:`classify_boxes` and a phrase that
    completes "the box ..." ("" for ``ok``)."""
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError, OverflowError):
        return "bad", "is not four numbers"
    if len(vals) != 4:
        return "bad", f"has {len(vals)} values, not 4 ([x, y, w, h])"
    kind = KINDS[int(classify_boxes(np.array([vals]), image_size)[0])]
    x, y, w, h = vals
    size = f"{image_size[0]}x{image_size[1]}" if image_size else ""
    if kind == "ok":
        return kind, ""
    if not all(math.isfinite(v) for v in vals):
        return kind, "has a NaN or infinite value"
    if w < 0 or h < 0:
        return kind, "has negative width or height"
    if kind == "zero_area":
        return kind, "has zero width or height"
    if kind == "outside":
        return kind, f"reaches past the {size} image"
    if w == 0 or h == 0:
        return kind, f"has zero width or height and lies wholly outside the {size} image"
    return kind, f"lies wholly outside the {size} image"


def refused(kind: str, strict: bool) -> bool:
    """Whether a box of ``kind`` is refused: ``bad`` always, ``outside`` and ``zero_area`` under ``strict``."""
    return kind == "bad" or (strict and kind in KEPT_KINDS)


def bad_box_reason(box: Any, image_size: tuple[int, int] | None = None, strict: bool = False) -> str | None:
    """Why the policy refuses ``box`` (``strict``: ``--strict-data``), or ``None`` when it is used."""
    kind, why = classify_box(box, image_size)
    return why if refused(kind, strict) else None


def data_policy(strict: bool, *kept: Mapping[str, int]) -> str:
    """The data policy as a run's identity and record name it: ``strict`` under ``--strict-data``;
    ``release`` when the default policy kept boxes reaching past the image or zero-area ones in the
    run's data (``kept``: counts of :attr:`cptbench.data.refer.SplitData.kept`); else ``""``, the
    default on data without such boxes, which leaves run ids as they were before the policy existed."""
    if strict:
        return "strict"
    return "release" if any(n for counts in kept for n in counts.values()) else ""
