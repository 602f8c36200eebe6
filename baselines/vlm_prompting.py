"""Visual prompts for generative vision-language models: ``vlm-colour`` (CPT's colours, asked as a
question) and ``vlm-mark`` (Set-of-Mark's numbered marks).

For each expression, the candidates are chunked in order into groups (``vlm-colour``: ``len(palette)``
colours, as CPT; ``vlm-mark``: ``marks_per_image``, all by default, as Set-of-Mark); each group gives
one drawn copy of the image (:mod:`cptbench_baselines.vlm_regions`) and one prompt: the copy and the
question template with the expression filled in, in the model's chat format. Each candidate of the
group is scored by the log-likelihood the model gives its answer (its colour word, or its number)
followed by the end-of-turn token: the sum over the answer's tokens (``score=sum``) or their mean
(``score=mean``). Nothing is generated or parsed: the answers are constrained to the candidates. The
harness takes the arg-max over all of an expression's candidates, across groups as CPT does.

Batching and the cache (:mod:`cptbench.models.gen_scoring`): a batch of prompts goes through the
model once with its key-value cache kept; every candidate answer then continues its prompt from
that cache (one more forward for all answers of the batch), so the image and the question are
computed once per copy, not once per candidate. ``kv_cache=false`` scores each candidate with its
own full forward instead (the brute force; same numbers within float tolerance, tested). Batches
follow the run's device policy: ``context.precision`` (autocast), ``context.eval_batch_size``
prompts per batch or ``auto`` (:class:`~cptbench.methods.numerics.BatchSizer`), halved on
out-of-memory (:func:`~cptbench.methods.numerics.run_batches`).

Few-shot (the harness's k-shot draws and seeds, as for CPT and ft). A training expression is used
when one of its candidates hits the ground truth under the task's rule; its answer is the
candidate of highest IoU, asked on the copy that holds it (others are counted and skipped).

* ``fewshot=icl`` (default): the training expressions become earlier turns of the conversation
  (their copies, questions and answers, in the draw's order; at most ``icl_examples``). Per prompt,
  the most leading turns that fit the context are shown and the rest cut (counted per prompt as
  ``icl_turns_shown`` / ``icl_turns_cut``). No weight changes.
* ``fewshot=lora``: LoRA adapters on the language model trained on them (:mod:`.vlm_lora`, needs
  peft), then zero-shot prompts.
* ``fewshot=none``: zero-shot prompts at every k (a control).

Zero-shot (k = 0) is the plain prompt in every mode. The model is loaded with
:func:`cptbench.models.generative.load_generative` (``--model``: a LLaVA-1.5 or Qwen2-VL folder or
hub id); tests inject a ready adapter as ``context.adapter``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cptbench.methods import MethodContext

from .vlm_config import ColourConfig, MarkConfig
from .vlm_method import VlmPromptMethod
from .vlm_regions import draw_marks, paint_colours, parse_palette

__all__ = ["VlmColourMethod", "VlmMarkMethod", "VlmPromptMethod"]


class VlmColourMethod(VlmPromptMethod):
    """``vlm-colour``: CPT's translucent colours; the answer is a candidate's colour word."""

    Config = ColourConfig
    answer_kind = "colour word"

    def __init__(self, config: ColourConfig, context: MethodContext):
        super().__init__(config, context)
        self.palette = parse_palette(config.palette)

    def group_size(self) -> int:
        """``len(palette)`` candidates per copy, as CPT."""
        return len(self.palette)

    def answers(self, n: int) -> list[str]:
        """The palette's first ``n`` colour words."""
        return list(self.palette.words[:n])

    def draw(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Box ``j`` blended with palette colour ``j``."""
        return paint_colours(image, boxes, self.palette.rgb[:len(boxes)], self.config.alpha)

    def scheme(self) -> str:
        """Palette and alpha."""
        return f"colour|{self.palette.describe()}|{self.config.alpha!r}"

    def drawing(self) -> dict[str, Any]:
        """Palette, alpha and CPT's box rule."""
        return {"palette": self.palette.describe(), "alpha": self.config.alpha, "box_pixels": "release",
                "group_size": len(self.palette)}


class VlmMarkMethod(VlmPromptMethod):
    """``vlm-mark``: Set-of-Mark's numbered marks; the answer is a candidate's number."""

    Config = MarkConfig
    answer_kind = "number"

    def group_size(self) -> int:
        """``marks_per_image`` candidates per copy (0 = all)."""
        return self.config.marks_per_image

    def answers(self, n: int) -> list[str]:
        """``1 .. n``."""
        return [str(i + 1) for i in range(n)]

    def draw(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Mark ``j + 1`` on box ``j``."""
        cfg = self.config
        return draw_marks(image, boxes, range(1, len(boxes) + 1), position=cfg.mark_position, outline=cfg.outline,
                          scale=cfg.mark_scale)

    def scheme(self) -> str:
        """Mark position, outline and scale."""
        cfg = self.config
        return f"mark|{cfg.mark_position}|{cfg.outline}|{cfg.mark_scale}"

    def drawing(self) -> dict[str, Any]:
        """The mark settings."""
        cfg = self.config
        return {"marks_per_image": cfg.marks_per_image or "all", "mark_position": cfg.mark_position,
                "outline": cfg.outline, "mark_scale": cfg.mark_scale or "auto", "box_pixels": "release"}

