"""The device pipeline of CPT: painted, processed copies built with tensor ops on the model's device.

What the reference path does per painted copy on the host (numpy paint, the Hugging Face PIL image
processor, a fresh padded batch), this pipeline does as tensor work where the model runs:

* **Images.** Each image is taken once from the harness's decode cache (``example.image()``,
  decoded once per run by :class:`cptbench.data.images.ImageSource`, prefetched by its threads) and
  uploaded once (uint8, pinned, non-blocking on CUDA). Its resized, cropped, normalised pixel
  values (the *base*) are computed once, by the adapter's own processor settings
  (:meth:`~cptbench.models.hf_adapter.HFAdapter.image_spec`: the same size rule, PIL's filter and
  rounding, see :mod:`.resample`).
* **Painting.** A painted copy is the base plus a window: the pixels the group's regions touch,
  blended with a per-colour lookup table built by the reference's own
  :func:`~cptbench.cpt.painting.blend_color` (so the blend and its rounding are bit-exact), later
  candidates winning overlaps, then resized through the same filter weights and PIL's rounding.
  Regions come from the reference's :meth:`~cptbench.cpt.painting.Painter.region_masks` (box pixel
  rule, segmentation decoding), once per image and candidate set.
* **Batches.** A batch holds each distinct copy once (``pass_index`` maps rows to copies), in
  reused buffers; texts are tokenised once per distinct text. The forward runs under
  ``precision`` (bf16 autocast on CUDA by default, TF32 allowed) and only the needed logit
  columns come back, asynchronously: the host prepares batch i+1 while the device runs batch i.

Fidelity: pixel values equal the reference path's (painting bit-exact, resize within float32
rounding of the same weights: mean difference far below 0.5/255 of the [0, 1] pixel range;
``tests/test_pipeline.py``). ``pipeline=reference`` keeps the reference path for exact
reproduction.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from cptbench.data.examples import Example
from cptbench.cpt.painting import Painter, blend_color, box_spans
from cptbench.cpt.resample import AxisResampler, pil_pass_order, resize_full
from cptbench.methods.numerics import host_threads, precision_context, resolve_precision

PIPELINES = ("device", "reference")
#: painted copies kept for few-shot training are capped at this many bytes
TRAIN_CACHE_BYTES = 2 << 30
#: axis resamplers (dense weights on the device) kept per (input, output) length: COCO's image
#: sizes vary, so without a bound every distinct width and height would keep a matrix for the run
AXIS_CACHE = 64


# ------------------------------------------------------------------------------------ pieces
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
        return self.y1 <= self.y0 or self.x1 <= self.x0


@dataclass
class ImageEntry:
    """One uploaded image: ``orig`` (3, H, W) uint8, ``t0`` its first resize pass (``order``
    ``hv``: horizontal first, (3, H, RW); ``vh``: (3, RH, W)), ``base`` the unpainted pixel values
    (3, OH, OW), the axis resamplers and the crop offset."""

    orig: Any
    t0: Any
    base: Any
    h_axis: AxisResampler
    v_axis: AxisResampler
    order: str
    offset: tuple[int, int]
    out_hw: tuple[int, int]


class DevicePipeline:
    """Builds model inputs for (example, group) passes on ``device`` (module doc)."""

    def __init__(self, adapter: Any, painter: Painter, device: Any, precision: str = "auto", *, image_cache: int = 8):
        import torch

        self.adapter = adapter
        self.painter = painter
        self.spec = adapter.image_spec()  # UnsupportedImageSpec when the processor cannot be reproduced
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.precision = resolve_precision(precision, self.device)
        self._image_cap = self._base_image_cap = max(1, int(image_cache))
        self._images: OrderedDict[str, ImageEntry] = OrderedDict()
        self._regions: OrderedDict[tuple, list[Region]] = OrderedDict()
        self._axes: OrderedDict[tuple[int, int], AxisResampler] = OrderedDict()
        self._texts: dict[str, Any] = {}
        self._text_bufs: dict[str, np.ndarray] = {}
        self._kept: OrderedDict[tuple, Any] | None = None  # training: painted copies kept for the whole fit
        self._kept_cap = 0
        self._recent: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()  # copies of recent batches: key -> (buffer, slot)
        self._buffers: OrderedDict[tuple[int, int], list] = OrderedDict()
        lut = np.stack([blend_color(np.arange(256)[:, None], rgb, painter.alpha).T for rgb in painter.palette.rgb])
        self._lut = torch.from_numpy(lut.astype(np.float32)).to(self.device)  # (C, 3, 256)
        spec = self.spec
        self._scale = spec.rescale
        self._mean = None if spec.mean is None else torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._std = None if spec.std is None else torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._columns_cache: dict[tuple[int, ...], Any] = {}
        self.stats = {"images_uploaded": 0, "bytes_to_device": 0, "painted_copies": 0, "copies_reused": 0,
                      "batches": 0, "passes": 0}

    # -- transfers ---------------------------------------------------------------------------------
    def upload(self, array: np.ndarray, copy: bool = False):
        """A host array on the device (pinned and non-blocking on CUDA); bytes are counted.
        ``copy``: the array is a reused buffer, so the CPU tensor must not share its memory."""
        import torch

        with warnings.catch_warnings():  # read-only image arrays: never written through the tensor
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(np.array(array) if copy else np.ascontiguousarray(array))
        self.stats["bytes_to_device"] += t.numel() * t.element_size()
        if self.device.type == "cpu":
            return t
        if self.cuda:
            t = t.pin_memory()
        return t.to(self.device, non_blocking=True)

    def columns(self, ids: Sequence[int]):
        key = tuple(int(i) for i in ids)
        if key not in self._columns_cache:
            self._columns_cache[key] = self.upload(np.asarray(key, dtype=np.int64))
        return self._columns_cache[key]

    # -- images ------------------------------------------------------------------------------------
    def _axis(self, n_in: int, n_out: int) -> AxisResampler:
        """The resampler ``n_in`` -> ``n_out`` pixels (the :data:`AXIS_CACHE` most recent kept)."""
        key = (int(n_in), int(n_out))
        axis = self._axes.get(key)
        if axis is not None:
            self._axes.move_to_end(key)
            return axis
        axis = self._axes[key] = AxisResampler.build(n_in, n_out, self.spec.resample, self.device)
        while len(self._axes) > AXIS_CACHE:
            self._axes.popitem(last=False)
        return axis

    def _normalise(self, x):
        """In place: rescale then (x - mean) / std, as the processor does."""
        if self._scale is not None:
            x.mul_(self._scale)
        if self._mean is not None:
            x.sub_(self._mean).div_(self._std)
        return x

    def _entry(self, example: Example) -> ImageEntry:
        import torch

        key = example.image_key
        hit = self._images.get(key)
        if hit is not None:
            self._images.move_to_end(key)
            return hit
        arr = self.painter.image(example)  # the shared decode cache; checks the annotated size
        height, width = arr.shape[:2]
        (rh, rw), (top, left) = self.spec.geometry(height, width)
        if rh <= 0 or rw <= 0:
            raise ValueError(
                f"the image processor of model {getattr(self.adapter, 'model_name', '?')!r} cannot process an image "
                f"of shape {arr.shape} (an extreme aspect ratio resizes one side to 0 pixels)")
        oh, ow = self.spec.crop if self.spec.crop is not None else (rh, rw)
        orig = self.upload(arr).permute(2, 0, 1).contiguous()
        self.stats["images_uploaded"] += 1
        h_axis, v_axis = self._axis(width, rw), self._axis(height, rh)
        order = pil_pass_order(height, width, rh, rw, self.spec.resample)
        t0, r0 = resize_full(orig.float(), h_axis, v_axis, order, use_interpolate=not self.cuda)
        base = torch.zeros(3, oh, ow, dtype=torch.float32, device=self.device)
        self._normalise(base)  # crop padding: 0 before rescaling, as transformers' center_crop pads
        oy0, oy1, ox0, ox1 = max(-top, 0), min(rh - top, oh), max(-left, 0), min(rw - left, ow)
        if oy0 < oy1 and ox0 < ox1:
            base[:, oy0:oy1, ox0:ox1] = self._normalise(r0[:, oy0 + top:oy1 + top, ox0 + left:ox1 + left].clone())
        entry = ImageEntry(orig, t0, base, h_axis, v_axis, order, (top, left), (oh, ow))
        self._images[key] = entry
        self._trim()
        return entry

    def _trim(self) -> None:
        """The image and region caches back within their bounds (least recently used out)."""
        while len(self._images) > self._image_cap:
            self._images.popitem(last=False)
        while len(self._regions) > max(32, self._image_cap):
            self._regions.popitem(last=False)

    def _region_set(self, example: Example, entry: ImageEntry) -> list[Region]:
        from cptbench.cpt.painting import boxes_digest

        key = (example.image_key, example.candidate_key, boxes_digest(example.boxes), self.painter.mode)
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
            out[:, oy0:oy1, ox0:ox1] = self._normalise(part.clone())
        return out

    # -- batches -----------------------------------------------------------------------------------
    def keep_for_training(self, examples: Sequence[Example]) -> None:
        """Keep every painted copy (and every image) of these training examples for the whole fit,
        so each is painted once per run (bounded by :data:`TRAIN_CACHE_BYTES`)."""
        keys = {(ex.image_key, ex.candidate_key, g) for ex in examples for g in range(len(self.painter.groups(ex)))}
        images = {ex.image_key for ex in examples}
        def hw(ex):
            w, h = ex.image_size
            return (h, w) if w and h else ex.image().shape[:2]

        per_copy = 3 * 4 * max((int(np.prod(self.spec.output_size(*hw(ex)))) for ex in examples), default=1)
        self._kept = OrderedDict()
        self._kept_cap = max(1, min(len(keys), TRAIN_CACHE_BYTES // per_copy))
        self._image_cap = max(self._base_image_cap, len(images))

    def release_training(self) -> None:
        """End of the fit: the kept copies go, and the image cache is back to its own size (the
        training images' tensors do not stay on the device for the run)."""
        self._kept = None
        self._kept_cap = 0
        self._image_cap = self._base_image_cap
        self._trim()

    #: batch buffers per pixel size, used in turn: the copies of the last RING - 1 batches stay
    #: readable, so a copy whose passes straddle batches or predict calls is painted once; buffers
    #: of the SIZES most recent batch pixel sizes are kept
    RING = 4
    SIZES = 4

    def _forget(self, buffers) -> None:
        gone = {id(b) for b in buffers if b is not None}
        for k in [k for k, (b, _) in self._recent.items() if id(b) in gone]:
            del self._recent[k]

    def _buffer(self, n: int, height: int, width: int):
        import torch

        ring = self._buffers.get((height, width))
        if ring is None:
            ring = self._buffers[(height, width)] = [0] + [None] * self.RING
            while len(self._buffers) > self.SIZES:
                self._forget(self._buffers.popitem(last=False)[1][1:])
        self._buffers.move_to_end((height, width))
        i = ring[0] + 1
        ring[0] = i % self.RING
        buf = ring[i]
        if buf is not None:  # about to be overwritten: its copies are no longer available
            self._forget([buf])
        if buf is None or buf.shape[0] < n:
            buf = ring[i] = torch.empty(max(n, 1), 3, height, width, dtype=torch.float32, device=self.device)
        return buf

    def images(self, pairs: Sequence[tuple[Example, int]]) -> dict[str, Any]:
        """The batch's image inputs: ``pixel_values`` (U, 3, H, W) holding each distinct copy once,
        ``pass_index`` (B,) on the device, ``image_hw`` (U, 2) valid sizes on the host."""
        keys = [self.painter._key(ex, g) for ex, g in pairs]
        slot_of: dict[tuple, int] = {}
        first: list[tuple[Example, int]] = []
        for k, pair in zip(keys, pairs):
            if k not in slot_of:
                slot_of[k] = len(first)
                first.append(pair)
        sizes = [self._entry(ex).out_hw for ex, _ in first]
        height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
        if not self.spec.pad_to_batch and any(s != (height, width) for s in sizes):
            raise ValueError(f"model {getattr(self.adapter, 'model_name', '?')!r} expects every image at the same "
                             f"processed size, got {sorted(set(sizes))}")
        buf = self._buffer(len(first), height, width)
        recent = self._recent
        unique = list(slot_of)
        for u, (k, (ex, g), (oh, ow)) in enumerate(zip(unique, first, sizes)):
            dst = buf[u, :, :oh, :ow]
            if self._kept is not None and k in self._kept:
                self._kept.move_to_end(k)
                dst.copy_(self._kept[k])
                self.stats["copies_reused"] += 1
            elif k in recent:
                src, slot = recent[k]
                dst.copy_(src[slot, :, :oh, :ow])
                self.stats["copies_reused"] += 1
            elif self._kept is not None:
                copy = self.build_copy(ex, g)
                self._kept[k] = copy
                while len(self._kept) > self._kept_cap:
                    self._kept.popitem(last=False)
                dst.copy_(copy)
            else:
                self.build_copy(ex, g, out=dst)
            if oh < height:
                buf[u, :, oh:, :].zero_()
            if ow < width:
                buf[u, :, :oh, ow:].zero_()
            recent[k] = (buf, u)
            recent.move_to_end(k)
        index = np.fromiter((slot_of[k] for k in keys), dtype=np.int64, count=len(keys))
        return {"pixel_values": buf[:len(first)], "pass_index": self.upload(index),
                "image_hw": np.asarray(sizes, dtype=np.int64)}

    def text(self, texts: Sequence[str]) -> dict[str, Any]:
        """Token tensors for ``texts`` on the device; each distinct text is tokenised once."""
        encoded = []
        for t in texts:
            e = self._texts.get(t)
            if e is None:
                e = self._texts[t] = self.adapter.encode_text(t)
            encoded.append(e)
        arrays = self.adapter.text_arrays(encoded, out=self._text_bufs)
        return {name: self.upload(a, copy=True) for name, a in arrays.items()}

    def count_batch(self, passes: int) -> None:
        """A batch of ``passes`` finished (counted once, however often an out-of-memory retry
        rebuilt its inputs)."""
        self.stats["batches"] += 1
        self.stats["passes"] += int(passes)

    def forward(self, images: dict[str, Any], text: dict[str, Any], columns=None):
        """The adapter's masked-LM logits (all columns, or ``columns``); replaceable (benchmarks)."""
        return self.adapter.mask_logits_encoded(images, text, columns)

    def logits(self, pairs: Sequence[tuple[Example, int]], texts: Sequence[str], columns=None):
        """Logits at [MASK] for these passes (with gradients when enabled: few-shot training)."""
        with host_threads(self.device):
            images, text = self.images(pairs), self.text(texts)
        with precision_context(self.device, self.precision):
            out = self.forward(images, text, columns)
        self.count_batch(len(pairs))
        return out
