"""The common machinery of ``vlm-colour`` and ``vlm-mark`` (:class:`VlmPromptMethod`): drawn copies,
prompts, the cached answer scoring under the device policy, few-shot by in-context turns or LoRA,
records. :mod:`cptbench_baselines.vlm_prompting` describes the methods."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Sequence

import numpy as np

from cptbench.data.examples import Example, TrainExample
from cptbench.data.images import LRUCache
from cptbench.methods import Method, MethodContext
from cptbench.methods.numerics import BatchSizer, precision_context, run_batches
from cptbench.models.gen_loading import GENERATIVE_FAMILIES

from .vlm_config import VlmConfig
from .vlm_prompts import ask, fit_prompt
from .vlm_regions import candidate_groups

_COUNTERS = ("prompts", "answers_scored", "icl_turns_shown", "icl_turns_cut", "truncated_expressions")


class VlmPromptMethod(Method):
    """Common code of ``vlm-colour`` and ``vlm-mark``; subclasses say how a group is drawn and answered."""

    Config: ClassVar[type] = VlmConfig
    needs_model = True
    #: the generative families with an adapter: a run refuses another model type before any fit
    model_types: ClassVar[tuple[str, ...] | None] = tuple(GENERATIVE_FAMILIES)
    trains = True
    #: prepared drawn copies kept, per (image, candidates, group)
    image_cache_size: ClassVar[int] = 64
    #: what an answer names, for records
    answer_kind: ClassVar[str] = ""

    def __init__(self, config: VlmConfig, context: MethodContext):
        super().__init__(config, context)
        self._adapter = None
        self._lora = None
        self._turns: list = []
        self._sizer = BatchSizer(context.eval_batch_size, context.device)
        self._copies = LRUCache(self.image_cache_size)
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._info: dict[str, Any] = {}
        #: training loss per optimizer step of the last LoRA fit
        self.losses: list[float] = []

    # -- what a subclass draws ---------------------------------------------------------------------
    def group_size(self) -> int:
        """Candidates per drawn copy (0 = all)."""
        raise NotImplementedError

    def answers(self, n: int) -> list[str]:
        """The answers of a group of ``n`` candidates, in candidate order."""
        raise NotImplementedError

    def draw(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """A drawn copy of ``image`` for a group's ``boxes``."""
        raise NotImplementedError

    def scheme(self) -> str:
        """What decides a drawn copy besides the image and the boxes (part of the cache key)."""
        raise NotImplementedError

    # -- backbone ----------------------------------------------------------------------------------
    def _backbone(self):
        if self._adapter is None:
            if self.context.adapter is not None:
                self._adapter = self.context.adapter
            else:
                if not self.context.model:
                    raise ValueError(f"method {self.name!r} needs a generative model (--model: a LLaVA-1.5 or Qwen2-VL "
                                     f"folder or hub id)")
                from cptbench.models.gen_loading import load_generative

                self._adapter = load_generative(self.context.model, self.context.device)
            self._adapter.model.eval()
            self._sizer = BatchSizer(self.context.eval_batch_size, self._adapter.device)
        return self._adapter

    def _pretrained(self):
        """The backbone without adapters of an earlier LoRA fit (its weights were never changed)."""
        adapter = self._backbone()
        if self._lora is not None:
            from .vlm_lora import detach

            detach(self._lora)
            self._lora = None
            adapter.model.eval()
        return adapter

    # -- copies and prompts ------------------------------------------------------------------------
    def groups(self, example: Example) -> list[range]:
        """The candidate ranges of ``example``'s drawn copies."""
        return candidate_groups(example.n_candidates, self.group_size())

    def _copy(self, adapter, example: Example, group: range):
        boxes = np.asarray(example.boxes, dtype=np.float64).reshape(-1, 4)
        key = (example.image_key, example.candidate_key, hashlib.sha1(boxes.tobytes()).hexdigest(), group.start,
               group.stop, self.scheme())

        def make():
            image = example.image()
            w, h = example.image_size
            if (w, h) != (0, 0) and image.shape[:2] != (h, w):
                raise ValueError(f"image {example.image_key}: image is {image.shape[1]}x{image.shape[0]} but example "
                                 f"{example.example_id} says {w}x{h}; boxes would not line up with the pixels")
            return adapter.prepare_image(self.draw(image, boxes[group.start:group.stop]))

        return self._copies.get_or_create(key, make)

    def _budget(self, adapter) -> int:
        return int(self.config.max_context or adapter.max_context)

    def _prompt(self, adapter, example: Example, group: range, context: Sequence) -> tuple[Any, list]:
        answers = [adapter.answer_ids(a) for a in self.answers(len(group))]
        fitted = fit_prompt(adapter, context, self._copy(adapter, example, group), self.config.question,
                            example.expression, self._budget(adapter), max(len(a) for a in answers))
        return fitted, answers

    # -- fit ---------------------------------------------------------------------------------------
    def _targets(self, train: Sequence[TrainExample]) -> list[tuple[Example, int]]:
        metric = self.context.metric
        out, missed = [], 0
        for t in train:
            if not isinstance(t, TrainExample):
                raise TypeError(f"fit expects TrainExample objects, got {type(t).__name__}")
            ex = t.example
            ious = metric.ious(ex.boxes, t.label.box) if ex.n_candidates else np.zeros(0)
            if not ex.n_candidates or not np.any(metric.hits(ious)):
                missed += 1
                continue
            out.append((ex, int(np.argmax(ious))))
        self._info["skipped_no_hit"] = missed
        return out

    def _target_turn(self, adapter, example: Example, target: int):
        from cptbench.models.generative import Turn

        group = next(g for g in self.groups(example) if target in g)
        return group, Turn(self._copy(adapter, example, group), ask(self.config.question, example.expression),
                           self.answers(len(group))[target - group.start])

    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Zero-shot (k = 0, ``fewshot=none``), in-context turns (``icl``) or LoRA adapters (``lora``)."""
        cfg = self.config
        self._info = {"k": len(train), "seed": int(seed)}
        self._turns, self.losses = [], []
        if cfg.fewshot == "lora" and train:
            from .vlm_lora import require_peft

            require_peft()
        adapter = self._pretrained()
        targets = self._targets(train) if cfg.fewshot != "none" else []
        self._info["train_expressions"] = len(targets)
        if cfg.fewshot == "icl":
            limit = cfg.icl_examples or len(targets)
            self._turns = [self._target_turn(adapter, ex, t)[1] for ex, t in targets[:limit]]
            self._info["icl_turns"] = len(self._turns)
        elif cfg.fewshot == "lora" and targets:
            self._fit_lora(adapter, targets, len(train), seed)

    def _fit_lora(self, adapter, targets, k: int, seed: int) -> None:
        from .vlm_lora import TrainItem, attach, train

        items, cut = [], 0
        for ex, t in targets:
            group, turn = self._target_turn(adapter, ex, t)
            answer = adapter.answer_ids(turn.answer)
            fitted = fit_prompt(adapter, [], turn.image, self.config.question, ex.expression, self._budget(adapter),
                                len(answer))
            cut += int(fitted.truncated)
            items.append(TrainItem(fitted.prompt, answer))
        self._lora = attach(adapter.model, self.config)
        stage = f"{self.name or 'vlm'} fit"
        self.losses, facts = train(adapter, items, self.config, k, seed, self.context.precision,
                                   lambda done, total: self.context.progress(stage, done, total))
        self._info.update(facts, lora="trained", train_truncated_expressions=cut)
        if self.losses:
            self._info.update(loss_first=self.losses[0], loss_last=self.losses[-1])

    # -- predict -----------------------------------------------------------------------------------
    def _score(self, adapter, built) -> Any:
        import torch

        from cptbench.models.gen_scoring import answer_loglik, reference_loglik

        prompts, answers = [b[0].prompt for b in built], [b[1] for b in built]
        if self.config.kv_cache:
            loglik, counts = answer_loglik(adapter, prompts, answers)
        else:
            width = max(len(a) for a in answers)
            loglik = torch.full((len(prompts), width), float("nan"), device=adapter.device)
            counts = torch.zeros((len(prompts), width), device=adapter.device)
            for p, (prompt, ids) in enumerate(zip(prompts, answers)):
                loglik[p, :len(ids)] = torch.tensor(reference_loglik(adapter, prompt, ids))
                counts[p, :len(ids)] = torch.tensor([float(len(a)) for a in ids])
        if self.config.score == "mean":
            loglik = loglik / counts.clamp(min=1)
        return loglik

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """One score per candidate: its answer's log-likelihood (module doc)."""
        import torch

        adapter = self._backbone()
        adapter.model.eval()
        out = [np.full(ex.n_candidates, np.nan, dtype=np.float64) for ex in examples]
        jobs = [(i, g) for i, ex in enumerate(examples) for g in self.groups(ex)]

        def build(chunk):
            built = []
            for i, g in chunk:
                fitted, answers = self._prompt(adapter, examples[i], g, self._turns)
                built.append((fitted, answers))
                self._counts["prompts"] += 1
                self._counts["answers_scored"] += len(answers)
                self._counts["icl_turns_shown"] += fitted.shown
                self._counts["icl_turns_cut"] += fitted.cut
                self._counts["truncated_expressions"] += int(fitted.truncated)
            return built

        def finish(chunk, scores):
            for row, (i, g) in enumerate(chunk):
                out[i][g.start:g.stop] = scores[row, :len(g)]

        with torch.no_grad():
            size = self._sizer.size(*self._auto_probe(adapter, examples, jobs))
            run_batches(jobs, size, build, lambda built: self._score(adapter, built), finish, device=adapter.device,
                        precision=self.context.precision, on_batch_size=self._sizer.on_oom)
        return out

    def _auto_probe(self, adapter, examples, jobs):
        """(key, probe) for ``--batch-size auto``: ``n`` copies of the call's largest group."""
        if not jobs:
            return None, None
        i, g = max(jobs, key=lambda j: (len(j[1]), examples[j[0]].image_size, len(examples[j[0]].expression)))

        def key() -> str:
            from cptbench.methods.numerics import autobatch_key

            w, h = examples[i].image_size
            return autobatch_key(adapter.model_name, adapter.device, f"{h}x{w}/{len(g)}/icl{len(self._turns)}",
                                 self.context.precision, self.name or "vlm")

        def probe(n: int) -> None:
            built = [self._prompt(adapter, examples[i], g, self._turns)] * n
            with precision_context(adapter.device, self.context.precision):
                self._score(adapter, built)

        return key, probe

    # -- records -----------------------------------------------------------------------------------
    def take_counters(self) -> dict[str, Any]:
        """Per-prompt counts since the last call (prompts, answers, in-context turns shown and cut,
        expressions cut to fit)."""
        out = dict(self._counts)
        self._counts = dict.fromkeys(_COUNTERS, 0)
        return out

    def describe(self) -> dict[str, Any]:
        """What the config and the fit decided."""
        cfg = self.config
        adapter = self._adapter
        return {
            **self._info,
            "family": getattr(adapter, "family", None),
            "question": cfg.question,
            "answer": f"the candidate's {self.answer_kind} then the end-of-turn token",
            "score": f"{cfg.score} of the answer tokens' log-likelihood",
            "kv_cache": cfg.kv_cache,
            "fewshot": cfg.fewshot,
            "max_context": self._budget(adapter) if adapter is not None else cfg.max_context,
            "precision": self.context.precision,
            **({"lora_r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_targets": list(cfg.targets),
                "seed_policy": cfg.seed_policy, "model_seed": cfg.model_seed} if cfg.fewshot == "lora" else {}),
            **self.drawing(),
        }

    def drawing(self) -> dict[str, Any]:
        """The drawing settings for records."""
        return {}

    def perf_info(self) -> dict[str, Any]:
        """Batch size used, drawn-copy cache hits, answer tokenisations that fell back."""
        out = {"precision": self.context.precision, "copy_cache_hits": self._copies.hits,
               "copy_cache_misses": self._copies.misses}
        if self._adapter is not None:
            out["answer_tokenisation_fallbacks"] = self._adapter.answer_fallbacks
        if self._sizer.used is not None:
            out["eval_batch_size"] = self._sizer.used
        return out

    def sync_fitted(self, dist) -> None:
        """Data-parallel evaluation: every rank scores with rank 0's adapters (in-context turns are
        deterministic)."""
        if self._lora is not None and self._adapter is not None:
            dist.broadcast_module(self._adapter.model)
