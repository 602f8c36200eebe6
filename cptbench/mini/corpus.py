"""The pretraining corpus of the bundled model: scenes like synthref's, described in words.

Images come from their own scene stream (``scene_rng(seed, "pretrain", i)``), never the
benchmark's (synthref's streams are named after its splits). Each image gets several captions
that describe the scene the way COCO captions describe COCO images:

* colour statements about an object described by shape, size and position:
  ``"the big circle on the left is blue ."``;
* questions and answers: ``"what color is the small square at the top ? green ."``;
* position statements about an object described by its attributes:
  ``"the small blue circle is on the left ."``;
* object lists: ``"a small blue circle on the left and a big gray square ."``.

A caption joins one or two such parts. Every description is true of the image and names its
object uniquely (synthref's expression grammar and semantics, :mod:`cptbench.data.scene_expressions`). There
are no boxes, no region labels and never the CPT template (``"... is in [MASK] color"``): grounding
is not taught directly. Colour words appear because objects have those colours.

Red objects exist here although synthref's palette avoids red (CPT paints candidates red, and the
benchmark keeps its objects distinguishable from the paint), in varied shades: a plain red, or a
translucent red laid over the object's own palette colour (alpha drawn from
:attr:`CorpusSettings.tint_alpha`), so that "red" also covers a red tint over any colour.

Scenes come in pairs (:func:`sample_pair_scene`): the same layout twice, with the red on a
different object in each variant, and the same captions but for the colour words. Asked about one
of the two focal objects, the answer is "red" in one variant and the object's own colour in the
other, so "something in the image is red" does not predict the word; only the colour of the
described object does. (The counterfactual of a caption, the way image-text matching with
attribute-swapped negatives works, but through the masked-LM loss alone.)

The red shades and the pairing are the two choices made here with CPT's paint in mind; the model
card states them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from cptbench.data.scenes import COLOURS, PALETTE, SHAPES, SIZES, Scene, sample_scene, scene_rng
from cptbench.data.scene_render import render_scene
from cptbench.data.scene_expressions import (POSITIONS, POSITION_PHRASES, ExprParts, expression_text, object_phrase,
                                             resolve_expression, sides, valid_expressions)

RED = "red"
#: every colour word of the corpus (the benchmark's palette plus red)
COLOUR_WORDS: tuple[str, ...] = (*COLOURS, RED)
#: words the captions use beyond synthref's expression vocabulary
CAPTION_WORDS = ("is", "what", "color", "?", ".")
#: words CPT's templates and few-shot scoring need as single tokens (``in`` and ``none`` never
#: occur in the captions; they are in the vocabulary only so that prompts tokenize)
PROMPT_WORDS = ("in", "none", "color", "is", ".")

CAPTION_KINDS = ("colour", "question", "position", "list")


def vocabulary() -> list[str]:
    """The corpus' words (sorted); the tokenizer adds the special tokens in front."""
    words = {"the", "a", "and", "on", "at", *SHAPES, *COLOUR_WORDS, *SIZES, *POSITIONS, *CAPTION_WORDS, *PROMPT_WORDS}
    return sorted(words)


@dataclass(frozen=True)
class CorpusSettings:
    """How the pretraining corpus's scenes and captions are drawn."""

    image_size: int = 64
    min_objects: int = 1
    max_objects: int = 8
    p_twins: float = 0.35  # chance a scene of 3+ objects holds look-alikes (only position tells them apart)
    p_red_scene: float = 0.6  # chance a pair of scenes holds a red object
    p_tint: float = 0.8  # chance a red object is a translucent red over its own colour (else a plain red)
    tint_alpha: tuple[float, float] = (0.35, 0.7)
    p_ask_focal: float = 0.6  # chance a colour statement / question is about one of the pair's two focal objects
    captions_per_image: int = 4
    max_parts: int = 2  # parts per caption: 1..max_parts
    max_words: int = 36  # a caption of two parts longer than this keeps its first part only
    #: relative weights of the caption kinds (colour, question, position, list)
    kind_weights: tuple[float, float, float, float] = (0.4, 0.2, 0.15, 0.25)


# ------------------------------------------------------------------------------------------ scenes
def _red_rgb(rng: np.random.Generator, settings: CorpusSettings) -> Callable[[Sequence[int]], tuple[int, int, int]]:
    """A shade of red, drawn once and applied to any object's own colour: a translucent red over
    it (probability ``p_tint``), else a plain red."""
    tint = rng.random() < settings.p_tint
    if tint:
        red = np.array([rng.integers(210, 256), rng.integers(0, 31), rng.integers(0, 61)], dtype=np.float64)
        alpha = float(rng.uniform(*settings.tint_alpha))
    else:
        red = np.array([rng.integers(150, 256), rng.integers(0, 51), rng.integers(0, 61)], dtype=np.float64)
        alpha = 1.0

    def over(under: Sequence[int]) -> tuple[int, int, int]:
        rgb = (1.0 - alpha) * np.asarray(under, dtype=np.float64) + alpha * red
        return tuple(int(v) for v in np.clip(np.rint(rgb), 0, 255))

    return over


