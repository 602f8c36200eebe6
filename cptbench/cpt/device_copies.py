"""Painted copies on the model's device for CPT's device pipeline (:mod:`cptbench.cpt.pipeline`).

A painted copy is the image's base (:mod:`.device_images`) plus a window: the pixels the group's
regions touch, blended with a per-colour lookup table built by the reference's own
:func:`~cptbench.cpt.painting.blend_color` (so the blend and its rounding are bit-exact), later
candidates winning overlaps, then resized through the same filter weights and PIL's rounding
(:class:`~cptbench.cpt.resample.AxisResampler`: only the window is recomputed). Regions come from
the reference's :meth:`~cptbench.cpt.painting.Painter.region_masks` (box pixel rule, segmentation
decoding), once per image and candidate set.

torch is imported inside the methods: this module loads with :mod:`cptbench.cpt.method`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cptbench.data.examples import Example
from cptbench.cpt.device_images import DeviceImages, ImageEntry
from cptbench.cpt.painting import Painter, blend_color, box_spans


@dataclass(frozen=True)
class Region:
    """A candidate's painted pixels: rows ``[y0, y1)``, columns ``[x0, x1)``, and where it is not
    the whole rectangle a boolean ``mask`` of that size on the device."""

    y0: int
    y1: int
    x0: int
    x1: int
    mask: Any = None

    @property
    def empty(self) -> bool:
        """Whether the region covers no pixel (nothing to paint)."""
        return self.y1 <= self.y0 or self.x1 <= self.x0


class PaintedCopies(DeviceImages):
    """:class:`DeviceImages` that also paints: the regions of each image and candidate set are kept
    beside the images, and :meth:`build_copy` makes the pixel values of one (example, group) pass."""

    def __init__(self, adapter: Any, painter: Painter, device: Any, *, image_cache: int = 8):
        import torch

        super().__init__(adapter, painter, device, image_cache=image_cache)
        self._regions: OrderedDict[tuple, list[Region]] = OrderedDict()
        lut = np.stack([blend_color(np.arange(256)[:, None], rgb, painter.alpha).T for rgb in painter.palette.rgb])
        self._lut = torch.from_numpy(lut.astype(np.float32)).to(self.device)  # (C, 3, 256)
        self.stats["painted_copies"] = 0

    def _trim(self) -> None:
        """The image and region caches back within their bounds (least recently used out)."""
        super()._trim()
        while len(self._regions) > max(32, self._image_cap):
            self._regions.popitem(last=False)

    def _region_set(self, example: Example, entry: ImageEntry) -> list[Region]:
        key = (example.image_key, example.candidate_key, self.painter.boxes_key(example.boxes), self.painter.mode)
        hit = self._regions.get(key)
        if hit is not None:
            self._regions.move_to_end(key)
            return hit
        height, width = (int(v) for v in entry.orig.shape[1:])
        n = example.n_candidates
        if self.painter.mode == "block":  # boxes: the reference's one box rule, as spans
            spans = box_spans(example.boxes, height, width, self.painter.box_pixels) if n else np.zeros((0, 4), np.int64)
            regions = [Region(int(r0), int(r1), int(c0), int(c1)) for c0, r0, c1, r1 in spans.tolist()]
        else:  # segmentations decoded once per image and candidate set (box fallbacks included)
            regions = self._mask_regions(self.painter.region_masks(example, range(n), height, width)
                                         if n else np.zeros((0, 1, 1), bool))
        self._regions[key] = regions
        self._trim()
        return regions

    def _mask_regions(self, masks: np.ndarray) -> list[Region]:
        """Regions of boolean (n, H, W) masks: bounding box, plus the mask inside it unless full."""
        height, width = masks.shape[1:]
        rows_any, cols_any = masks.any(axis=2), masks.any(axis=1)
        regions = []
        for i in range(masks.shape[0]):
            rows, cols = rows_any[i], cols_any[i]
            if not rows.any():
                regions.append(Region(0, 0, 0, 0))
                continue
            y0, y1 = int(rows.argmax()), int(height - rows[::-1].argmax())
            x0, x1 = int(cols.argmax()), int(width - cols[::-1].argmax())
            sub = masks[i, y0:y1, x0:x1]
            regions.append(Region(y0, y1, x0, x1, None if sub.all() else self.upload(sub)))
        return regions

    def _paint(self, orig, y0: int, y1: int, x0: int, x1: int, present: Sequence[tuple[int, Region]]):
        """Float (3, y1-y0, x1-x0): the window of ``orig`` with each region blended with its
        colour (later regions win), bit-exact with :func:`~cptbench.cpt.painting.paint`."""
        import torch

        win = orig[:, y0:y1, x0:x1]
        out = win.float()
        for colour, r in present:
            a0, a1, b0, b1 = r.y0 - y0, r.y1 - y0, r.x0 - x0, r.x1 - x0
            src = win[:, a0:a1, b0:b1]
            vals = torch.gather(self._lut[colour], 1, src.reshape(3, -1).long()).view(3, a1 - a0, b1 - b0)
            dst = out[:, a0:a1, b0:b1]
            dst.copy_(vals if r.mask is None else torch.where(r.mask, vals, dst))
        return out

    def build_copy(self, example: Example, group: int, out=None):
        """The pixel values (3, OH, OW) of ``example``'s image painted for candidate ``group``
        (written into ``out`` when given)."""
        import torch

        entry = self._entry(example)
        regions = self._region_set(example, entry)
        members = self.painter.groups(example)[group]
        if out is None:
            out = torch.empty_like(entry.base)
        out.copy_(entry.base)
        self.stats["painted_copies"] += 1
        present = [(j, regions[i]) for j, i in enumerate(members) if not regions[i].empty]
        if not present:
            return out
        extent = {1: (min(r.y0 for _, r in present), max(r.y1 for _, r in present)),
                  2: (min(r.x0 for _, r in present), max(r.x1 for _, r in present))}
        axes = {1: entry.v_axis, 2: entry.h_axis}
        d1, d2 = (2, 1) if entry.order == "hv" else (1, 2)  # the dims of PIL's first and second pass
        (p0, p1), (q0, q1) = extent[d1], extent[d2]
        # first pass: outputs [c0, c1) along d1 change; they read inputs [s0, s1) of the painted rows/columns
        c0, c1 = axes[d1].outputs_of(p0, p1)
        if c0 >= c1:
            return out
        s0, s1 = axes[d1].support(c0, c1)
        s0, s1 = min(s0, p0), max(s1, p1)
        window = {d1: (s0, s1), d2: (q0, q1)}
        t_new = axes[d1].apply(self._paint(entry.orig, *window[1], *window[2], present), d1, c0, c1, s0)
        # second pass: outputs [e0, e1) along d2 change; they read [f0, f1) of the first pass
        if axes[d2].identity:
            e0, e1, r_new = q0, q1, t_new
        else:
            e0, e1 = axes[d2].outputs_of(q0, q1)
            if e0 >= e1:
                return out
            f0, f1 = axes[d2].support(e0, e1)
            f0, f1 = min(f0, q0), max(f1, q1)
            index = [slice(None)] * 3
            index[d1], index[d2] = slice(c0, c1), slice(f0, f1)
            patch = entry.t0[tuple(index)].clone()
            patch.narrow(d2, q0 - f0, q1 - q0).copy_(t_new)
            r_new = axes[d2].apply(patch, d2, e0, e1, f0)
        (ry0, ry1), (cx0, cx1) = ((e0, e1), (c0, c1)) if d1 == 2 else ((c0, c1), (e0, e1))
        top, left = entry.offset
        oh, ow = entry.out_hw
        oy0, oy1, ox0, ox1 = max(ry0 - top, 0), min(ry1 - top, oh), max(cx0 - left, 0), min(cx1 - left, ow)
        if oy0 < oy1 and ox0 < ox1:
            part = r_new[:, oy0 + top - ry0:oy1 + top - ry0, ox0 + left - cx0:ox1 + left - cx0]
            out[:, oy0:oy1, ox0:ox1] = self._normalise(part)  # r_new is this call's own tensor
        return out
