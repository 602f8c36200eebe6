"""The registered CPT methods: ``cpt-blk`` (paint boxes) and ``cpt-seg`` (paint segmentation masks).

Options: :class:`~cptbench.cpt.config.CptConfig`. Prediction: every expression's candidates are
painted group by group (:mod:`.painting`), each painted copy is paired with the expression's prompt
(:mod:`.prompts`), the adapter's masked-LM logits at ``[MASK]`` are read and scored
(:mod:`.score_rules`). How those passes are ordered, batched and sent to the model, through the
device pipeline or the reference path, is :mod:`.passes`.

Few-shot: :mod:`.training` tunes all weights of the adapter's model in place; the weights live for
the run only (option ``save_weights`` writes them to ``context.artifacts_dir``). The IoU rule that
decides a positive training pass is the task's (``context.metric``).

Numerics follow the run's device policy (:mod:`cptbench.methods.numerics`): ``context.precision``
for every forward (evaluation and training), ``context.eval_batch_size`` (or ``auto``) for
evaluation batches, halved on out-of-memory. The ``precision`` option is what the harness resolves
into ``context.precision``.

Tests and dry runs can inject an adapter through ``context.adapter`` or
:meth:`CptMethod.with_adapter`; otherwise ``cptbench.models.loading.load_adapter(context.model,
context.device)`` is called on first use.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np

from cptbench.data.examples import Example, TrainExample
from cptbench.methods.base import ConfigError, Method, MethodContext
from cptbench.methods.numerics import BatchSizer, precision_context, run_batches
from cptbench.models.loading import MASKED_LM_TYPES
from cptbench.cpt.config import CptConfig
from cptbench.cpt.painting import Painter, parse_palette
from cptbench.cpt.passes import (autobatch_key_of, device_batches, device_pipeline, has_device_path, prefetch_images,
                                 probe_passes, reference_batches, schedule_passes, training_caches, write_scores)
from cptbench.cpt.prompts import Prompt, PromptBuilder, answer_word_ids, template_text
from cptbench.cpt.score_rules import resolve_rule
from cptbench.cpt.training import NONE_WORD, TrainResult, TrainSettings, save_weights, train_prompt

DEFAULT_CACHE_SIZE = 64


class CptMethod(Method):
    """Colorful prompt tuning; subclasses fix the painting mode."""

    Config: ClassVar[type] = CptConfig
    needs_model: ClassVar[bool] = True
    model_types: ClassVar[tuple[str, ...] | None] = MASKED_LM_TYPES
    trains: ClassVar[bool] = True
    mode: ClassVar[str] = "block"

    def __init__(self, config: CptConfig, context: MethodContext):
        super().__init__(config, context)
        self.palette = parse_palette(config.palette)
        if config.save_weights and context.artifacts_dir is None:
            raise ConfigError(f"method {self.name or type(self).__name__!r}: save_weights needs an artifacts directory")
        self._adapter = None
        self._ready = False
        self._trained = False
        self.train_result: TrainResult | None = None
        self._counters = _new_counters()
        self._train_truncated: set[str] = set()
        self._pipeline = None
        self._sizer: BatchSizer | None = None  # evaluation batches (made by setup, on the model's device)

    @classmethod
    def with_adapter(cls, adapter: Any, config: CptConfig | None = None, context: MethodContext | None = None) -> "CptMethod":
        """An instance that uses ``adapter`` instead of loading ``context.model``."""
        method = cls(config or CptConfig(), context or MethodContext())
        method._adapter = adapter
        return method

    # -- setup -----------------------------------------------------------------------------------
    @property
    def adapter(self):
        """The backbone adapter: the injected one (:meth:`with_adapter`, ``context.adapter``), else
        ``context.model`` loaded on ``context.device`` at first use."""
        if self._adapter is None:
            if self.context.adapter is not None:
                self._adapter = self.context.adapter
            else:
                if not self.context.model:
                    raise ConfigError(f"method {self.name or 'cpt'!r} needs a model (--model), e.g. dandelin/vilt-b32-mlm")
                from cptbench.models.loading import load_adapter

                self._adapter = load_adapter(self.context.model, self.context.device)
        return self._adapter

    def setup(self) -> None:
        """Load the adapter and check the vocabulary (colour words and ``none`` single tokens)."""
        if self._ready:
            return
        adapter = self.adapter
        words = list(self.palette.words) + [NONE_WORD]
        ids = answer_word_ids(adapter, words)  # raises ModelVocabularyError early
        self._word_ids = dict(zip(words, ids))
        self._columns = ids  # gathered logit columns: palette words in order, then "none"
        self.prompts = PromptBuilder(adapter, self.config.template, self.config.category_segment)
        self.painter = Painter(self.palette, self.config.alpha, self.mode, adapter.prepare_image, cache_size=DEFAULT_CACHE_SIZE,
                               box_pixels=self.config.box_pixels)
        wants_device = self.config.pipeline == "device"  # else the reference path
        self._pipeline = device_pipeline(adapter, self.painter, self._device(), self.precision_name,
                                         self.name or "cpt") if wants_device else None
        self._sizer = BatchSizer(self.context.eval_batch_size, self._device())
        self._main_cache: dict[str, Prompt] = {}
        self._ready = True

    # -- paths and numerics -----------------------------------------------------------------------
    def _device(self) -> str:
        """Where the model's weights are (the context's device before the model is loaded)."""
        if self._adapter is not None:
            try:
                return str(self._adapter.device)
            except (StopIteration, AttributeError, TypeError):  # a stand-in adapter without parameters
                pass
        return str(self.context.device or "cpu")

    @property
    def pipeline_name(self) -> str:
        """The path painted copies take: ``device`` or ``reference`` (records name it)."""
        if self._ready:
            return "device" if self._pipeline is not None else "reference"
        if self.config.pipeline == "reference":
            return "reference"
        adapter = self._adapter if self._adapter is not None else self.context.adapter
        # a model loaded by name is a Hugging Face adapter: setup refuses what the device path cannot do
        return "device" if adapter is None or has_device_path(adapter) else "reference"

    @property
    def precision_name(self) -> str:
        """The forward's numerics, the run's policy: ``bf16`` (autocast) or ``fp32`` (records name it)."""
        return self.context.precision

    def _eval_batch_size(self, examples: Sequence[Example], items) -> int:
        """The batch size of prediction under the run's policy (:class:`BatchSizer`): the context's
        size, or with ``auto`` the largest batch the device holds, probed with the first image's
        processed size (a call without passes leaves the probe to the next one)."""
        pipe = self._pipeline
        if pipe is None or not items:
            return self._sizer.size()
        first = examples[items[0][0]]
        hw = pipe._entry(first).out_hw
        return self._sizer.size(lambda: autobatch_key_of(pipe, hw), lambda n: probe_passes(
            self.adapter, pipe, self._main(first.expression).text, hw, n, self._columns))

    # -- passes ----------------------------------------------------------------------------------
    def _main(self, expression: str) -> Prompt:
        main = self._main_cache.get(expression)
        if main is None:
            main = self._main_cache[expression] = self.prompts.main(expression)
        return main

    def _prompt(self, example: Example, group: int) -> Prompt:
        main = self._main(example.expression)
        if not self.config.category_segment:
            return main
        members = self.painter.groups(example)[group]
        painted = {i: self.palette.words[j] for j, i in enumerate(members)}
        return self.prompts.with_segment(main, example.categories, painted)

    def _text(self, example: Example, group: int) -> str:
        return self._prompt(example, group).text

    def _logits(self, pairs: Sequence[tuple[Example, int]], texts: Sequence[str]):
        """Full-vocabulary logits at [MASK] for these passes (training; gradients when enabled)."""
        if self._pipeline is not None:
            return self._pipeline.logits(pairs, texts)
        adapter = self.adapter
        images = adapter.collate([self.painter.prepared(ex, g) for ex, g in pairs])
        with precision_context(self._device(), self.precision_name):
            return adapter.mask_logits(images, list(texts))

    # -- Method API ------------------------------------------------------------------------------
    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Prompt-tune the model's weights in place on the k training expressions (:mod:`.training`);
        nothing for zero-shot or ``steps=0``. A method instance fits at most once."""
        if not train or self.config.steps == 0:
            return
        if self._trained:
            raise RuntimeError("this CPT instance has already been prompt-tuned; create a new method for each run "
                               "(the weights must start from the pre-trained model)")
        self.setup()
        examples = [te.example for te in train]
        texts = {}

        def forward(units):
            pairs = [(examples[u.example_index], u.group) for u in units]
            for ex, g in pairs:
                if (ex.example_id, g) not in texts:
                    texts[(ex.example_id, g)] = self._text(ex, g)
            return self._logits(pairs, [texts[(ex.example_id, g)] for ex, g in pairs])

        settings = TrainSettings(
            steps=self.config.steps, lr=float(self.config.lr), batch_size=self.config.batch_size,
            weight_decay=float(self.config.weight_decay), warmup=float(self.config.warmup),
            micro_batch=self.context.micro_batch, positives=self.config.positives,
            no_positive=self.config.no_positive, seed_policy=self.config.seed_policy, metric=self.context.metric)
        model = self.adapter.model
        with training_caches(self._pipeline, self.painter, examples):
            try:
                self.train_result = train_prompt(model, train, self.palette, forward, self._word_ids.__getitem__,
                                                 settings, seed=seed, model_seed=self.config.model_seed,
                                                 progress=self.context.progress)
            finally:
                model.eval()
        self._trained = self.train_result.steps > 0
        self._train_truncated = {te.example.example_id for te in train if self._main(te.example.expression).expression_truncated}
        if self.config.save_weights:
            save_weights(self.adapter, self.context.artifacts_dir / "cpt-weights")

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """One score per candidate of each example, from the logits at ``[MASK]`` of every pass in
        :func:`~cptbench.cpt.passes.schedule_passes` order; counts what it did for
        :meth:`take_counters`."""
        import torch

        self.setup()
        rule = self.score_rule
        n_colours = len(self.palette)
        scores = [np.full(ex.n_candidates, -np.inf, dtype=np.float64) for ex in examples]
        items = schedule_passes(examples, n_colours)
        total = len(items)
        model = self.adapter.model
        model.eval()
        self.context.progress("predict", 0, total)
        prefetch_images(examples[i] for i, _ in items)
        pipe = self._pipeline
        counters = self._counters
        # category segments cut, per pass: counted when its row is finished (an out-of-memory retry
        # builds a batch again); only a prompt with a segment can have one cut
        segment_cut: dict[tuple[int, int], bool] | None = {} if self.config.category_segment else None

        def prompts_of(chunk):
            prompts = [self._prompt(examples[i], g) for i, g in chunk]
            if segment_cut is not None:
                segment_cut.update(zip(chunk, (p.segment_truncated for p in prompts)))
            return [p.text for p in prompts]

        if pipe is not None:
            build, forward = device_batches(pipe, examples, self._columns, prompts_of)
        else:
            build, forward = reference_batches(self.adapter, self.painter, examples, self._columns, prompts_of)

        def finish(chunk, logits):
            if pipe is not None:
                pipe.count_batch(len(chunk))
            if segment_cut is not None:
                counters["truncated_category_segments"] += sum(segment_cut.pop(item) for item in chunk)
            write_scores(scores, examples, chunk, logits, n_colours, rule)

        batch_size = self._eval_batch_size(examples, items)
        with torch.no_grad():
            run_batches(items, batch_size, build, forward, finish, device=self._device(), precision=self.precision_name,
                        on_batch_size=self._sizer.on_oom, progress=lambda done: self.context.progress("predict", done, total))
        c = self._counters
        c["expressions"] += len(examples)
        c["passes"] += total
        c["truncated_expressions"] += sum(self._main(ex.expression).expression_truncated for ex in examples if ex.n_candidates)
        if self.mode == "mask":
            c["mask_fallbacks"] += sum(self.painter.fallback_count(ex) for ex in examples)
        return scores

    def take_counters(self) -> dict[str, Any]:
        """Counts since the last call (expressions, passes, truncated expressions and category
        segments; mask fallbacks for ``cpt-seg``), restarting them at zero."""
        out, self._counters = self._counters, _new_counters()
        if self.mode != "mask":
            out.pop("mask_fallbacks")
        return out

    def sync_fitted(self, dist) -> None:
        """Data-parallel evaluation: every rank scores with rank 0's tuned weights."""
        if self._trained:
            dist.broadcast_module(self.adapter.model)

    def perf_info(self) -> dict[str, Any]:
        """Pipeline, precision, the evaluation batch size used, and the path's cache counts
        (empty before setup)."""
        if not self._ready:
            return {}
        out: dict[str, Any] = {"pipeline": self.pipeline_name, "precision": self.precision_name}
        if self._sizer.used is not None:
            out["eval_batch_size"] = self._sizer.used
        if self._pipeline is not None:
            return {**out, **self._pipeline.stats}
        cache = self.painter.prepared_cache
        return {**out, "painted_copies": self.painter.images_painted, "prepared_cache_hits": cache.hits,
                "prepared_cache_misses": cache.misses}

    @property
    def score_rule(self) -> str:
        """The score rule in force: the ``score`` option, an ``auto*`` rule resolved by whether the
        model was tuned."""
        return resolve_rule(self.config.score, self._trained)

    def describe(self) -> dict[str, Any]:
        """What the config and the fit decided (per-split counts: :meth:`take_counters`)."""
        mask = self._adapter.mask_token if self._adapter is not None else "[MASK]"
        tr = self.train_result
        out: dict[str, Any] = {
            "mode": self.mode,
            "template": self.config.template,
            "template_text": template_text(self.config.template, mask),
            "palette": self.palette.describe(),
            "alpha": float(self.config.alpha),
            "score_rule": self.score_rule,
            "category_segment": self.config.category_segment,
            "pipeline": self.pipeline_name,
            "precision": self.precision_name,
            "train_steps": tr.steps if tr else 0,
            "train_final_loss": tr.final_loss if tr else None,
            "train_first_loss": tr.losses[0] if tr and tr.losses else None,
            "train_passes": tr.passes if tr else 0,
            "train_positive_passes": tr.positives if tr else 0,
            "train_negative_passes": tr.negatives if tr else 0,
            "train_expressions_without_positive": tr.expressions_without_positive if tr else 0,
            "train_batch_size": tr.batch_size if tr else 0,
            "train_truncated_expressions": len(self._train_truncated),
            "train_single_positive": tr.single_positive if tr else False,
            "train_seed_entropy": list(tr.seed_entropy) if tr else [],
            "seed_policy": self.config.seed_policy,
            "box_pixels": self.config.box_pixels,
            "positives": self.config.positives,
            "no_positive": self.config.no_positive,
            "iou": self.context.metric.describe(),
        }
        return out


def _new_counters() -> dict[str, int]:
    return {"expressions": 0, "passes": 0, "truncated_expressions": 0, "truncated_category_segments": 0,
            "mask_fallbacks": 0}


class CptBlockMethod(CptMethod):
    """CPT-Blk: candidates painted as filled boxes."""

    mode: ClassVar[str] = "block"


class CptSegMethod(CptMethod):
    """CPT-Seg: candidates painted over their segmentation masks (box when a candidate has none)."""

    mode: ClassVar[str] = "mask"
