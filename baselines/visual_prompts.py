"""The visual prompts that followed CPT, as image operations on uint8 RGB arrays ``(H, W, 3)``.

Each function takes the whole image and one candidate box (float ``xyxy``, ``x2 = x + w``) and
returns a new array; none changes its input. The defaults are the published choices, each with its
source:

* :func:`crop` - the box cut out (ReCLIP, Subramanian et al. ACL 2022: ``image.crop(box)``, the
  box enlarged by ``--enlarge_boxes``, default 0 px; allenai/reclip ``main.py`` / ``executor.py``).
* :func:`blur_outside` - everything but the box blurred with a Gaussian of radius (standard
  deviation) :data:`RECLIP_BLUR_RADIUS` = 100 px (ReCLIP's ``--blur_std_dev 100``, PIL's
  ``GaussianBlur``), the box's pixels kept sharp.
* :func:`ellipse_outline` - a red ellipse outline inscribed in the box (Red Circle, Shtedritski
  et al. ICCV 2023). Red Circle's own repository (suny-sht/clip-red-circle) has no code; the colour
  red (255, 0, 0) and the thickness 2 px are the defaults of the reproduction that FGVP (Yang et
  al. NeurIPS 2023, ylingfeng/FGVP ``fgvp-reclip/main.py``: ``--color_line red --thickness 2``)
  ran for Red Circle, which draws on the image already resized to the model's input (so the
  thickness is in model pixels) with the ellipse's centre and half-axes those of the box.
* :func:`shade` - CPT's translucent red block over the box, by :mod:`cptbench.cpt.painting`
  (colour (240, 0, 30), alpha 127/255, the release's box pixel rule): the "CPT-adapted" baseline
  of ReCLIP (its ``shade`` representation uses the same colour and alpha).

Geometry. :func:`box_region` is the one definition of a box's pixels for crop and blur: columns
``round(x1 - p) .. round(x2 + p) - 1`` (``p`` the padding), rows likewise, clipped to the image
and never empty (a zero-area box keeps one pixel, as FGVP's crop does); PIL's ``crop`` rounds the
same way. ReCLIP's blur keeps its box sharp with a PIL rectangle, which also covers the column
``x2`` and the row ``y2``: one pixel more on the right and bottom than here.

:func:`to_model_input` resizes an image for the model: ``square`` (ReCLIP's default
``square_size``, and the ``resize`` processing of FGVP's Red Circle runs) stretches it to the
model's square input with PIL's bicubic filter; otherwise the shorter side becomes the input side
(the model's processor then centre-crops). An image already at that size is returned unchanged.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: ReCLIP's ``--blur_std_dev`` (PIL ``GaussianBlur`` radius)
RECLIP_BLUR_RADIUS = 100.0
#: ReCLIP's ``--enlarge_boxes``
RECLIP_BOX_PADDING = 0.0
#: FGVP's Red Circle runs: ``--color_line red``
RED_CIRCLE_RGB = (255, 0, 0)
#: FGVP's Red Circle runs: ``--thickness 2``
RED_CIRCLE_THICKNESS = 2


def parse_rgb(spec: str | Sequence[int]) -> tuple[int, int, int]:
    """``"r,g,b"`` (or three integers) as an RGB triple in 0..255, else a ``ValueError``."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    try:
        rgb = tuple(int(str(p).strip()) for p in parts)
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"a colour is 'r,g,b' with each value in 0..255, got {spec!r}")
    return rgb  # type: ignore[return-value]


def _check(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {arr.dtype} {arr.shape}")
    return arr


def box_region(box: Sequence[float], height: int, width: int, padding: float = 0.0) -> tuple[int, int, int, int]:
    """``(c0, r0, c1, r1)``, end exclusive, of the pixels a box covers for crop and blur (module doc)."""
    x1, y1, x2, y2 = (float(v) if math.isfinite(float(v)) else 0.0 for v in box)
    p = float(padding)

    def span(lo: float, hi: float, size: int) -> tuple[int, int]:
        a = min(max(int(round(lo - p)), 0), size - 1)
        b = min(max(int(round(hi + p)), 0), size)
        return a, max(b, a + 1)

    c0, c1 = span(x1, x2, width)
    r0, r1 = span(y1, y2, height)
    return c0, r0, c1, r1


def crop(image: np.ndarray, box: Sequence[float], padding: float = RECLIP_BOX_PADDING) -> np.ndarray:
    """The box's pixels (:func:`box_region`) as a new array."""
    arr = _check(image)
    c0, r0, c1, r1 = box_region(box, arr.shape[0], arr.shape[1], padding)
    return arr[r0:r1, c0:c1].copy()


def gaussian_blur(image: np.ndarray, radius: float = RECLIP_BLUR_RADIUS) -> np.ndarray:
    """The whole image blurred by PIL's ``GaussianBlur(radius)`` (callers may cache it per image)."""
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(_check(image)).filter(ImageFilter.GaussianBlur(float(radius))), dtype=np.uint8)


