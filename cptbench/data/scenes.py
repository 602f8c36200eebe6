"""Procedural scenes of flat shapes: their vocabulary (shapes, colours, sizes), geometry and seeded
sampling.

These are the reusable pieces behind the ``synthref`` benchmark (:mod:`cptbench.data.synthref`):
a pretraining corpus can sample its own scenes from here, with its own seed stream (see
:func:`scene_rng`), so its images never coincide with the benchmark's. Rendering is
:mod:`cptbench.data.scene_render`; referring expressions and captions about a scene are
:mod:`cptbench.data.scene_expressions`.

Geometry convention: continuous pixel coordinates, ``(0, 0)`` is the top-left corner of the image
and a pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``; a pixel belongs to an object
when its centre ``(col + 0.5, row + 0.5)`` lies inside the shape. Boxes are float ``xyxy`` (the
library's convention, :mod:`cptbench.core.boxes`) and equal the extent of the object's polygon.

Colours: CPT paints candidates with semi-transparent red ``(240, 0, 30)``, so the palette holds no
red, pink or orange; all colours are named and distinct from each other and from the light neutral
background.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

#: Shapes in category-id order (category id = index + 1).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")

#: Named object colours (no red / pink / orange: they would be confused with CPT's red paint).
PALETTE: dict[str, tuple[int, int, int]] = {
    "blue": (40, 80, 220),
    "green": (30, 150, 50),
    "yellow": (235, 205, 30),
    "purple": (125, 55, 175),
    "gray": (120, 120, 120),
    "black": (25, 25, 25),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)

SIZES: tuple[str, ...] = ("small", "big")
#: Radius ranges at the reference image size of 64 px; scaled linearly for other sizes.
RADIUS_RANGE_64: dict[str, tuple[float, float]] = {"small": (4.0, 5.5), "big": (8.0, 10.0)}
REFERENCE_SIZE = 64
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 384

#: Colour jitter (+/- per channel) around the palette colour.
COLOUR_JITTER = 10
#: Background grey level range (inclusive); a light neutral grey.
BACKGROUND_RANGE = (200, 225)

# --------------------------------------------------------------------------------------------
# Scene data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """One flat shape. Coordinates are pixels of an image of the scene's size."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    size: str  # "small" | "big"
    center: tuple[float, float]  # (x, y)
    radius: float
    xyxy: tuple[float, float, float, float]  # extent of ``polygon``
    polygon: tuple[float, ...]  # flat (x1, y1, x2, y2, ...), convex, clockwise on screen

    @property
    def category_id(self) -> int:
        """The shape's category id (its index in :data:`SHAPES` + 1)."""
        return SHAPES.index(self.shape) + 1

    @property
    def attributes(self) -> tuple[str, str, str]:
        """``(size, colour, shape)``: what an attribute-only expression can say."""
        return (self.size, self.colour, self.shape)

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        """The box as ``(x, y, w, h)``."""
        x1, y1, x2, y2 = self.xyxy
        return (x1, y1, round(x2 - x1, 4), round(y2 - y1, 4))

    @property
    def area(self) -> float:
        """Area of the polygon (shoelace formula)."""
        p = np.asarray(self.polygon, dtype=np.float64).reshape(-1, 2)
        x, y = p[:, 0], p[:, 1]
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


@dataclass(frozen=True)
class Scene:
    """A square image of ``image_size`` pixels: a flat background and non-overlapping objects."""

    image_size: int
    background: tuple[int, int, int]
    objects: tuple[SceneObject, ...]

    def key(self) -> tuple:
        """A hashable fingerprint (for checking that two corpora share no scene)."""
        return (self.image_size, self.background, tuple((o.shape, o.colour, o.rgb, o.center, o.radius) for o in self.objects))


# --------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------


def stable_hash(text: str) -> int:
    """A 63-bit hash of ``text`` that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1


def scene_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of the named stream (a split name such as ``"val"``, or
    e.g. ``"pretrain"`` for a corpus that must not repeat the benchmark's scenes)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng([seed, stable_hash(stream), index])


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

_CIRCLE_VERTICES = 32


def _half_extent(shape: str, r: float) -> tuple[float, float]:
    """Half width and half height of the shape's box for radius ``r``."""
    if shape == "circle":
        return r, r
    if shape == "square":
        return 0.85 * r, 0.85 * r
    if shape == "triangle":
        return r, 0.87 * r
    if shape == "diamond":
        return 0.8 * r, r
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def _polygon(shape: str, cx: float, cy: float, r: float) -> tuple[float, ...]:
    hw, hh = _half_extent(shape, r)
    if shape == "circle":
        ang = np.arange(_CIRCLE_VERTICES) * (2 * math.pi / _CIRCLE_VERTICES)
        pts = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], axis=1)
    elif shape == "square":
        pts = np.array([[cx - hw, cy - hh], [cx + hw, cy - hh], [cx + hw, cy + hh], [cx - hw, cy + hh]])
    elif shape == "triangle":  # pointing up; its box is centred on (cx, cy)
        pts = np.array([[cx, cy - hh], [cx + hw, cy + hh], [cx - hw, cy + hh]])
    elif shape == "diamond":
        pts = np.array([[cx, cy - hh], [cx + hw, cy], [cx, cy + hh], [cx - hw, cy]])
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")
    return tuple(round(float(v), 2) + 0.0 for v in pts.reshape(-1))


