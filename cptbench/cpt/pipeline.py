"""The device pipeline of CPT: painted, processed copies built with tensor ops on the model's device.

What the reference path does per painted copy on the host (numpy paint, the Hugging Face PIL image
processor, a fresh padded batch), this pipeline does as tensor work where the model runs, in three
layers, each a class the next extends:

* **Images** (:mod:`.device_images`, :class:`~cptbench.cpt.device_images.DeviceImages`). Each
  image is decoded once, uploaded once, and its resized, cropped, normalised pixel values (the
  *base*) are computed once by the adapter's own processor settings.
* **Painting** (:mod:`.device_copies`, :class:`~cptbench.cpt.device_copies.PaintedCopies`). A
  painted copy is the base plus a window: the pixels the group's regions touch, blended bit-exactly
  as the reference blends them, then resized through the same filter weights and PIL's rounding.
* **Batches** (here, :class:`DevicePipeline`). A batch holds each distinct copy once
  (``pass_index`` maps rows to copies), in reused buffers; texts are tokenised once per distinct
  text. The forward runs under ``precision`` (bf16 autocast on CUDA by default, TF32 allowed) and
  only the needed logit columns come back, asynchronously: the host prepares batch i+1 while the
  device runs batch i.

Fidelity: pixel values equal the reference path's (painting bit-exact, resize within float32
rounding of the same weights: mean difference far below 0.5/255 of the [0, 1] pixel range;
``tests/methods/test_pipeline.py``). ``pipeline=reference`` keeps the reference path for exact
reproduction.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from cptbench.data.examples import Example
from cptbench.cpt.device_copies import PaintedCopies
from cptbench.cpt.painting import Painter
from cptbench.methods.numerics import host_threads, precision_context, resolve_precision

PIPELINES = ("device", "reference")
#: painted copies kept for few-shot training are capped at this many bytes
TRAIN_CACHE_BYTES = 2 << 30


class DevicePipeline(PaintedCopies):
    """Builds model inputs for (example, group) passes on ``device`` (module doc)."""

    def __init__(self, adapter: Any, painter: Painter, device: Any, precision: str = "auto", *, image_cache: int = 8):
        super().__init__(adapter, painter, device, image_cache=image_cache)
        self.precision = resolve_precision(precision, self.device)
        self._texts: dict[str, Any] = {}
        self._text_bufs: dict[str, np.ndarray] = {}
        self._kept: OrderedDict[tuple, Any] | None = None  # training: painted copies kept for the whole fit
        self._kept_cap = 0
        self._recent: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()  # copies of recent batches: key -> (buffer, slot)
        self._buffers: OrderedDict[tuple[int, int], list] = OrderedDict()
        self._columns_cache: dict[tuple[int, ...], Any] = {}
        self.stats.update({"copies_reused": 0, "batches": 0, "passes": 0})

    def columns(self, ids: Sequence[int]):
        """The vocabulary ``ids`` as an int64 tensor on the device, uploaded once per id list."""
        key = tuple(int(i) for i in ids)
        if key not in self._columns_cache:
            self._columns_cache[key] = self.upload(np.asarray(key, dtype=np.int64))
        return self._columns_cache[key]

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