def blur_outside(image: np.ndarray, box: Sequence[float], radius: float = RECLIP_BLUR_RADIUS,
                 padding: float = RECLIP_BOX_PADDING, blurred: np.ndarray | None = None) -> np.ndarray:
    """The image blurred everywhere but the box's pixels (:func:`box_region`); ``blurred`` is the
    image's :func:`gaussian_blur` when the caller has it."""
    arr = _check(image)
    out = np.array(gaussian_blur(arr, radius) if blurred is None else blurred, dtype=np.uint8, copy=True)
    if out.shape != arr.shape:
        raise ValueError(f"blurred image of shape {out.shape} does not match the image {arr.shape}")
    c0, r0, c1, r1 = box_region(box, arr.shape[0], arr.shape[1], padding)
    out[r0:r1, c0:c1] = arr[r0:r1, c0:c1]
    return out


def ellipse_outline(image: np.ndarray, box: Sequence[float], rgb: Sequence[int] = RED_CIRCLE_RGB,
                    thickness: int = RED_CIRCLE_THICKNESS) -> np.ndarray:
    """The image with an ellipse outline of ``thickness`` pixels inscribed in the box: PIL's
    ``ImageDraw.ellipse`` over the box's pixel span (columns ``x1 .. x2 - 1``), the outline drawn
    inwards from the box's edges (Red Circle's cv2 outline is centred on the ellipse: half the
    thickness lies outside it). A zero-area box draws a point; the outline is clipped to the image."""
    from PIL import Image, ImageDraw

    arr = _check(image)
    x1, y1, x2, y2 = (float(v) for v in box)
    x2, y2 = max(x2 - 1.0, x1), max(y2 - 1.0, y1)
    im = Image.fromarray(arr.copy())
    ImageDraw.Draw(im).ellipse([x1, y1, x2, y2], outline=tuple(int(v) for v in rgb), width=max(1, int(thickness)))
    return np.asarray(im, dtype=np.uint8)


def shade(image: np.ndarray, box: Sequence[float], rgb: Sequence[int], alpha: float, box_pixels: str = "release") -> np.ndarray:
    """CPT's translucent block over the box: :func:`cptbench.cpt.painting.paint` of the box's
    pixels under ``box_pixels`` (:func:`cptbench.cpt.painting.box_masks`) with ``rgb`` at ``alpha``."""
    from cptbench.cpt.painting import box_masks, paint

    arr = _check(image)
    masks = box_masks(np.asarray([box], dtype=np.float64), arr.shape[0], arr.shape[1], box_pixels)
    return paint(arr, masks, [tuple(rgb)], float(alpha))


def model_input_size(height: int, width: int, side: int, square: bool) -> tuple[int, int]:
    """``(H, W)`` after :func:`to_model_input`."""
    if square:
        return side, side
    if height <= width:
        return side, max(1, int(round(width * side / height)))
    return max(1, int(round(height * side / width))), side


def to_model_input(image: np.ndarray, side: int, square: bool = True) -> np.ndarray:
    """The image resized for a model whose input is ``side`` x ``side`` (module doc)."""
    from PIL import Image

    arr = _check(image)
    h, w = model_input_size(arr.shape[0], arr.shape[1], int(side), square)
    if (h, w) == arr.shape[:2]:
        return arr
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.BICUBIC), dtype=np.uint8)


def scale_box(box: Sequence[float], from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """A box in the pixels of an image resized from ``from_hw`` to ``to_hw`` (H, W)."""
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([x1 * sx, y1 * sy, x2 * sx, y2 * sy], dtype=np.float64)
