"""The registered CPT methods: ``cpt-blk`` (paint boxes) and ``cpt-seg`` (paint segmentation masks).

Prediction: every expression's candidates are painted group by group (:mod:`.painting`), each
painted copy is paired with the expression's prompt (:mod:`.prompts`), the adapter's masked-LM
logits at ``[MASK]`` are read and scored (:mod:`.scoring`). Passes of all expressions are sorted by
(image, candidate set, group) so a painted copy is prepared once and reused by every expression of
its image, then run in batches of ``context.eval_batch_size``.

Few-shot: :mod:`.training` tunes all weights of the adapter's model in place; the weights live for
the run only (option ``save_weights`` writes them to ``context.artifacts_dir``). The IoU rule that
decides a positive training pass comes from ``context.extra`` (``iou_convention``,
``iou_threshold``, ``iou_rule``; default the release's ``inclusive``, ``0.5``, ``gt``).

Tests and dry runs can inject an adapter through ``context.extra["adapter"]`` or
:meth:`CptMethod.with_adapter`; otherwise ``cptbench.models.loading.load_adapter(context.model,
context.device)`` is called on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..examples import Example, TrainExample
from ..methods.base import ConfigError, Method, MethodContext
from ..models.base import ModelVocabularyError
from .painting import DEFAULT_ALPHA, Painter, n_groups, parse_palette
from .prompts import TEMPLATES, Prompt, PromptBuilder, template_text
from .scoring import SCORE_RULES, resolve_rule, score_candidates
from .training import NONE_WORD, TrainResult, TrainSettings, train_prompt

DEFAULT_CACHE_SIZE = 64


@dataclass(frozen=True)
class CptConfig:
    """Options of ``cpt-blk`` / ``cpt-seg`` (``--option key=value``)."""

    template: int = 3
    palette: str = "red"
    alpha: float = DEFAULT_ALPHA
    score: str = "auto"
    steps: int = 500
    lr: float = 3e-5
    batch_size: int = 0  # 0: k training expressions, capped at 16
    weight_decay: float = 0.01
    warmup: float = 0.1
    model_seed: int = 88
    save_weights: bool = False
    category_segment: bool = False

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise ValueError(message)

        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

        need(is_int(self.template) and self.template in TEMPLATES,
             f"template must be one of {sorted(TEMPLATES)} (1: '<q> is [MASK].', 2: '<q> is [MASK] color.', "
             f"3: '<q> is in [MASK] color.'), got {self.template!r}")
        parse_palette(self.palette)  # raises a ValueError naming the choices
        need(is_num(self.alpha) and 0.0 < float(self.alpha) <= 1.0, f"alpha must be in (0, 1], got {self.alpha!r}")
        need(self.score in SCORE_RULES, f"score must be one of {', '.join(SCORE_RULES)}, got {self.score!r}")
        need(is_int(self.steps) and self.steps >= 0, f"steps must be an integer >= 0, got {self.steps!r}")
        need(is_num(self.lr) and float(self.lr) > 0, f"lr must be > 0, got {self.lr!r}")
        need(is_int(self.batch_size) and self.batch_size >= 0,
             f"batch_size must be an integer >= 0 (0 = k, capped at 16), got {self.batch_size!r}")
        need(is_num(self.weight_decay) and float(self.weight_decay) >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        need(is_num(self.warmup) and 0.0 <= float(self.warmup) <= 1.0, f"warmup must be a fraction in [0, 1], got {self.warmup!r}")
        need(is_int(self.model_seed), f"model_seed must be an integer, got {self.model_seed!r}")
        need(isinstance(self.save_weights, bool), f"save_weights must be true or false, got {self.save_weights!r}")
        need(isinstance(self.category_segment, bool), f"category_segment must be true or false, got {self.category_segment!r}")


class CptMethod(Method):
    """Colorful prompt tuning; subclasses fix the painting mode."""

    Config: ClassVar[type] = CptConfig
    needs_model: ClassVar[bool] = True
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

    @classmethod
    def with_adapter(cls, adapter: Any, config: CptConfig | None = None, context: MethodContext | None = None) -> "CptMethod":
        """An instance that uses ``adapter`` instead of loading ``context.model``."""
        method = cls(config or CptConfig(), context or MethodContext())
        method._adapter = adapter
        return method

    # -- setup -----------------------------------------------------------------------------------
    @property
    def adapter(self):
        if self._adapter is None:
            injected = self.context.extra.get("adapter") if self.context.extra else None
            if injected is not None:
                self._adapter = injected
            else:
                if not self.context.model:
                    raise ConfigError(f"method {self.name or 'cpt'!r} needs a model (--model), e.g. dandelin/vilt-b32-mlm")
                from ..models.loading import load_adapter

                self._adapter = load_adapter(self.context.model, self.context.device)
        return self._adapter

    def setup(self) -> None:
        """Load the adapter and check the vocabulary (colour words and ``none`` single tokens)."""
        if self._ready:
            return
        adapter = self.adapter
        words = list(self.palette.words) + [NONE_WORD]
        ids = [adapter.word_id(w) for w in words]  # raises ModelVocabularyError early
        unk = getattr(adapter.tokenizer, "unk_token_id", None)
        for word, i in zip(words, ids):
            if unk is not None and i == unk:
                raise ModelVocabularyError(
                    f"the word {word!r} is not in the vocabulary of model {getattr(adapter, 'model_name', '?')!r} "
                    f"(it maps to the unknown token); choose another palette word or another model")
        if len(set(ids)) != len(ids):
            raise ModelVocabularyError(f"palette words and 'none' must be distinct tokens, got ids {dict(zip(words, ids))}")
        self._word_ids = dict(zip(words, ids))
        self._columns = ids  # gathered logit columns: palette words in order, then "none"
        self.prompts = PromptBuilder(adapter, self.config.template, self.config.category_segment)
        cache_size = int((self.context.extra or {}).get("cpt_cache_size", DEFAULT_CACHE_SIZE))
        self.painter = Painter(self.palette, self.config.alpha, self.mode, adapter.prepare_image, cache_size=cache_size)
        self._main_cache: dict[str, Prompt] = {}
        self._ready = True

    def _iou_settings(self) -> dict[str, Any]:
        extra = self.context.extra or {}
        return {"iou_convention": str(extra.get("iou_convention", "inclusive")),
                "iou_threshold": float(extra.get("iou_threshold", 0.5)),
                "iou_rule": str(extra.get("iou_rule", "gt"))}

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
        adapter = self.adapter
        images = adapter.collate([self.painter.prepared(ex, g) for ex, g in pairs])
        return adapter.mask_logits(images, list(texts))

    # -- Method API ------------------------------------------------------------------------------
    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
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
            micro_batch=max(1, int(self.context.eval_batch_size)), **self._iou_settings())
        model = self.adapter.model
        self.train_result = train_prompt(model, train, self.palette, forward, self._word_ids.__getitem__, settings,
                                         seed=seed, model_seed=self.config.model_seed, progress=self.context.progress)
        model.eval()
        self._trained = self.train_result.steps > 0
        self._train_truncated = {te.example.example_id for te in train if self._main(te.example.expression).expression_truncated}
        if self.config.save_weights:
            self._save_weights()

    def _save_weights(self) -> None:
        out = self.context.artifacts_dir / "cpt-weights"
        out.mkdir(parents=True, exist_ok=True)
        model = self.adapter.model
        if hasattr(model, "save_pretrained"):
            model.save_pretrained(out)
        else:
            import torch

            torch.save(model.state_dict(), out / "model.pt")
        tokenizer = getattr(self.adapter, "tokenizer", None)
        if hasattr(tokenizer, "save_pretrained"):
            tokenizer.save_pretrained(out)

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        import torch

        self.setup()
        rule = self.score_rule
        scores = [np.full(ex.n_candidates, -np.inf, dtype=np.float64) for ex in examples]
        items = [(i, g) for i, ex in enumerate(examples) for g in range(n_groups(ex.n_candidates, len(self.palette)))]
        # one painted copy serves every expression of its image: run those passes back to back
        items.sort(key=lambda t: (examples[t[0]].image_key, examples[t[0]].candidate_key, t[1], t[0]))
        total, done = len(items), 0
        batch_size = max(1, int(self.context.eval_batch_size))
        model = self.adapter.model
        model.eval()
        self.context.progress("predict", 0, total)
        with torch.no_grad():
            for start in range(0, total, batch_size):
                chunk = items[start: start + batch_size]
                pairs = [(examples[i], g) for i, g in chunk]
                prompts = [self._prompt(ex, g) for ex, g in pairs]
                texts = [p.text for p in prompts]
                self._counters["truncated_category_segments"] += sum(p.segment_truncated for p in prompts)
                logits = self._logits(pairs, texts)[:, self._columns]
                logits = logits.detach().float().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
                for row, (i, g) in enumerate(chunk):
                    members = self.painter.groups(examples[i])[g]
                    scores[i][members.start: members.stop] = score_candidates(
                        logits[row], range(len(members)), len(self.palette), rule)
                done += len(chunk)
                self.context.progress("predict", done, total)
        c = self._counters
        c["expressions"] += len(examples)
        c["passes"] += total
        c["truncated_expressions"] += sum(self._main(ex.expression).expression_truncated for ex in examples if ex.n_candidates)
        if self.mode == "mask":
            c["mask_fallbacks"] += sum(self.painter.fallback_count(ex) for ex in examples)
        return scores

    def take_counters(self) -> dict[str, Any]:
        out, self._counters = self._counters, _new_counters()
        if self.mode != "mask":
            out.pop("mask_fallbacks")
        return out

    def perf_info(self) -> dict[str, Any]:
        if not self._ready:
            return {}
        cache = self.painter.prepared_cache
        return {"painted_copies": self.painter.images_painted, "prepared_cache_hits": cache.hits,
                "prepared_cache_misses": cache.misses}

    @property
    def score_rule(self) -> str:
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
            "train_steps": tr.steps if tr else 0,
            "train_final_loss": tr.final_loss if tr else None,
            "train_first_loss": tr.losses[0] if tr and tr.losses else None,
            "train_passes": tr.passes if tr else 0,
            "train_positive_passes": tr.positives if tr else 0,
            "train_negative_passes": tr.negatives if tr else 0,
            "train_expressions_without_positive": tr.expressions_without_positive if tr else 0,
            "train_batch_size": tr.batch_size if tr else 0,
            "train_truncated_expressions": len(self._train_truncated),
            "iou": self._iou_settings(),
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
