"""The one box convention and the one IoU of cptbench.

Inside the library every box is absolute-pixel float ``xyxy`` where ``x2 = x + w`` (a half-open,
continuous extent). Conversion from COCO's ``[x, y, w, h]`` happens only at the data boundary
(:func:`xywh_to_xyxy`).

Two IoU conventions are offered, named in every task card:

``inclusive``
    The refer toolkit / CPT release convention on ``[x, y, w, h]`` boxes: right = x + w - 1,
    bottom = y + h - 1, an intersection counts only if ``ix1 < ix2 and iy1 < iy2`` (so an overlap
    one pixel wide or less counts as zero), and areas are ``w * h``.
``continuous``
    The usual geometric IoU of the boxes as real rectangles (what ``pycocotools.mask.iou`` computes
    for boxes).

A prediction is correct when ``IoU > threshold`` (rule ``gt``, the faithful default) or
``IoU >= threshold`` (rule ``ge``, lmms-eval / VLMEvalKit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

IoUConvention = Literal["inclusive", "continuous"]
ThresholdRule = Literal["gt", "ge"]
IOU_CONVENTIONS: tuple[str, ...] = ("inclusive", "continuous")
THRESHOLD_RULES: tuple[str, ...] = ("gt", "ge")


def xywh_to_xyxy(boxes) -> np.ndarray:
    """Convert ``[x, y, w, h]`` box(es) to float ``xyxy``; shape ``(4,)`` or ``(n, 4)`` is kept."""
    b = np.asarray(boxes, dtype=np.float64)
    out = b.copy()
    out[..., 2] = b[..., 0] + b[..., 2]
    out[..., 3] = b[..., 1] + b[..., 3]
    return out


def xyxy_to_xywh(boxes) -> np.ndarray:
    """Convert float ``xyxy`` box(es) back to ``[x, y, w, h]`` (shape kept)."""
    b = np.asarray(boxes, dtype=np.float64)
    out = b.copy()
    out[..., 2] = b[..., 2] - b[..., 0]
    out[..., 3] = b[..., 3] - b[..., 1]
    return out


def iou_matrix(a, b, convention: IoUConvention = "inclusive") -> np.ndarray:
    """IoU between every box of ``a`` (n, 4) and every box of ``b`` (m, 4), both ``xyxy``.

    Returns an ``(n, m)`` float array. A pair whose union is empty (two zero-area boxes) has IoU 0.
    """
    if convention not in IOU_CONVENTIONS:
        raise ValueError(f"unknown IoU convention {convention!r}; choose one of {IOU_CONVENTIONS}")
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    wa = np.clip(a[:, 2] - a[:, 0], 0, None)
    ha = np.clip(a[:, 3] - a[:, 1], 0, None)
    wb = np.clip(b[:, 2] - b[:, 0], 0, None)
    hb = np.clip(b[:, 3] - b[:, 1], 0, None)
    # Overlap extent along each axis; identical formula for both conventions ...
    ow = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    oh = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    if convention == "inclusive":
        # ... except that the release counts an intersection only when ix1 < ix2 on inclusive
        # pixel coordinates, i.e. when the overlap is more than one pixel wide.
        ow = np.where(ow > 1, ow, 0.0)
        oh = np.where(oh > 1, oh, 0.0)
    else:
        ow = np.clip(ow, 0, None)
        oh = np.clip(oh, 0, None)
    inter = ow * oh
    union = (wa * ha)[:, None] + (wb * hb)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def iou(a, b, convention: IoUConvention = "inclusive") -> float:
    """IoU of two single ``xyxy`` boxes."""
    return float(iou_matrix(a, b, convention)[0, 0])


def is_hit(iou_value, threshold: float = 0.5, rule: ThresholdRule = "gt"):
    """Whether IoU value(s) count as a correct localisation under the named threshold rule."""
    if rule == "gt":
        return np.asarray(iou_value) > threshold
    if rule == "ge":
        return np.asarray(iou_value) >= threshold
    raise ValueError(f"unknown threshold rule {rule!r}; choose one of {THRESHOLD_RULES}")


@dataclass(frozen=True)
class MetricSpec:
    """A task's localisation rule (its card's ``metric``): the IoU convention, the threshold and the
    threshold rule. The one place methods and the scorer ask "does this box hit the target?"."""

    iou_convention: IoUConvention = "inclusive"
    threshold: float = 0.5
    threshold_rule: ThresholdRule = "gt"

    def ious(self, boxes, target) -> np.ndarray:
        """IoU of every box of ``boxes`` (n, 4) with the one ``target`` box, shape (n,)."""
        return iou_matrix(boxes, np.asarray(target, dtype=np.float64).reshape(1, 4), self.iou_convention)[:, 0]

    def hits(self, ious) -> np.ndarray:
        """Whether IoU value(s) count as a correct localisation."""
        return is_hit(ious, self.threshold, self.threshold_rule)

    def describe(self) -> dict[str, Any]:
        """The rule as records name it (``iou_convention``, ``iou_threshold``, ``iou_rule``)."""
        return {"iou_convention": self.iou_convention, "iou_threshold": self.threshold, "iou_rule": self.threshold_rule}
