"""Procedural scenes of flat shapes, their rendering, and referring expressions about them.

These are the reusable pieces behind the ``synthref`` benchmark (:mod:`cptbench.data.synthref`):
a pretraining corpus can sample its own scenes and captions from here, with its own seed stream
(see :func:`scene_rng`), so its images never coincide with the benchmark's.

Geometry convention: continuous pixel coordinates, ``(0, 0)`` is the top-left corner of the image
and a pixel ``(col, row)`` covers ``[col, col + 1) x [row, row + 1)``; a pixel belongs to an object
when its centre ``(col + 0.5, row + 0.5)`` lies inside the shape. Boxes are float ``xyxy`` (the
library's convention, :mod:`cptbench.core.boxes`) and equal the extent of the object's polygon.

Colours: CPT paints candidates with semi-transparent red ``(240, 0, 30)``, so the palette holds no
red, pink or orange; all colours are named and distinct from each other and from the light neutral
background.

Expression grammar (lower-case, no trailing dot, whitespace tokens)::

    expr      := "the" [size] [colour] shape [position_phrase]
               | "the" position_adj [size] [colour] shape
    size      := "small" | "big"
    colour    := one of PALETTE
    shape     := one of SHAPES
    position_phrase := "on the left" | "on the right" | "at the top" | "at the bottom"
    position_adj    := "left" | "right" | "top" | "bottom"

Meaning (:func:`resolve_expression`): the attributes select the set ``D`` of matching objects. With
no position the referents are ``D``. With a position and ``|D| == 1`` the object must lie on that
side of the image (centre beyond 40 % / 60 % of the width or height). With ``|D| >= 2`` the
referents are the objects of ``D`` extreme in that direction, within a margin of 15 % of the image
size of the most extreme one (so "the circle on the left" among two circles whose centres are
closer than the margin is ambiguous), and none when the most extreme one lies on the opposite side
of the image (no "circle on the right" when all circles are on the left). An expression is emitted only when it resolves to exactly its
target.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import Literal, Sequence

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

POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom")
POSITION_PHRASES: dict[str, str] = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
#: Two referents closer than this fraction of the image size along the axis are ambiguous.
RELATIVE_MARGIN = 0.15
#: A lone matching object is "on the left" only if its centre is left of this fraction of the width.
ABSOLUTE_SIDE = 0.40

#: Colour jitter (+/- per channel) around the palette colour.
COLOUR_JITTER = 10
#: Background grey level range (inclusive); a light neutral grey.
BACKGROUND_RANGE = (200, 225)

#: Vocabulary of every expression and caption built here.
VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        {"the", "a", "and", "on", "at"}
        | set(SHAPES)
        | set(COLOURS)
        | set(SIZES)
        | set(POSITIONS)
    )
)

ExpressionMode = Literal["any", "position", "attributes"]


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
        return SHAPES.index(self.shape) + 1

    @property
    def attributes(self) -> tuple[str, str, str]:
        """``(size, colour, shape)``: what an attribute-only expression can say."""
        return (self.size, self.colour, self.shape)

    @property
    def xywh(self) -> tuple[float, float, float, float]:
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


def _check_size(image_size: int) -> None:
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
    _check_size(image_size)
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


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def object_mask(obj: SceneObject, image_size: int) -> np.ndarray:
    """Boolean ``(image_size, image_size)`` mask of the pixels whose centres lie inside ``obj``."""
    mask = np.zeros((image_size, image_size), dtype=bool)
    x1, y1, x2, y2 = obj.xyxy
    # Only pixels whose centres can lie in the box are tested.
    c0, c1 = max(0, int(math.floor(x1))), min(image_size, int(math.ceil(x2)))
    r0, r1 = max(0, int(math.floor(y1))), min(image_size, int(math.ceil(y2)))
    if c0 >= c1 or r0 >= r1:
        return mask
    xx = (np.arange(c0, c1, dtype=np.float64) + 0.5)[None, :]
    yy = (np.arange(r0, r1, dtype=np.float64) + 0.5)[:, None]
    if obj.shape == "circle":
        cx, cy = obj.center
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= obj.radius**2
    else:
        pts = np.asarray(obj.polygon, dtype=np.float64).reshape(-1, 2)
        inside = np.ones((r1 - r0, c1 - c0), dtype=bool)
        # Convex polygon, clockwise on screen (y down): a point is inside when it lies on the right
        # of (or on) every edge, i.e. cross(edge, point - start) >= 0.
        for (px0, py0), (px1, py1) in zip(pts, np.roll(pts, -1, axis=0)):
            inside &= (px1 - px0) * (yy - py0) - (py1 - py0) * (xx - px0) >= 0
    mask[r0:r1, c0:c1] = inside
    return mask


def render_scene(scene: Scene, image_size: int | None = None) -> np.ndarray:
    """The scene as a ``uint8`` RGB array of shape ``(H, W, 3)`` (flat colours, no anti-aliasing).

    ``image_size`` different from ``scene.image_size`` renders the scene scaled to that size.
    """
    if image_size is not None and image_size != scene.image_size:
        _check_size(image_size)
        scene = scale_scene(scene, image_size)
    n = scene.image_size
    img = np.empty((n, n, 3), dtype=np.uint8)
    img[...] = np.asarray(scene.background, dtype=np.uint8)
    for obj in scene.objects:
        img[object_mask(obj, n)] = np.asarray(obj.rgb, dtype=np.uint8)
    return img


# --------------------------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExprParts:
    """The structured content of a referring expression."""

    shape: str
    size: str | None = None
    colour: str | None = None
    position: str | None = None
    position_first: bool = False  # "the left circle" rather than "the circle on the left"


def expression_text(parts: ExprParts) -> str:
    words = ["the"]
    if parts.position is not None and parts.position_first:
        words.append(parts.position)
    if parts.size is not None:
        words.append(parts.size)
    if parts.colour is not None:
        words.append(parts.colour)
    words.append(parts.shape)
    if parts.position is not None and not parts.position_first:
        words.append(POSITION_PHRASES[parts.position])
    return " ".join(words)


_PHRASE_TO_POSITION = {tuple(v.split()): k for k, v in POSITION_PHRASES.items()}


def parse_expression(text: str) -> ExprParts:
    """Parse an expression of the grammar in the module docstring; raises ``ValueError`` otherwise."""
    toks = text.split()
    if not toks or toks[0] != "the":
        raise ValueError(f"not a synthref expression (must start with 'the'): {text!r}")
    i = 1
    position, first = None, False
    if i < len(toks) and toks[i] in POSITIONS:
        position, first = toks[i], True
        i += 1
    size = colour = None
    if i < len(toks) and toks[i] in SIZES:
        size = toks[i]
        i += 1
    if i < len(toks) and toks[i] in PALETTE:
        colour = toks[i]
        i += 1
    if i >= len(toks) or toks[i] not in SHAPES:
        raise ValueError(f"not a synthref expression (no shape where expected): {text!r}")
    shape = toks[i]
    i += 1
    rest = tuple(toks[i:])
    if rest:
        if position is not None or rest not in _PHRASE_TO_POSITION:
            raise ValueError(f"not a synthref expression (bad ending {' '.join(rest)!r}): {text!r}")
        position = _PHRASE_TO_POSITION[rest]
    return ExprParts(shape=shape, size=size, colour=colour, position=position, position_first=first)


def _coordinate(obj: SceneObject, position: str) -> float:
    """A coordinate that is smallest for the object most extreme in ``position``'s direction."""
    x, y = obj.center
    return {"left": x, "right": -x, "top": y, "bottom": -y}[position]


_OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}


def _on_side(obj: SceneObject, position: str, image_size: int) -> bool:
    x, y = obj.center
    lo, hi = ABSOLUTE_SIDE * image_size, (1.0 - ABSOLUTE_SIDE) * image_size
    return {"left": x < lo, "right": x > hi, "top": y < lo, "bottom": y > hi}[position]


def sides(obj: SceneObject, image_size: int) -> list[str]:
    """The sides of the image (in :data:`POSITIONS` order) that ``obj``'s centre lies on."""
    return [p for p in POSITIONS if _on_side(obj, p, image_size)]


def resolve_expression(scene: Scene, expr: ExprParts | str) -> list[int]:
    """Indices of the objects ``expr`` can refer to (see the module docstring for the semantics).

    An expression identifies its target uniquely exactly when this returns ``[target]``.
    """
    parts = parse_expression(expr) if isinstance(expr, str) else expr
    objs = scene.objects
    matches = [
        i
        for i, o in enumerate(objs)
        if o.shape == parts.shape
        and (parts.size is None or o.size == parts.size)
        and (parts.colour is None or o.colour == parts.colour)
    ]
    if parts.position is None or not matches:
        return matches
    if len(matches) == 1:
        return matches if _on_side(objs[matches[0]], parts.position, scene.image_size) else []
    coords = {i: _coordinate(objs[i], parts.position) for i in matches}
    best = min(coords.values())
    extreme = min(i for i in matches if coords[i] == best)
    if _on_side(objs[extreme], _OPPOSITE[parts.position], scene.image_size):
        return []  # "the circle on the right" when every circle is on the left: false
    margin = RELATIVE_MARGIN * scene.image_size
    return [i for i in matches if coords[i] < best + margin]


