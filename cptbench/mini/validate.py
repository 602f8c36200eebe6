"""The bundled model's own validation set: zero-shot CPT and colour binding on fresh scenes.

Every choice behind the bundled model (caption wording, steps, masking, learning rate, template)
is made on this set, never on synthref's evaluation splits. Its scenes and expressions are drawn
like synthref's (3-8 objects, look-alike groups, the three target policies: ``any``, ``position``
with a look-alike in the scene, ``attributes`` only) but from their own stream
(``scene_rng(seed, "pretrain-val", i)``), so they are neither benchmark nor pretraining scenes.

For each example the candidates are painted with CPT's translucent red ((240, 0, 30), alpha
127/255), over their box (``block``) or their shape (``mask``), and the model reads the prompt of
each template at ``[MASK]``. Measures (:func:`evaluate`):

* ``cpt[mode][template]``: accuracy of the zero-shot CPT rule (arg-max of the "red" logit);
* ``gain_target`` / ``gain_other``: how much the paint raises the "red" logit over the unpainted
  image when it covers the target / another candidate; ``binding_gain`` is their difference, the
  direct measure of whether the model ties the paint to the described object;
* ``red_top_target`` / ``red_top_other``: how often "red" is the top colour word when the paint
  covers the target / another candidate (the paint read as red on the described object);
* ``colour``: on the unpainted image, is the target's true colour the arg-max over the colour words
  for a colour-free description of it (``"the small circle at the top is [MASK] ."``);
* ``chance``: the expected accuracy of a random pick (mean of 1/N).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cptbench.data.scenes import Scene, sample_scene, scene_rng
from cptbench.data.scene_render import object_mask, render_scene
from cptbench.data.scene_expressions import needs_position, valid_expressions

RED_PAINT = (240, 0, 30)
ALPHA = 127 / 255
STREAM = "pretrain-val"
POLICIES = ("any", "position", "attributes")
MODES = ("block", "mask")


@dataclass(frozen=True)
class ValExample:
    """A validation scene of the model's own stream, a target, its expression and how it was drawn."""

    scene: Scene
    target: int
    expression: str
    policy: str
    description: str | None  # a colour-free description of the target, for the colour probe

    @property
    def n(self) -> int:
        """The number of objects (candidates) in the scene."""
        return len(self.scene.objects)


def validation_set(n: int = 240, seed: int = 0, image_size: int = 64, min_objects: int = 3,
                   max_objects: int = 8) -> list[ValExample]:
    """``n`` examples, policies in turn (any, position, attributes), synthref's target rules."""
    from cptbench.mini.corpus import unique_descriptions

    out: list[ValExample] = []
    i = 0
    while len(out) < n:
        rng = scene_rng(seed, STREAM, i)
        policy = POLICIES[len(out) % len(POLICIES)]
        i += 1
        k = int(rng.integers(min_objects, max_objects + 1))
        p_twins = 1.0 if policy == "position" else 0.5
        twins = int(rng.integers(1, min(2, k - 1) + 1)) if rng.random() < p_twins else 0
        scene = sample_scene(rng, image_size, k, twins=twins)
        options: dict[int, list[str]] = {}
        for t in range(k):
            if policy == "position":
                opts = valid_expressions(scene, t, "position") if needs_position(scene, t) else []
            else:
                opts = valid_expressions(scene, t, "attributes" if policy == "attributes" else "any")
            if opts:
                options[t] = opts
        if not options:
            continue
        targets = sorted(options)
        t = targets[int(rng.integers(len(targets)))]
        expr = options[t][int(rng.integers(len(options[t])))]
        desc = unique_descriptions(scene, t, colour=False, position=True)
        out.append(ValExample(scene, t, expr, policy, desc[int(rng.integers(len(desc)))] if desc else None))
    return out


def _regions(ex: ValExample, mode: str) -> np.ndarray:
    from cptbench.cpt.painting import box_masks

    size = ex.scene.image_size
    if mode == "mask":
        return np.stack([object_mask(o, size) for o in ex.scene.objects])
    return box_masks(np.array([o.xyxy for o in ex.scene.objects]), size, size)


def _forward(adapter, images: list[Any], texts: list[str], columns: list[int], batch_size: int) -> np.ndarray:
    import torch

    rows = []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            batch = adapter.collate(images[s:s + batch_size])
            logits = adapter.mask_logits(batch, texts[s:s + batch_size])
            rows.append(logits[:, columns].float().cpu().numpy())
    return np.concatenate(rows) if rows else np.zeros((0, len(columns)))


