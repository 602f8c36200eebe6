"""Referring expressions and captions about a scene (:mod:`cptbench.data.scenes`): the grammar,
its meaning, and the expressions that identify one object uniquely.

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

from dataclasses import dataclass, replace
from typing import Literal


from cptbench.data.scenes import COLOURS, PALETTE, SHAPES, SIZES, Scene, SceneObject

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

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
    """The text of ``parts`` (the inverse of :func:`parse_expression`)."""
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
