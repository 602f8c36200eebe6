"""The pretraining corpus of the bundled model: scenes like synthref's, with captions.

Images come from their own scene stream (``scene_rng(seed, "pretrain", i)``), never the
benchmark's. Captions describe the scene in words, the way COCO captions describe COCO images:

* statements that bind a colour to an object described by shape, size and position:
  ``"the big circle on the left is blue"``;
* questions and answers: ``"what color is the small square at the top ? green"``;
* object lists: ``"a small blue circle on the left and a big gray square"``.

No boxes, no region labels, and never the CPT template (``"... is in [MASK] color"``): grounding is
not taught directly. Colour words appear because objects have those colours.

Red objects exist in these images (the benchmark's palette avoids red so that CPT's paint stays
distinguishable): they come in varied shades of red, half of them a translucent red laid over
another colour (alpha 0.35-0.8), so "red" covers reddish tints. This colour augmentation is the
one thing here chosen with CPT's paint in mind; it is stated in the model card.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..data.scenes import (COLOURS, PALETTE, SHAPES, SIZES, POSITIONS, Scene, object_phrase, render_scene,
                           sample_scene, scene_rng, valid_expressions)

RED = "red"
CAPTION_WORDS = ("is", "what", "color", "?", ".", RED)
# words the model must also know as single tokens for CPT's templates and scoring
PROMPT_WORDS = ("in", "none", "color", "is", ".")


def vocabulary() -> list[str]:
    words = {"the", "a", "and", "on", "at", *SHAPES, *COLOURS, *SIZES, *POSITIONS, *CAPTION_WORDS, *PROMPT_WORDS}
    return sorted(words)


@dataclass(frozen=True)
class CorpusSettings:
    image_size: int = 64
    min_objects: int = 2
    max_objects: int = 8
    p_single: float = 0.25  # share of one-object scenes (colour is learnt first where it is unambiguous)
    p_red: float = 0.2  # chance an object is made red
    p_tint: float = 0.5  # chance a red object is a translucent red over another colour
    statements: int = 2  # caption parts per image (1..statements)


def _redden(obj, rng: np.random.Generator, p_tint: float):
    red = np.array([rng.integers(190, 256), rng.integers(0, 50), rng.integers(0, 60)], dtype=np.float64)
    if rng.random() < p_tint:
        base = np.asarray(PALETTE[COLOURS[rng.integers(len(COLOURS))]], dtype=np.float64)
        alpha = rng.uniform(0.35, 0.8)
        red = (1 - alpha) * base + alpha * red
    return replace(obj, colour=RED, rgb=tuple(int(round(v)) for v in red))


def sample_item(seed: int, index: int, settings: CorpusSettings, n_objects: int | None = None,
                stream: str = "pretrain") -> tuple[np.ndarray, str]:
    """Image (uint8 HxWx3) and caption of corpus item ``index``."""
    rng = scene_rng(seed, stream, index)
    n = n_objects or (1 if rng.random() < settings.p_single else
                      int(rng.integers(settings.min_objects, settings.max_objects + 1)))
    scene = sample_scene(rng, settings.image_size, n, twins=int(rng.random() < 0.3 and n > 2))
    objs = [(_redden(o, rng, settings.p_tint) if rng.random() < settings.p_red else o) for o in scene.objects]
    scene = Scene(scene.image_size, scene.background, tuple(objs))
    return render_scene(scene), caption(scene, rng, settings)


def colour_free_expressions(scene: Scene, i: int) -> list[str]:
    """Expressions that identify object ``i`` uniquely without naming its colour."""
    colour = scene.objects[i].colour
    return [e for e in valid_expressions(scene, i) if colour not in e.split()]


def caption(scene: Scene, rng: np.random.Generator, settings: CorpusSettings) -> str:
    parts = []
    order = rng.permutation(len(scene.objects))
    for i in order[: int(rng.integers(1, settings.statements + 1))]:
        i = int(i)
        obj = scene.objects[i]
        exprs = colour_free_expressions(scene, i)
        kind = rng.random()
        if exprs and kind < 0.55:
            parts.append(f"{exprs[rng.integers(len(exprs))]} is {obj.colour}")
        elif exprs and kind < 0.8:
            parts.append(f"what color is {exprs[rng.integers(len(exprs))]} ? {obj.colour}")
        else:
            parts.append(object_phrase(obj, scene.image_size))
    return " . ".join(parts)