def sample_pair_scene(rng: np.random.Generator, settings: CorpusSettings, n_objects: int,
                      variant: int) -> tuple[Scene, tuple[int, ...]]:
    """Variant ``variant`` (0 or 1) of a pair of scenes, and the pair's focal objects.

    Both variants are drawn from the same ``rng`` state, so they share layout, shapes and
    colours. With probability ``p_red_scene`` the pair has two focal objects ``(a, b)``: in variant
    0 ``a`` is red, in variant 1 ``b`` is, in the same shade (a one-object scene: red in variant 0,
    its own colour in variant 1). A caption about a focal object then says "red" in one variant and
    the object's own colour in the other: what is red in the image decides the word, not whether
    something red is present.
    """
    twins = 0
    if n_objects >= 3 and rng.random() < settings.p_twins:
        twins = int(rng.integers(1, 3))
    scene = sample_scene(rng, settings.image_size, n_objects, twins=min(twins, n_objects - 1))
    if rng.random() >= settings.p_red_scene:
        return scene, ()
    focal = tuple(int(j) for j in rng.choice(n_objects, size=min(2, n_objects), replace=False))
    shade = _red_rgb(rng, settings)
    if variant >= len(focal):
        return scene, focal
    objs = list(scene.objects)
    i = focal[variant]
    objs[i] = replace(objs[i], colour=RED, rgb=shade(objs[i].rgb))
    return Scene(scene.image_size, scene.background, tuple(objs)), focal


# ----------------------------------------------------------------------------------- descriptions
def unique_descriptions(scene: Scene, i: int, *, colour: bool, position: bool) -> list[str]:
    """Descriptions (``"the small circle on the left"``) that pick object ``i`` alone.

    ``colour``: whether the description may name the object's colour (it must not when the colour
    is what the caption then states); ``position``: whether it may use a position. Without the
    colour, the descriptions do not depend on any object's colour (so both variants of a pair get
    the same). Red objects, which synthref's palette lacks, are resolved the same way."""
    obj = scene.objects[i]
    if colour and obj.colour in PALETTE:
        return valid_expressions(scene, i, "any" if position else "attributes")
    out = []
    for size in (None, obj.size):
        for col in ((None, obj.colour) if colour else (None,)):
            plain = ExprParts(obj.shape, size, col)
            if resolve_expression(scene, plain) == [i]:
                out.append(expression_text(plain))
            for pos in POSITIONS if position else ():
                if resolve_expression(scene, replace(plain, position=pos)) == [i]:
                    out.append(expression_text(replace(plain, position=pos)))
                    out.append(expression_text(replace(plain, position=pos, position_first=True)))
    return out


def caption_part(scene: Scene, rng: np.random.Generator, settings: CorpusSettings, focal: Sequence[int] = ()) -> str:
    """One description of the scene (a statement, a question and its answer, or a list); a colour
    statement or question is about one of the ``focal`` objects with probability ``p_ask_focal``."""
    kind = CAPTION_KINDS[int(rng.choice(len(CAPTION_KINDS), p=np.asarray(settings.kind_weights) / sum(settings.kind_weights)))]
    n = len(scene.objects)
    order = [int(i) for i in rng.permutation(n)]
    ask_focal = rng.random() < settings.p_ask_focal
    if kind in ("colour", "question") and focal and ask_focal:
        first = int(focal[int(rng.integers(len(focal)))])
        order = [first] + [i for i in order if i != first]
    if kind in ("colour", "question"):
        for i in order:
            exprs = unique_descriptions(scene, i, colour=False, position=True)
            if exprs:
                e = exprs[int(rng.integers(len(exprs)))]
                c = scene.objects[i].colour
                return f"{e} is {c}" if kind == "colour" else f"what color is {e} ? {c}"
    elif kind == "position":
        for i in order:
            where = sides(scene.objects[i], scene.image_size)
            exprs = unique_descriptions(scene, i, colour=True, position=False)
            if where and exprs:
                e = exprs[int(rng.integers(len(exprs)))]
                return f"{e} is {POSITION_PHRASES[where[int(rng.integers(len(where)))]]}"
    k = int(rng.integers(1, min(2, n) + 1))
    return " and ".join(object_phrase(scene.objects[i], scene.image_size) for i in sorted(order[:k]))


def caption(scene: Scene, rng: np.random.Generator, settings: CorpusSettings, focal: Sequence[int] = ()) -> str:
    """A caption of 1 to ``max_parts`` sentences about the scene (at most ``max_words`` words)."""
    parts = [caption_part(scene, rng, settings, focal) for _ in range(int(rng.integers(1, settings.max_parts + 1)))]
    while len(parts) > 1 and len(" . ".join(parts).split()) + 2 > settings.max_words:
        parts.pop()
    return " . ".join(parts) + " ."


def sample_item(seed: int, index: int, settings: CorpusSettings, n_objects: int,
                stream: str = "pretrain") -> tuple[np.ndarray, list[str], Scene]:
    """Image (uint8 HxWx3), captions and scene of corpus item ``index`` of ``stream``.

    Items ``2p`` and ``2p + 1`` are the two variants of pair ``p`` (:func:`sample_pair_scene`;
    give both the same ``n_objects``). Their captions come from one generator too, so a colour
    statement about a focal object reads the same in both but for its colour word.
    """
    pair, variant = divmod(index, 2)
    scene, focal = sample_pair_scene(scene_rng(seed, stream, pair), settings, n_objects, variant)
    rng = scene_rng(seed, stream + "/captions", pair)
    caps = [caption(scene, rng, settings, focal) for _ in range(settings.captions_per_image)]
    return render_scene(scene), caps, scene
