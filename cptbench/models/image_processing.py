"""How a Hugging Face image processor turns an image into pixel values, as rules cptbench computes
itself: the processor class of a model family, its size settings, resize and centre-crop geometry,
the patch boxes of a grid in original-image pixels, and the :class:`ImageSpec` that the device
pipeline (:mod:`cptbench.cpt.pipeline`) reproduces with tensor ops.

Imported only when a model is needed (torch at module level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch


def image_processor_class(stem: str):
    """The PIL image processor of a model family (``Vilt`` -> ``ViltImageProcessorPil``).

    transformers 5 offers a PIL backend beside the torchvision one; using it directly avoids the
    "torchvision not available" warning. transformers 4 only has the plain class.
    """
    import transformers

    cls = getattr(transformers, f"{stem}ImageProcessorPil", None)
    return cls if cls is not None else getattr(transformers, f"{stem}ImageProcessor")


def size_get(size: Any, key: str):
    """``size[key]`` of an image processor's size setting (a dict or an object), or None."""
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def shortest_edge_size(height: int, width: int, shorter: int, size_divisor: int) -> tuple[int, int]:
    """ViLT's and BridgeTower's resize rule: the short side to ``shorter``, the long side capped at
    ``int(1333 / 800 * shorter)``, both rounded (``int(x + 0.5)``) then down to ``size_divisor``."""
    longer = int(1333 / 800 * shorter)
    scale = shorter / min(height, width)
    if height < width:
        new_h, new_w = float(shorter), scale * width
    else:
        new_h, new_w = scale * height, float(shorter)
    if max(new_h, new_w) > longer:
        scale = longer / max(new_h, new_w)
        new_h, new_w = scale * new_h, scale * new_w
    divisor = max(1, int(size_divisor or 1))
    return int(new_h + 0.5) // divisor * divisor, int(new_w + 0.5) // divisor * divisor


def center_crop_offset(size: int, crop: int) -> int:
    """Offset of a centre crop of ``crop`` pixels in a side of ``size`` pixels (negative when the
    image is padded), as transformers' ``center_crop`` does it."""
    if crop <= size:
        return (size - crop) // 2
    return -math.ceil((crop - size) / 2)