def evaluate(adapter, examples: Sequence[ValExample], templates: Sequence[int] = (1, 2, 3),
             modes: Sequence[str] = MODES, batch_size: int = 64) -> dict[str, Any]:
    """Zero-shot CPT, paint gains and colour probe of ``adapter`` on ``examples`` (module doc)."""
    from cptbench.cpt.painting import paint
    from cptbench.cpt.prompts import clean_expression, fill_template
    from cptbench.mini.corpus import COLOUR_WORDS, RED

    mask = adapter.mask_token
    columns = [adapter.word_id(w) for w in COLOUR_WORDS]
    red_col = COLOUR_WORDS.index(RED)
    images: list[Any] = []
    texts: list[str] = []
    index: list[tuple] = []  # (example, mode or None, candidate or -1, template or "probe")
    for e, ex in enumerate(examples):
        base = render_scene(ex.scene)
        plain = adapter.prepare_image(base)
        q = clean_expression(ex.expression)
        for t in templates:
            images.append(plain)
            texts.append(fill_template(t, q, mask))
            index.append((e, None, -1, t))
        if ex.description is not None:
            images.append(plain)
            texts.append(f"{ex.description} is {mask} .")
            index.append((e, None, -1, "probe"))
        for mode in modes:
            regions = _regions(ex, mode)
            for c in range(ex.n):
                painted = adapter.prepare_image(paint(base, regions[c:c + 1], [RED_PAINT], ALPHA))
                for t in templates:
                    images.append(painted)
                    texts.append(fill_template(t, q, mask))
                    index.append((e, mode, c, t))
    logits = _forward(adapter, images, texts, columns, batch_size)

    plain_red: dict[tuple, float] = {}
    probe: dict[int, int] = {}
    red: dict[tuple, dict[int, float]] = {}
    red_top: dict[tuple, dict[int, bool]] = {}
    for (e, mode, c, t), row in zip(index, logits):
        if t == "probe":
            probe[e] = int(np.argmax(row))
        elif mode is None:
            plain_red[(e, t)] = float(row[red_col])
        else:
            red.setdefault((e, mode, t), {})[c] = float(row[red_col])
            red_top.setdefault((e, mode, t), {})[c] = int(np.argmax(row)) == red_col

    out: dict[str, Any] = {"examples": len(examples), "chance": float(np.mean([1.0 / ex.n for ex in examples])),
                           "cpt": {}, "gain_target": {}, "gain_other": {}, "binding_gain": {}, "red_top_target": {},
                           "red_top_other": {}, "by_policy": {},
                           "by_colour_word": {}}
    for mode in modes:
        for t in templates:
            key = f"{mode}/t{t}"
            hits, g_t, g_o, top_t, top_o = [], [], [], [], []
            pol: dict[str, list[bool]] = {}
            colw: dict[str, list[bool]] = {"with colour": [], "without colour": []}
            for e, ex in enumerate(examples):
                r = red[(e, mode, t)]
                scores = np.array([r[c] for c in range(ex.n)])
                hit = int(np.argmax(scores)) == ex.target
                hits.append(hit)
                pol.setdefault(ex.policy, []).append(hit)
                has_colour = any(w in COLOUR_WORDS for w in ex.expression.split())
                colw["with colour" if has_colour else "without colour"].append(hit)
                gains = scores - plain_red[(e, t)]
                g_t.append(gains[ex.target])
                g_o.append(float(np.delete(gains, ex.target).mean()))
                tops = red_top[(e, mode, t)]
                top_t.append(tops[ex.target])
                top_o.append(float(np.mean([tops[c] for c in range(ex.n) if c != ex.target])))
            out["cpt"][key] = float(np.mean(hits))
            out["gain_target"][key] = float(np.mean(g_t))
            out["gain_other"][key] = float(np.mean(g_o))
            out["binding_gain"][key] = float(np.mean(g_t) - np.mean(g_o))
            out["red_top_target"][key] = float(np.mean(top_t))
            out["red_top_other"][key] = float(np.mean(top_o))
            out["by_policy"][key] = {k: float(np.mean(v)) for k, v in pol.items()}
            out["by_colour_word"][key] = {k: (float(np.mean(v)) if v else None) for k, v in colw.items()}
    out["colour"] = float(np.mean([COLOUR_WORDS[probe[e]] == examples[e].scene.objects[examples[e].target].colour
                                   for e in probe])) if probe else float("nan")
    out["colour_chance"] = 1.0 / (len(COLOUR_WORDS) - 1)  # the benchmark's scenes hold no red
    return out


def summary_line(r: dict[str, Any]) -> str:
    """One line of the headline numbers (for logs)."""
    parts = [f"colour {r['colour']:.3f}", f"chance {r['chance']:.3f}"]
    for key in r["cpt"]:
        parts.append(f"{key} {r['cpt'][key]:.3f} (bind {r['binding_gain'][key]:+.2f}, "
                     f"red@1 {r['red_top_target'][key]:.2f}/{r['red_top_other'][key]:.2f})")
    return "; ".join(parts)
