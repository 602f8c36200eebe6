"""Images on the model's device for CPT's device pipeline (:mod:`cptbench.cpt.pipeline`).

Each image is taken once from the harness's decode cache (``example.image()``, decoded once per
run by :class:`cptbench.data.images.ImageSource`, prefetched by its threads) and uploaded once
(uint8, pinned, non-blocking on CUDA). Its resized, cropped, normalised pixel values (the *base*)
are computed once, by the adapter's own processor settings
(:meth:`~cptbench.models.hf_adapter.HFAdapter.image_spec`: the same size rule, PIL's filter and
rounding, see :mod:`.resample`). The painted copies (:mod:`.device_copies`) start from the base.

torch is imported inside the methods: this module loads with :mod:`cptbench.cpt.method`.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from cptbench.data.examples import Example
from cptbench.cpt.painting import Painter
from cptbench.cpt.resample import AxisResampler, pil_pass_order, resize_full

#: axis resamplers (dense weights on the device) kept per (input, output) length: COCO's image
#: sizes vary, so without a bound every distinct width and height would keep a matrix for the run
AXIS_CACHE = 64


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


class DeviceImages:
    """Uploaded images and their unpainted bases on ``device``, least recently used out beyond
    ``image_cache`` images; ``stats`` counts uploads and bytes sent to the device."""

    def __init__(self, adapter: Any, painter: Painter, device: Any, *, image_cache: int = 8):
        import torch

        self.adapter = adapter
        self.painter = painter
        self.spec = adapter.image_spec()  # UnsupportedImageSpec when the processor cannot be reproduced
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._image_cap = self._base_image_cap = max(1, int(image_cache))
        self._images: OrderedDict[str, ImageEntry] = OrderedDict()
        self._axes: OrderedDict[tuple[int, int], AxisResampler] = OrderedDict()
        spec = self.spec
        self._scale = spec.rescale
        self._mean = None if spec.mean is None else torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self._std = None if spec.std is None else torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self.stats = {"images_uploaded": 0, "bytes_to_device": 0}

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
        """The image cache back within its bound (least recently used out)."""
        while len(self._images) > self._image_cap:
            self._images.popitem(last=False)