def cell_boxes(rows: np.ndarray, cols: np.ndarray, patch: int, *, left=0.0, top=0.0, scale_x=1.0, scale_y=1.0,
               valid_w, valid_h) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (..., 4) xyxy (float64) in original-image pixels of the patch cells (``rows``, ``cols``)
    and their validity (...); the other arguments broadcast against the cells (per image: shape
    (n, 1) beside (n, N) cells).

    Cell (r, c) covers ``[c*patch, (c+1)*patch) x [r*patch, (r+1)*patch)`` of the model's input;
    ``left``/``top`` shift that into the resized image (a centre crop's offset), whose valid part is
    ``valid_w x valid_h`` pixels; ``scale_x``/``scale_y`` map resized pixels to original ones.
    Parts outside the valid area are clipped; a cell with nothing left is invalid (zero box).
    """
    rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    x0 = np.clip(cols * patch + left, 0, valid_w) * scale_x
    x1 = np.clip((cols + 1) * patch + left, 0, valid_w) * scale_x
    y0 = np.clip(rows * patch + top, 0, valid_h) * scale_y
    y1 = np.clip((rows + 1) * patch + top, 0, valid_h) * scale_y
    boxes = np.stack(np.broadcast_arrays(x0, y0, x1, y1), axis=-1)
    valid = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    boxes[~valid] = 0
    return boxes, valid


def grid_boxes(grid_h: int, grid_w: int, patch: int, *, left: float, top: float, scale_x: float, scale_y: float,
               valid_w: float, valid_h: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (N, 4) xyxy (float32) and validity (N,) of a row-major ``grid_h x grid_w`` patch grid
    in original-image pixels (the arguments as in :func:`cell_boxes`)."""
    rows, cols = np.divmod(np.arange(grid_h * grid_w), grid_w)
    boxes, valid = cell_boxes(rows, cols, patch, left=left, top=top, scale_x=scale_x, scale_y=scale_y,
                              valid_w=valid_w, valid_h=valid_h)
    return torch.from_numpy(boxes.astype(np.float32)), torch.from_numpy(valid)


def fixed_grid_boxes(processor, sizes: Sequence[tuple[int, int]], grid_h: int, grid_w: int, patch: int,
                     geometry: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch boxes (B, N, 4) and validity (B, N) of a fixed patch grid for images of the given
    original (W, H) sizes, computed once per distinct size (host tensors). ``geometry(processor,
    height, width)`` gives ((resized_h, resized_w), (top, left)) by the processor's own rule."""
    cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for size in dict.fromkeys((int(w), int(h)) for w, h in sizes):
        w0, h0 = size
        (rh, rw), (top, left) = geometry(processor, h0, w0)
        cache[size] = grid_boxes(grid_h, grid_w, patch, left=left, top=top, scale_x=w0 / rw, scale_y=h0 / rh,
                                 valid_w=rw, valid_h=rh)
    picked = [cache[(int(w), int(h))] for w, h in sizes]
    return torch.stack([b for b, _ in picked]), torch.stack([v for _, v in picked])


#: PIL resampling filters the device pipeline reproduces (``PILImageResampling`` value -> name)
RESAMPLE_NAMES = {2: "bilinear", 3: "bicubic"}
_PIL_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class UnsupportedImageSpec(NotImplementedError):
    """An image-processor setting the device pipeline cannot reproduce (use ``pipeline=reference``)."""


@dataclass(frozen=True)
class ImageSpec:
    """What an adapter's image processor does to one uint8 RGB image, for a device pipeline
    (:mod:`cptbench.cpt.pipeline`) that does the same with tensor ops.

    ``geometry(h, w)`` gives ``((resized_h, resized_w), (top, left))``: the size the processor
    resizes to, by the processor's own rule, and the offset of the centre crop in it. ``crop`` is
    the output size of that crop (``None``: no crop, the output is the resized image); pixels of
    the crop outside the resized image are 0 before rescaling, as in transformers' ``center_crop``.
    ``resample`` is the PIL filter (``bicubic`` or ``bilinear``; PIL resizes one axis at a time,
    horizontal first, rounding to uint8 after each pass). ``rescale`` multiplies, then
    ``(x - mean) / std``. ``pad_to_batch``: the batch is padded to its largest image with zeros
    after normalising and gets a ``pixel_mask`` (ViLT); otherwise every output has one size.
    ``name`` is a short stable description (cache keys, records).
    """

    geometry: Callable[[int, int], tuple[tuple[int, int], tuple[int, int]]]
    crop: tuple[int, int] | None
    resample: str
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    pad_to_batch: bool
    name: str

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of the pixel values for a ``height x width`` image (before batch padding)."""
        (rh, rw), _ = self.geometry(height, width)
        return self.crop if self.crop is not None else (rh, rw)


def processor_resample(processor) -> str:
    """The name of a processor's resampling filter, or :class:`UnsupportedImageSpec`."""
    value = getattr(processor, "resample", 3)
    value = int(getattr(value, "value", value))
    if value not in RESAMPLE_NAMES:
        raise UnsupportedImageSpec(
            f"the image processor resamples with PIL {_PIL_NAMES.get(value, value)!r}; the device pipeline "
            f"reproduces {' and '.join(sorted(RESAMPLE_NAMES.values()))} only: use --set pipeline=reference")
    return RESAMPLE_NAMES[value]


def processor_normalisation(processor) -> tuple[float | None, tuple | None, tuple | None]:
    """(rescale factor or None, mean or None, std or None) as the processor applies them."""
    scale = float(processor.rescale_factor) if getattr(processor, "do_rescale", True) else None
    if not getattr(processor, "do_normalize", True):
        return scale, None, None

    def triple(v):
        v = [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
        return tuple(v * 3 if len(v) == 1 else v)

    return scale, triple(processor.image_mean), triple(processor.image_std)