def _attribute_options(obj: SceneObject) -> list[tuple[str | None, str | None]]:
    return [(None, None), (obj.size, None), (None, obj.colour), (obj.size, obj.colour)]


def valid_expressions(scene: Scene, target_index: int, mode: ExpressionMode = "any") -> list[str]:
    """Every expression of the grammar that identifies ``target_index`` uniquely, in a fixed order.

    ``mode``: ``"attributes"`` only expressions without a position; ``"position"`` only expressions
    with one; ``"any"`` both.
    """
    if mode not in ("any", "position", "attributes"):
        raise ValueError(f"unknown mode {mode!r}; choose 'any', 'position' or 'attributes'")
    obj = scene.objects[target_index]
    out: list[str] = []
    for size, colour in _attribute_options(obj):
        if mode in ("any", "attributes"):
            p = ExprParts(obj.shape, size, colour)
            if resolve_expression(scene, p) == [target_index]:
                out.append(expression_text(p))
        if mode in ("any", "position"):
            for pos in POSITIONS:
                p = ExprParts(obj.shape, size, colour, pos)
                if resolve_expression(scene, p) == [target_index]:
                    out.append(expression_text(p))
                    out.append(expression_text(replace(p, position_first=True)))
    return out


def needs_position(scene: Scene, target_index: int) -> bool:
    """Whether another object shares the target's size, colour and shape (only position can tell
    them apart)."""
    a = scene.objects[target_index].attributes
    return any(o.attributes == a for i, o in enumerate(scene.objects) if i != target_index)


def refer_expression(scene: Scene, target_index: int, rng: np.random.Generator, mode: ExpressionMode = "any") -> str:
    """One expression that identifies ``target_index`` uniquely, chosen with ``rng``.

    Raises ``ValueError`` when the grammar has none for that target and mode (e.g. two
    look-alikes side by side closer than the position margin).
    """
    options = valid_expressions(scene, target_index, mode)
    if not options:
        raise ValueError(f"no {mode!r} expression identifies object {target_index} of this scene uniquely")
    return options[int(rng.integers(len(options)))]


# --------------------------------------------------------------------------------------------
# Captions (for a pretraining corpus)
# --------------------------------------------------------------------------------------------


def object_phrase(obj: SceneObject, image_size: int, *, article: str = "a", size: bool = True, colour: bool = True, position: bool = True) -> str:
    """E.g. ``"a big blue circle on the left"``; the position is the first side of the image the
    object's centre lies on (left/right before top/bottom), omitted when it is near the middle."""
    words = [article]
    if size:
        words.append(obj.size)
    if colour:
        words.append(obj.colour)
    words.append(obj.shape)
    if position:
        for pos in POSITIONS:
            if _on_side(obj, pos, image_size):
                words.append(POSITION_PHRASES[pos])
                break
    return " ".join(words)


def scene_caption(scene: Scene, rng: np.random.Generator, max_objects: int = 3) -> str:
    """A caption naming 1..``max_objects`` randomly chosen objects of the scene (absolute positions)."""
    n = int(rng.integers(1, min(max_objects, len(scene.objects)) + 1))
    idx = rng.choice(len(scene.objects), size=n, replace=False)
    return " and ".join(object_phrase(scene.objects[int(i)], scene.image_size) for i in sorted(idx))
