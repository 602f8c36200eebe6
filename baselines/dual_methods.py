"""Visual prompts on dual encoders: each candidate region is shown to a CLIP or BLIP model as its
own image, marked one way or another, and scored against the expression.

* ``clip-crop``: the region cropped (ReCLIP's ``crop``), text "a photo of <q>";
* ``clip-blur``: everything but the region blurred (ReCLIP's ``blur``), same text;
* ``reclip``: both, their logits summed per candidate (ReCLIP's default ``crop,blur`` with
  ``--box_method_aggregator sum``), i.e. ReCLIP's isolated proposal scoring. ReCLIP's spatial-relation
  resolver (a dependency parse into noun chunks, heuristic relations and superlatives) and its
  ensemble of two CLIP models (RN50x16 + ViT-B/32) are left out: one ``--model`` scores;
* ``clip-circle``: a red ellipse around the region on the whole image (Red Circle), same text;
* ``clip-cpt``: CPT's translucent red block over the region on the whole image, text
  "<q> is in red color." (ReCLIP's CPT-adapted baseline).

``<q>`` is the expression stripped and lower-cased (as ReCLIP does), cut word by word from the end
when the text would exceed the model's length (counted in ``truncated_expressions``). Each prompt
image is stretched to the model's square input (``square``, ReCLIP's default) before the model's
processor; the prompts and their published defaults: :mod:`cptbench_baselines.visual_prompts`.

Scores: per candidate the logit ``sum over prompts of logit_scale * cosine(image, text)`` (ITC;
``score=itm``: the sum of BLIP's matching log-odds), after the few-shot head
(:mod:`cptbench_baselines.dual_head`), returned as log-softmax over the candidates (ReCLIP's
softmax over proposals, in logs; the ranking is the logits'). The model stays frozen; zero-shot is
``fit([])``. Embeddings are cached by the exact pixels of each prompt image and by the exact text
(:mod:`cptbench_baselines.dual_encode`), so the prompts of an image's candidates, shared by all its
expressions, are encoded once per method object; hits and misses are in ``perf_info()``.

The backbone is ``load_dual_encoder(context.model, context.device)`` (``clip`` or ``blip`` by
the config's model type), or ``context.adapter`` when one is injected (tests).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from cptbench.data.examples import Example, TrainExample
from cptbench.data.images import LRUCache
from cptbench.methods import Method, MethodContext
from cptbench.models.dual_encoder import DUAL_ENCODERS

from cptbench_baselines.dual_config import BlurConfig, CircleConfig, CptShadeConfig, CropConfig, ReclipConfig
from cptbench_baselines.dual_head import Head, fit_head, log_softmax
from cptbench_baselines.visual_prompts import (blur_outside, crop, ellipse_outline, gaussian_blur, parse_rgb,
                                               scale_box, shade, to_model_input)


class DualPromptMethod(Method):
    """Common code of the visual-prompt methods; ``prompts`` names the prompt images per candidate."""

    needs_model = True
    model_types = tuple(DUAL_ENCODERS)
    trains = True
    #: the prompt images of each candidate: crop | blur | circle | shade
    prompts: ClassVar[tuple[str, ...]] = ()
    #: what the method leaves out of its published original (for records)
    left_out: ClassVar[str] = ""

    def __init__(self, config, context: MethodContext):
        super().__init__(config, context)
        from cptbench.models.dual_encoder import EmbeddingCache

        self.cache = EmbeddingCache()
        self._adapter = None
        self._encoder = None
        self._head: Head | None = None
        self._images = LRUCache(8)  # per image: blurred full image, or the image at the model's size
        self._texts: dict[str, tuple[str, bool]] = {}
        self._counts = {"prompt_images": 0, "truncated_expressions": 0}
        self._info: dict[str, Any] = {"head_trained": False}

    # -- backbone ---------------------------------------------------------------------------------
    def _backbone(self):
        if self._adapter is None:
            adapter = self.context.adapter
            if adapter is None:
                if not self.context.model:
                    raise ValueError(f"method {self.name!r} needs a model (--model: a CLIP or BLIP retrieval checkpoint)")
                from cptbench.models.dual_encoder import load_dual_encoder

                adapter = load_dual_encoder(self.context.model, self.context.device)
            model = getattr(adapter, "model", None)
            if model is not None:
                model.eval()
                for p in model.parameters():
                    p.requires_grad_(False)
            if self.config.score == "itm" and not getattr(adapter, "has_match_head", False):
                raise ValueError(f"method {self.name!r}: score=itm needs a model with an image-text matching head "
                                 f"(BLIP); model {getattr(adapter, 'model_name', '?')!r} "
                                 f"({getattr(adapter, 'family', '?')}) has none. Use score=itc.")
            from cptbench_baselines.dual_encode import PromptEncoder

            self._adapter = adapter
            self._encoder = PromptEncoder(adapter, self.context, self.cache, self.name or type(self).__name__)
        return self._adapter

    # -- texts ------------------------------------------------------------------------------------
    def _text(self, expression: str) -> tuple[str, bool]:
        """(the model text of an expression, whether the expression was cut to fit)."""
        known = self._texts.get(expression)
        if known is not None:
            return known
        adapter = self._backbone()
        words = str(expression).strip().lower().split()
        template = self.config.template
        cut = False
        while adapter.count_tokens(template.format(q=" ".join(words))) > adapter.max_text_length:
            if not words:
                raise ValueError(f"method {self.name!r}: the template {template!r} alone exceeds the "
                                 f"{adapter.max_text_length}-token limit of model {adapter.model_name!r}")
            words.pop()
            cut = True
        out = (template.format(q=" ".join(words)), cut)
        if len(self._texts) < 100_000:
            self._texts[expression] = out
        return out

    # -- prompt images ----------------------------------------------------------------------------
    def _image_at_model_size(self, example: Example, image: np.ndarray) -> np.ndarray:
        side = int(self._adapter.image_size)
        key = ("model-size", example.image_key, side, self.config.square)
        return self._images.get_or_create(key, lambda: to_model_input(image, side, self.config.square))

    def prompt_images(self, example: Example, prompt: str) -> list[np.ndarray]:
        """One prompt image per candidate of ``example`` (at the model's input size)."""
        cfg = self.config
        adapter = self._backbone()
        side, square = int(adapter.image_size), cfg.square
        image = example.image()
        boxes = np.asarray(example.boxes, dtype=np.float64).reshape(-1, 4)
        if prompt == "crop":
            return [to_model_input(crop(image, b, cfg.box_padding), side, square) for b in boxes]
        if prompt == "blur":
            blurred = self._images.get_or_create(("blur", example.image_key, cfg.blur_radius),
                                                 lambda: gaussian_blur(image, cfg.blur_radius))
            return [to_model_input(blur_outside(image, b, cfg.blur_radius, cfg.box_padding, blurred), side, square)
                    for b in boxes]
        if prompt == "circle":
            base = self._image_at_model_size(example, image)
            rgb = parse_rgb(cfg.ellipse_color)
            return [ellipse_outline(base, scale_box(b, image.shape[:2], base.shape[:2]), rgb, cfg.ellipse_thickness)
                    for b in boxes]
        if prompt == "shade":
            rgb = parse_rgb(cfg.shade_color)
            return [to_model_input(shade(image, b, rgb, cfg.shade_alpha, cfg.box_pixels), side, square) for b in boxes]
        raise ValueError(f"unknown prompt {prompt!r}")

    # -- features ---------------------------------------------------------------------------------
    def _w0(self) -> np.ndarray:
        adapter = self._backbone()
        if self.config.score == "itm":
            return np.ones(len(self.prompts))
        dim = self._dim
        return np.full(dim * len(self.prompts), float(adapter.logit_scale))

    def features(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """Per example the candidates' similarity features (N, P) (:mod:`cptbench_baselines.dual_head`)."""
        self._backbone()
        enc = self._encoder
        itm = self.config.score == "itm"
        wanted = []
        for ex in examples:
            if ex.n_candidates == 0:
                wanted.append(None)
                continue
            text, cut = self._text(ex.expression)
            self._counts["truncated_expressions"] += int(cut)
            per_prompt = []
            for prompt in self.prompts:
                images = self.prompt_images(ex, prompt)
                self._counts["prompt_images"] += len(images)
                if itm:
                    per_prompt.append([enc.want_match(a, text) for a in images])
                else:
                    per_prompt.append(([enc.want_image(a) for a in images], enc.want_text(text)))
            wanted.append(per_prompt)
        enc.flush()
        out = []
        for ex, per_prompt in zip(examples, wanted):
            if per_prompt is None:
                out.append(np.zeros((0, len(self._w0())), dtype=np.float64))
                continue
            if itm:
                cols = [np.array([enc.match(k) for k in keys], dtype=np.float64) for keys in per_prompt]
                out.append(np.stack(cols, axis=1))
            else:
                blocks = [np.stack([enc.image(k) for k in keys]).astype(np.float64) * enc.text(tk).astype(np.float64)
                          for keys, tk in per_prompt]
                self._dim = blocks[0].shape[1]
                out.append(np.concatenate(blocks, axis=1))
        enc.end_call()
        return out

    _dim = 0

    # -- fit / predict ----------------------------------------------------------------------------
    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Fit the head on the training expressions (zero-shot for an empty set)."""
        cfg = self.config
        metric = self.context.metric
        self._backbone()
        items, few, no_hit = [], 0, 0
        for t in train:
            if not isinstance(t, TrainExample):
                raise TypeError(f"fit expects TrainExample objects, got {type(t).__name__}")
            ex = t.example
            if ex.n_candidates < 2:
                few += 1
                continue
            ious = np.asarray(metric.ious(ex.boxes, t.label.box), dtype=np.float64)
            hits = np.asarray(metric.hits(ious), dtype=bool)
            if not hits.any():
                no_hit += 1
                continue
            items.append((ex, int(np.argmax(np.where(hits, ious, -np.inf)))))
        feats = self.features([ex for ex, _ in items]) if items else []
        if not self._dim and cfg.score == "itc":
            self._dim = self._probe_dim()
        self._head, facts = fit_head(cfg.head, feats, [i for _, i in items], self._w0(), cfg.l2, cfg.iterations)
        self._info = {"head_trained": self._head.trained, "k": len(train), "train_expressions": len(items),
                      "skipped_fewer_than_two_candidates": few, "skipped_no_hit": no_hit, "seed": int(seed), **facts}

    def _probe_dim(self) -> int:
        """The embedding size (one text encoded: the template with an empty expression)."""
        enc = self._encoder
        key = enc.want_text(self._text("")[0])
        enc.flush()
        dim = int(enc.text(key).shape[0])
        enc.end_call()
        return dim

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """Log-softmax over each example's candidates of the head's logits."""
        if self._head is None:
            self.fit([], 0)
        feats = self.features(examples)
        return [log_softmax(self._head.logits(f)) if len(f) else np.zeros(0, dtype=np.float64) for f in feats]

    # -- records ----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The prompts, their options, the text, the combination and the head's fit."""
        cfg = self.config
        adapter = self._adapter
        out = {
            "prompts": list(self.prompts), "template": cfg.template, **cfg.prompt_params(), "square": cfg.square,
            "score": cfg.score, "head": cfg.head, "l2": cfg.l2,
            "combination": ("sum over prompts of " + ("logit_scale * cosine (ITC)" if cfg.score == "itc"
                                                        else "the ITM log-odds") + ", log-softmax over candidates"),
            "precision": self.context.precision, **self._info,
        }
        if cfg.head == "temperature":
            out["note"] = "a learned temperature changes no ranking: accuracy equals zero-shot at every k"
        if adapter is not None:
            out.update(family=getattr(adapter, "family", "?"), logit_scale=round(float(adapter.logit_scale), 6))
        if self.left_out:
            out["left_out"] = self.left_out
        return out

    def take_counters(self) -> dict[str, Any]:
        """Prompt images made and expressions cut to fit, since the last call."""
        out = dict(self._counts)
        self._counts = {k: 0 for k in out}
        return out

    def perf_info(self) -> dict[str, Any]:
        """Embedding-cache hits and misses, what was encoded, the batch size, the precision."""
        out = self._encoder.stats() if self._encoder is not None else {}
        return {**out, "precision": self.context.precision}


class ClipCropMethod(DualPromptMethod):
    """``clip-crop``: each candidate cropped (ReCLIP's crop representation)."""

    Config = CropConfig
    prompts = ("crop",)


class ClipBlurMethod(DualPromptMethod):
    """``clip-blur``: everything but each candidate blurred (ReCLIP's blur representation)."""

    Config = BlurConfig
    prompts = ("blur",)


class ReclipMethod(DualPromptMethod):
    """``reclip``: crop and blur, logits summed (ReCLIP's isolated proposal scoring)."""

    Config = ReclipConfig
    prompts = ("crop", "blur")
    left_out = ("ReCLIP's spatial-relation resolver (parser, relations, superlatives) and its two-model CLIP "
                "ensemble: this is its isolated proposal scoring with one model")


class ClipCircleMethod(DualPromptMethod):
    """``clip-circle``: a red ellipse around each candidate (Red Circle)."""

    Config = CircleConfig
    prompts = ("circle",)
    left_out = ("Red Circle's prompt ensemble (blur and grayscale outside the circle) and its score "
                "subtraction over a caption bank: this is the circle alone")


class ClipCptMethod(DualPromptMethod):
    """``clip-cpt``: CPT's red block over each candidate, "<q> is in red color." (CPT-adapted)."""

    Config = CptShadeConfig
    prompts = ("shade",)