def make_object(shape: str, colour: str, rgb: Sequence[int], size: str, center: Sequence[float], radius: float) -> SceneObject:
    """Build a :class:`SceneObject`, deriving its polygon and box from the shape, centre and radius."""
    if colour not in PALETTE:
        raise ValueError(f"unknown colour {colour!r}; choose one of {COLOURS}")
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {SIZES}")
    cx, cy = round(float(center[0]), 2), round(float(center[1]), 2)
    radius = round(float(radius), 2)
    poly = _polygon(shape, cx, cy, radius)
    xs, ys = poly[0::2], poly[1::2]
    box = (min(xs), min(ys), max(xs), max(ys))
    return SceneObject(shape, colour, tuple(int(c) for c in rgb), size, (cx, cy), radius, box, poly)


def scale_scene(scene: Scene, image_size: int) -> Scene:
    """The same scene drawn on a canvas of ``image_size`` pixels."""
    if image_size == scene.image_size:
        return scene
    f = image_size / scene.image_size
    objs = tuple(
        make_object(o.shape, o.colour, o.rgb, o.size, (o.center[0] * f, o.center[1] * f), o.radius * f) for o in scene.objects
    )
    return replace(scene, image_size=image_size, objects=objs)


def check_image_size(image_size: int) -> None:
    """Raises ``ValueError`` unless ``image_size`` is an integer in [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE]."""
    if not (isinstance(image_size, int) and MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE):
        raise ValueError(f"image_size must be an integer in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {image_size!r}")


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


class SceneSamplingError(RuntimeError):
    """The requested objects could not be placed without overlap."""


def _sample_rgb(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    base = np.asarray(PALETTE[colour], dtype=np.int64)
    jit = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(base + jit, 0, 255))


def sample_scene(
    rng: np.random.Generator,
    image_size: int = REFERENCE_SIZE,
    n_objects: int = 4,
    *,
    twins: int = 0,
    p_big: float = 0.5,
    max_restarts: int = 100,
) -> Scene:
    """Sample ``n_objects`` non-overlapping objects (their boxes are at least ~2 px apart).

    ``twins`` extra objects copy the size, colour and shape of one sampled object, so that a scene
    holds at least ``twins + 1`` look-alikes only position can tell apart. Shapes and colours are
    uniform; ``p_big`` is the chance an object is big (a big object that does not fit is made small,
    twins excepted). Deterministic given ``rng``'s state.
    """
    check_image_size(image_size)
    if n_objects < 1:
        raise ValueError(f"n_objects must be >= 1, got {n_objects}")
    if not 0 <= twins < n_objects:
        raise ValueError(f"twins must be in [0, n_objects), got twins={twins}, n_objects={n_objects}")
    scale = image_size / REFERENCE_SIZE
    gap = max(1.0, 2.0 * scale)
    border = max(1.0, 1.0 * scale)
    bg_level = int(rng.integers(BACKGROUND_RANGE[0], BACKGROUND_RANGE[1] + 1))
    background = (bg_level, bg_level, bg_level)

    # Attributes first: (shape, colour, size, locked) where locked = a twin whose size may not change.
    attrs: list[list] = []
    for i in range(n_objects):
        attrs.append([SHAPES[rng.integers(len(SHAPES))], COLOURS[rng.integers(len(COLOURS))], "big" if rng.random() < p_big else "small", False])
    for i in range(1, twins + 1):
        attrs[i] = [attrs[0][0], attrs[0][1], attrs[0][2], True]
    if twins:
        attrs[0][3] = True

    for _ in range(max_restarts):
        placed: list[SceneObject | None] = [None] * n_objects
        boxes = np.zeros((0, 4))
        # Big objects first: they are the hard ones to fit.
        order = sorted(range(n_objects), key=lambda i: (attrs[i][2] != "big", i))
        ok = True
        for i in order:
            shape, colour, size, locked = attrs[i]
            obj = None
            for try_size in (size,) if (locked or size == "small") else (size, "small"):
                lo, hi = RADIUS_RANGE_64[try_size]
                r = float(rng.uniform(lo, hi)) * scale
                hw, hh = _half_extent(shape, r)
                for _batch in range(4):
                    cx = rng.uniform(hw + border, image_size - hw - border, size=64)
                    cy = rng.uniform(hh + border, image_size - hh - border, size=64)
                    if len(boxes):
                        sep = (
                            (cx[:, None] - hw >= boxes[None, :, 2] + gap)
                            | (cx[:, None] + hw + gap <= boxes[None, :, 0])
                            | (cy[:, None] - hh >= boxes[None, :, 3] + gap)
                            | (cy[:, None] + hh + gap <= boxes[None, :, 1])
                        ).all(axis=1)
                        free = np.flatnonzero(sep)
                    else:
                        free = np.arange(len(cx))
                    if len(free):
                        k = int(free[0])
                        obj = make_object(shape, colour, _sample_rgb(rng, colour), try_size, (cx[k], cy[k]), r)
                        break
                if obj is not None:
                    break
            if obj is None:
                ok = False
                break
            placed[i] = obj
            # Reserve the rounded box plus nothing more: the gap test above adds the spacing.
            boxes = np.vstack([boxes, np.asarray(obj.xyxy)[None, :]])
        if ok:
            perm = rng.permutation(n_objects)
            return Scene(image_size, background, tuple(placed[int(j)] for j in perm))  # type: ignore[misc]
    raise SceneSamplingError(f"could not place {n_objects} objects in a {image_size}px image after {max_restarts} restarts")
