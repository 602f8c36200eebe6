"""Painting candidates: palettes, candidate pixel masks, blending, grouping and the painted-image cache.

Blending (docs/protocol.md section 3): per covered pixel ``out = (1 - a) * orig + a * rgb``, computed in
float64 and rounded to the nearest integer (``numpy.rint``; with the default ``a = 127/255`` a tie
cannot occur), pixels outside every painted region are left bit-for-bit unchanged. When regions of
one group overlap, the later candidate (in candidate order) wins the pixel and the blend is applied
once over the original, so every painted pixel shows exactly one palette colour.

Box pixels (docs/protocol.md section 7; :func:`box_spans` is the one definition, used by
:func:`box_masks` and by any batched painting pipeline). Boxes are float ``xyxy`` with ``x2 = x + w``
(the library's convention); a box covers the columns ``[c0, c1)`` and rows ``[r0, r1)``, clipped to
the image, where under

* ``release`` (the default; the release's ``draw_rectangles``, which converts COCO ``xywh`` to
  ``x2 = x + w - 1`` and pastes a block of ``int(x2) - int(x1)`` columns at ``int(x1)``):
  ``c0 = trunc(x1)``, ``c1 = trunc(x2 - 1)``, ``r0 = trunc(y1)``, ``r1 = trunc(y2 - 1)``
  (``trunc`` = Python's ``int``, toward zero). An integer box ``x = 10, w = 4`` covers columns
  10, 11, 12; a box less than 2 px wide may cover nothing;
* ``cover``: ``c0 = floor(x1)``, ``c1 = ceil(x2)``, likewise for rows: every pixel the continuous
  box touches (``x = 10, w = 4`` covers 10 .. 13).

Boxes the data's box policy keeps (:mod:`cptbench.data.box_policy`) paint as the release paints
them: a box reaching past the border is clipped to the image (the release pastes its block with
PIL, which clips it), and a zero-area box (zero width or height, or a non-finite value) paints
nothing under either rule, also in ``mask`` mode whatever its segmentation holds.

Segmentations (CPT-Seg) are COCO polygons (list of flat ``[x1, y1, x2, y2, ...]`` lists), RLE dicts
(compressed ``counts`` string or uncompressed list) or a ready ``(H, W)`` boolean array; they are
decoded with pycocotools for the image's own height and width. A candidate without a usable mask
falls back to its box; fallbacks are counted per distinct candidate.

Grouping (the release's generic rule): candidates are chunked in order into groups of
``len(palette)``; group ``g`` paints its ``j``-th candidate with ``palette[j]``; one painted copy
(and one forward pass) per group, so ``ceil(N / C)`` copies per expression.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Sequence

import numpy as np

from cptbench.data.examples import Example
from cptbench.cpt.palettes import DEFAULT_ALPHA, NAMED_PALETTES, Palette, parse_palette  # noqa: F401 (re-exported)
from cptbench.data.images import LRUCache

MODES = ("block", "mask")


# ------------------------------------------------------------------------------------------ groups
# (palettes, names, inline specs and palette files: :mod:`cptbench.cpt.palettes`, re-exported here)
def candidate_groups(n_candidates: int, group_size: int) -> list[range]:
    """Candidate index ranges, one per painted copy: ``[0, C), [C, 2C), ...``."""
    return [range(s, min(s + group_size, n_candidates)) for s in range(0, n_candidates, group_size)]


def n_groups(n_candidates: int, group_size: int) -> int:
    """How many painted copies ``n_candidates`` candidates need at ``group_size`` colours."""
    return math.ceil(n_candidates / group_size) if n_candidates else 0


# ----------------------------------------------------------------------------------- pixel masks
#: box pixel rules (module doc); the first is the release's and the default
BOX_PIXEL_RULES = ("release", "cover")
DEFAULT_BOX_PIXELS = BOX_PIXEL_RULES[0]


def check_box_pixels(rule: str) -> str:
    """``rule`` if it is one of :data:`BOX_PIXEL_RULES`, else a ``ValueError`` naming them."""
    if rule not in BOX_PIXEL_RULES:
        raise ValueError(f"box_pixels must be one of {', '.join(BOX_PIXEL_RULES)} (release: columns int(x1) .. "
                         f"int(x2 - 1) - 1 as the release paints; cover: every pixel the box touches), got {rule!r}")
    return rule


def box_spans(boxes, height: int, width: int, rule: str = DEFAULT_BOX_PIXELS) -> np.ndarray:
    """Integer ``(n, 4)`` array ``[c0, r0, c1, r1]`` (end exclusive, clipped to the image) of the
    pixels each ``xyxy`` box covers under ``rule`` (module doc); ``c1 <= c0`` means no column."""
    check_box_pixels(rule)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        empty = ~((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))  # zero area (or NaN): nothing to paint
    b = np.where(np.isfinite(b), b, 0.0)
    if rule == "release":
        lo, hi = np.trunc(b[:, :2]), np.trunc(b[:, 2:] - 1.0)
    else:
        lo, hi = np.floor(b[:, :2]), np.ceil(b[:, 2:])
    limit = np.array([width, height], dtype=np.float64)
    lo = np.clip(lo, 0, limit)
    hi = np.clip(hi, 0, limit)
    hi[empty] = lo[empty]
    return np.concatenate([lo, hi], axis=1).astype(np.int64)


def box_masks(boxes, height: int, width: int, rule: str = DEFAULT_BOX_PIXELS) -> np.ndarray:
    """Boolean masks ``(n, H, W)`` of the pixels covered by ``xyxy`` boxes under ``rule`` (module doc)."""
    spans = box_spans(boxes, height, width, rule)
    cols = np.arange(width)
    rows = np.arange(height)
    in_x = (cols[None, :] >= spans[:, 0:1]) & (cols[None, :] < spans[:, 2:3])
    in_y = (rows[None, :] >= spans[:, 1:2]) & (rows[None, :] < spans[:, 3:4])
    return in_y[:, :, None] & in_x[:, None, :]


def has_usable_mask(seg: Any) -> bool:
    """Whether :func:`decode_segmentation` gives a mask for ``seg`` (without decoding it)."""
    if seg is None:
        return False
    if isinstance(seg, (np.ndarray, dict)):
        return True
    if isinstance(seg, (list, tuple)):
        return any(isinstance(p, (list, tuple)) and len(p) >= 6 for p in seg)
    return True


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray | None:
    """A COCO segmentation as a boolean ``(H, W)`` mask, or ``None`` when there is no usable mask."""
    if seg is None:
        return None
    if isinstance(seg, np.ndarray) and seg.ndim == 2:
        if seg.shape != (height, width):
            raise ValueError(f"mask array of shape {seg.shape} does not match the image ({height}, {width})")
        return seg.astype(bool)
    import warnings

    with warnings.catch_warnings():
        # pycocotools' own NumPy-2 deprecation notice (its __array__ signature), not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_coco(seg, height, width)


def _decode_coco(seg: Any, height: int, width: int) -> np.ndarray | None:
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise ValueError(f"RLE segmentation needs 'counts' and 'size', got keys {sorted(seg)}")
        size = tuple(int(v) for v in seg["size"])
        if size != (height, width):
            raise ValueError(f"RLE of size {list(size)} (h, w) does not match the image ({height}, {width})")
        counts = seg["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = {"size": list(size), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        return mask_utils.decode(rle).astype(bool)
    if isinstance(seg, (list, tuple)):
        # Polygons with fewer than three points are dropped (pycocotools would misread a 4-number
        # polygon as a box).
        polys = [[float(v) for v in p] for p in seg if isinstance(p, (list, tuple)) and len(p) >= 6]
        if not polys:
            return None
        rles = mask_utils.frPyObjects(polys, height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    raise ValueError(f"unsupported segmentation of type {type(seg).__name__}")


# --------------------------------------------------------------------------------------- blending
def paint(image: np.ndarray, masks: np.ndarray, colors: Sequence[Sequence[int]], alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Blend ``colors[j]`` over ``masks[j]`` of a uint8 RGB image; returns a new uint8 array.

    ``masks`` is boolean ``(G, H, W)``; where masks overlap the last one wins (module doc).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"paint expects a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    masks = np.asarray(masks, dtype=bool).reshape(-1, *image.shape[:2])
    out = image.copy()
    if masks.shape[0] == 0:
        return out
    covered = masks.any(axis=0)
    if not covered.any():
        return out
    g = masks.shape[0]
    owner = g - 1 - np.argmax(masks[::-1], axis=0)  # last mask covering each pixel
    rgb = np.asarray(colors, dtype=np.float64).reshape(-1, 3)[:g]
    blended = (1.0 - alpha) * image[covered].astype(np.float64) + alpha * rgb[owner[covered]]
    out[covered] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def blend_color(orig, rgb, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The value :func:`paint` writes for original pixel(s) ``orig`` and colour ``rgb``."""
    orig = np.asarray(orig, dtype=np.float64)
    return np.clip(np.rint((1.0 - alpha) * orig + alpha * np.asarray(rgb, dtype=np.float64)), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ caches


#: box arrays whose digest a :class:`Painter` keeps
DIGEST_CACHE = 4096


def boxes_digest(boxes: np.ndarray) -> str:
    """A short hash of a candidate box array's float64 values (part of the cache keys)."""
    return hashlib.sha1(np.ascontiguousarray(np.asarray(boxes, dtype=np.float64)).tobytes()).hexdigest()[:16]


class Painter:
    """Paints the groups of an example and caches the adapter-prepared copies.

    A copy is keyed by (image path, candidate key, candidate boxes, group, palette, alpha, mode, box
    pixel rule), so all expressions of one image and candidate set share it. ``prepare`` is the
    adapter's ``prepare_image``; its results are kept in an LRU of ``cache_size`` entries.
    ``box_pixels`` is the box rule (module doc) for boxes and for masks that fall back to a box.
    """

    def __init__(self, palette: Palette, alpha: float, mode: str, prepare: Callable[[np.ndarray], Any],
                 cache_size: int = 64, box_pixels: str = DEFAULT_BOX_PIXELS):
        if mode not in MODES:
            raise ValueError(f"painting mode must be one of {MODES}, got {mode!r}")
        self.box_pixels = check_box_pixels(box_pixels)
        self.palette = palette
        self.alpha = float(alpha)
        self.mode = mode
        self.prepare = prepare
        self.prepared_cache = LRUCache(cache_size)
        self.images_painted = 0
        self._digests: dict[int, tuple[np.ndarray, str]] = {}  # id(boxes) -> (boxes, digest)

    @staticmethod
    def fallback_count(example: Example) -> int:
        """Candidates of ``example`` that mode ``mask`` paints as their box (no usable mask)."""
        return sum(1 for i in range(example.n_candidates)
                   if not has_usable_mask(example.masks[i] if i < len(example.masks) else None))

    def groups(self, example: Example) -> list[range]:
        """The candidate ranges of ``example``'s painted copies (:func:`candidate_groups`)."""
        return candidate_groups(example.n_candidates, len(self.palette))

    def image(self, example: Example) -> np.ndarray:
        """``example``'s decoded uint8 RGB image, refused when its size is not the annotated one."""
        img = example.image()
        w, h = example.image_size
        if (w, h) != (0, 0) and img.shape[:2] != (h, w):
            raise ValueError(
                f"image {example.image_key}: image is {img.shape[1]}x{img.shape[0]} but example "
                f"{example.example_id} says {w}x{h}; boxes would not line up with the pixels"
            )
        return img

    def boxes_key(self, boxes: np.ndarray) -> str:
        """:func:`boxes_digest` of an example's box array, hashed once per array (every pass of an
        example asks for it; the array is kept beside its digest, so a reused id cannot match)."""
        hit = self._digests.get(id(boxes))
        if hit is None or hit[0] is not boxes:
            if len(self._digests) >= DIGEST_CACHE:
                self._digests.clear()
            hit = self._digests[id(boxes)] = (boxes, boxes_digest(boxes))
        return hit[1]

    def _key(self, example: Example, group: int) -> tuple:
        return (example.image_key, example.candidate_key, self.boxes_key(example.boxes), group,
                self.palette.spec, self.alpha, self.mode, self.box_pixels)

    def region_masks(self, example: Example, indices: Sequence[int], height: int, width: int) -> np.ndarray:
        """Boolean ``(len(indices), H, W)`` regions of the given candidates (box or mask mode; a
        zero-area box paints nothing in either)."""
        boxes = np.asarray(example.boxes, dtype=np.float64).reshape(-1, 4)[list(indices)]
        regions = box_masks(boxes, height, width, self.box_pixels)
        if self.mode == "mask":
            with np.errstate(invalid="ignore"):
                has_area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            for row, i in enumerate(indices):
                seg = example.masks[i] if i < len(example.masks) else None
                decoded = decode_segmentation(seg, height, width) if has_area[row] else None
                if decoded is not None:
                    regions[row] = decoded
        return regions

    def painted(self, example: Example, group: int) -> np.ndarray:
        """The painted uint8 copy of ``example``'s image for candidate group ``group`` (not cached)."""
        groups = self.groups(example)
        if not 0 <= group < len(groups):
            raise IndexError(f"example {example.example_id} has {len(groups)} candidate groups, asked for {group}")
        indices = list(groups[group])
        img = self.image(example)
        regions = self.region_masks(example, indices, img.shape[0], img.shape[1])
        self.images_painted += 1
        return paint(img, regions, self.palette.rgb[: len(indices)], self.alpha)

    def prepared(self, example: Example, group: int) -> Any:
        """``prepare(painted(example, group))``, cached."""
        return self.prepared_cache.get_or_create(self._key(example, group), lambda: self.prepare(self.painted(example, group)))
