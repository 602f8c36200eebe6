"""Fine-tuning baselines on the CPT backbones: ``ft`` (full fine-tuning, alias ``finetune``) and
``ft-head`` (the linear probe: frozen backbone, trained head).

Input and representation (docs/protocol.md section 4)
---------------------------------------------
The unpainted image and the plain expression (whitespace-normalised, no template; cut to the
model's text limit token-wise when longer, counted in ``describe()``) go through the VL model once
per expression. Each candidate box gets the vector

    [ overlap-pooled final patch states (H) | pooled [CLS] state (H) | box geometry (7) ]

where the pooling weight of a patch is area(patch ∩ box) / area(patch), normalised to sum 1 (a box
covering no patch falls back to the nearest patch(es); see :mod:`cptbench_baselines.region_pool`),
and the geometry is x1/W, y1/H, x2/W, y2/H, w/W, h/H, area/(W*H). An MLP head
``Linear(2H+7, H) - GELU - LayerNorm(H) - Linear(H, 1)`` gives one logit per candidate. The loss is
the softmax cross-entropy over the candidates of an expression toward the candidate with the
highest IoU with the ground truth (``cptbench.core.boxes.iou_matrix`` under the task's IoU convention;
first candidate on ties). Training expressions without candidates, or where no candidate overlaps
the ground truth (IoU 0 for all: no signal), are skipped and counted.

Budget (the same rule as CPT)
-----------------------------
``steps`` optimizer steps (default 500) times ``step_factor`` (default 1; ``step_factor=10`` is the
release's fine-tuning script, which trains for 10 x ``num_train_epochs`` steps, docs/protocol.md
section 7), batch size = k capped at 16 (``batch_size = 0``; never
more than the usable training expressions), AdamW lr 6e-5 (``head_lr``, 0 = same as ``lr``), betas
(0.9, 0.98), eps 1e-8, weight decay 0.01 except biases and LayerNorm, 10 % linear warm-up then
linear decay (:mod:`cptbench.methods.optim`, shared with CPT), no gradient clipping, no dev-set selection:
the last model is evaluated.

Seeds
-----
The head is initialised from a local generator seeded with ``model_seed`` (88, fixed like the
release's model seed): weights N(0, 0.02), biases 0, LayerNorm 1 / 0. Training randomness (batch
order; dropout inside the backbone, run on a forked and restored torch RNG) follows the one policy
of every trained method (:func:`cptbench.methods.optim.training_randomness`): ``seed_policy="release"``
(default) seeds it from ``model_seed`` alone, so runs differ by their training subset (the
harness's k-shot manifest) only; ``"per-run"`` from (``model_seed``, run seed). The same inputs
always give the same model (on CPU). Zero-shot ``fit([])`` leaves the head untrained at that fixed
init, reported as ``"head": "untrained"``.

``ft`` trains every backbone weight (backbone in train mode during ``fit``); ``ft-head`` sets
``requires_grad = False`` on the backbone and keeps it in eval mode. Its candidate representations
are then a pure function of (image, expression, candidate boxes): they are computed under
``no_grad`` and kept in a bounded LRU keyed by exactly that, so the training expressions go through
the backbone once per ``fit`` (not once per step) and a repeated (image, expression) is never
recomputed by the same method object (``fit`` for another seed, or ``predict`` of the same
examples again).

Caches and counters
-------------------
Prepared (unpainted) images are kept per image path in a bounded LRU (``image_cache_size``), and
the model text of each expression (normalised, cut to the limit, with whether it was cut) in
another (``text_cache_size``): training steps and the truncation counts never tokenise it again.
``describe()["train_pooling_fallbacks"]`` counts candidates of the usable training expressions of
the last ``fit`` that took the nearest-patch fallback (each once, however many steps see it);
``take_counters()`` reports, per predicted expression, ``pooling_fallbacks`` and
``truncated_texts`` (the harness sums them per split).

The backbone is loaded lazily with ``cptbench.models.loading.load_adapter(context.model,
context.device)``; tests may inject a ready adapter as ``context.extra["adapter"]`` (``ft`` then
trains it in place). Calling ``fit`` again restarts from the pre-trained weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from cptbench.core.boxes import iou_matrix
from cptbench.data.examples import Example, TrainExample
from cptbench.data.images import LRUCache
from cptbench.methods import Method, MethodContext
from cptbench.methods.optim import (DEFAULT_SEED_POLICY, MAX_BATCH, adamw_with_schedule, batch_order, check_seed_policy,
                            effective_batch_size, parameter_groups, seeded_torch_rng, training_randomness,
                            warmup_steps)

from .candidate_head import candidate_loss, new_head
from .region_pool import box_geometry, overlap_weights, pad_boxes, pool_patches


@dataclass(frozen=True)
class FineTuneConfig:
    steps: int = 500  # optimizer steps
    lr: float = 6e-5
    head_lr: float = 0.0  # 0 = same as lr
    batch_size: int = 0  # 0 = k capped at 16
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of steps
    model_seed: int = 88  # head init; training randomness under seed_policy=release
    save_weights: bool = False  # write head (and ft's backbone) under the run's artifacts dir
    seed_policy: str = DEFAULT_SEED_POLICY  # release: training randomness from model_seed alone; per-run
    step_factor: int = 1  # optimizer steps = steps * step_factor (10: the release's fine-tuning script)

    def __post_init__(self):
        checks = [
            (isinstance(self.steps, int) and self.steps >= 0, f"steps must be an integer >= 0, got {self.steps!r}"),
            (_number(self.lr) and self.lr > 0, f"lr must be > 0, got {self.lr!r}"),
            (_number(self.head_lr) and self.head_lr >= 0, f"head_lr must be >= 0 (0 = same as lr), got {self.head_lr!r}"),
            (isinstance(self.batch_size, int) and self.batch_size >= 0,
             f"batch_size must be an integer >= 0 (0 = k capped at {MAX_BATCH}), got {self.batch_size!r}"),
            (_number(self.weight_decay) and self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay!r}"),
            (_number(self.warmup) and 0 <= self.warmup <= 1, f"warmup must be a fraction in [0, 1], got {self.warmup!r}"),
            (isinstance(self.model_seed, int), f"model_seed must be an integer, got {self.model_seed!r}"),
            (isinstance(self.save_weights, bool), f"save_weights must be true or false, got {self.save_weights!r}"),
            (isinstance(self.step_factor, int) and not isinstance(self.step_factor, bool) and self.step_factor >= 1,
             f"step_factor must be an integer >= 1 (10 = the release's fine-tuning script), got {self.step_factor!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_seed_policy(self.seed_policy)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of a fit: ``steps * step_factor``."""
        return self.steps * self.step_factor


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ----------------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _Item:
    """A training expression as kept after ``fit`` starts: the example and the target index only."""

    example: Example
    target: int


class _Slot:
    """A feature-cache entry, filled after the batch that computes it."""

    __slots__ = ("value", "fallbacks")

    def __init__(self):
        self.value = None
        self.fallbacks = 0


def _feature_key(ex: Example) -> tuple:
    boxes = np.ascontiguousarray(ex.boxes, dtype=np.float64)
    return ex.image_key, " ".join(str(ex.expression).split()), boxes.shape, boxes.tobytes()


def _fit_text(adapter, expression: str) -> tuple[str, bool]:
    """The whitespace-normalised expression cut token-wise to the model's text room, and whether
    it was cut."""
    text = " ".join(str(expression).split())
    room = int(adapter.max_text_length) - int(adapter.num_special_tokens)
    if adapter.count_tokens(text) <= room:
        return text, False
    tokens = adapter.tokenizer.tokenize(text)
    keep = max(room, 0)
    while True:
        cut = adapter.tokenizer.convert_tokens_to_string(tokens[:keep]).strip()
        if keep == 0 or adapter.count_tokens(cut) <= room:
            return cut, True
        keep -= 1


# ------------------------------------------------------------------------------------------ method
class _CandidateScorer(Method):
    """Common code of ``ft`` and ``ft-head``; ``train_backbone`` is the one difference."""

    Config = FineTuneConfig
    needs_model = True
    trains = True
    #: fine-tune the backbone (True) or keep it frozen and train the head only (False)
    train_backbone: ClassVar[bool] = True
    #: prepared (unpainted) images kept per image path
    image_cache_size: ClassVar[int] = 32
    #: ft-head only: candidate representations kept per (image, expression, candidate boxes)
    feature_cache_size: ClassVar[int] = 512
    #: model texts (normalised, cut to the limit) and whether they were cut, per expression
    text_cache_size: ClassVar[int] = 4096

    def __init__(self, config: FineTuneConfig, context: MethodContext):
        super().__init__(config, context)
        if config.save_weights and context.artifacts_dir is None:
            raise ValueError(f"method {self.name or type(self).__name__!r}: save_weights needs an artifacts directory "
                             f"(the harness provides one per run)")
        self._adapter = None
        self._injected = False
        self._snapshot: dict | None = None
        self._dirty = False
        self._images = LRUCache(self.image_cache_size)
        self._features = LRUCache(0 if self.train_backbone else self.feature_cache_size)
        self._texts = LRUCache(self.text_cache_size)
        self._head = None
        self._fallbacks = {"train": 0, "predict": 0}
        self._predicted_cut = 0
        self._perf: dict[str, Any] = {}
        self._info: dict[str, Any] = {"head": "untrained"}
        #: training loss per optimizer step of the last ``fit``
        self.losses: list[float] = []

    # -- backbone ---------------------------------------------------------------------------------
    def _backbone(self):
        if self._adapter is None:
            injected = self.context.extra.get("adapter")
            if injected is not None:
                self._adapter, self._injected = injected, True
            else:
                if not self.context.model:
                    raise ValueError(f"method {self.name!r} needs a model (--model or the task card's default_model)")
                from cptbench.models.loading import load_adapter

                self._adapter = load_adapter(self.context.model, self.context.device)
            if not self.train_backbone:
                for p in self._adapter.model.parameters():
                    p.requires_grad_(False)
            self._adapter.model.eval()
        return self._adapter

    def _pretrained_backbone(self):
        """The backbone with its pre-trained weights (a previous ``fit`` of ``ft`` is undone)."""
        if self._dirty:
            if self._injected:
                self._adapter.model.load_state_dict(self._snapshot)
            else:
                self._adapter = None  # load_adapter returns a fresh model
            self._dirty = False
        adapter = self._backbone()
        if self.train_backbone and self._injected and self._snapshot is None:
            self._snapshot = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
        return adapter

    # -- inputs -----------------------------------------------------------------------------------
    def _image(self, adapter, example: Example):
        def make():
            arr = example.image()
            return adapter.prepare_image(arr), (int(arr.shape[1]), int(arr.shape[0]))

        return self._images.get_or_create(example.image_key, make)

    def _model_text(self, adapter, expression: str) -> tuple[str, bool]:
        """(the text the model sees, whether it was cut), worked out once per expression (cached:
        training steps and the truncation counts read it again)."""
        return self._texts.get_or_create(str(expression), lambda: _fit_text(adapter, expression))

    def _text(self, adapter, expression: str) -> str:
        return self._model_text(adapter, expression)[0]

    def _is_cut(self, adapter, expression: str) -> bool:
        return self._model_text(adapter, expression)[1]

    def _represent(self, adapter, examples: Sequence[Example]):
        """Candidate representations (B, N, 2H+7), their validity (B, N) and which candidates took
        the nearest-patch pooling fallback (B, N) for a batch."""
        import torch

        prepared, sizes = zip(*(self._image(adapter, ex) for ex in examples))
        images = adapter.collate(list(prepared))
        texts = [self._text(adapter, ex.expression) for ex in examples]
        feats = adapter.region_features(images, texts, list(sizes))
        patches = feats.patches.float()
        device = patches.device
        boxes, valid = pad_boxes([ex.boxes for ex in examples], device)
        weights, fallback = overlap_weights(feats.patch_boxes, feats.patch_valid, boxes, valid)
        region = pool_patches(patches, weights)
        cls = feats.pooled.float()[:, None, :].expand(-1, region.shape[1], -1)
        geom = box_geometry(boxes, torch.tensor(sizes, dtype=torch.float32, device=device))
        return torch.cat([region, cls, geom], dim=-1), valid, fallback

    def _frozen(self, adapter, examples: Sequence[Example], stage: str) -> list:
        """ft-head: each example's ``(n_i, 2H+7)`` representation, computed under ``no_grad`` in
        batches of ``eval_batch_size`` and cached per (image, expression, candidate boxes)."""
        import torch

        slots = [self._features.get_or_create(_feature_key(ex), _Slot) for ex in examples]
        todo, seen = [], set()
        for i, slot in enumerate(slots):
            if slot.value is None and id(slot) not in seen:
                seen.add(id(slot))
                todo.append(i)
        bs = max(1, int(self.context.eval_batch_size))
        with torch.no_grad():
            for start in range(0, len(todo), bs):
                chunk = todo[start:start + bs]
                reps, _, fallback = self._represent(adapter, [examples[i] for i in chunk])
                for row, i in enumerate(chunk):
                    n = examples[i].n_candidates
                    slots[i].fallbacks = int(fallback[row, :n].sum())
                    slots[i].value = reps[row, :n].detach().clone()  # not a view: the batch is freed
        self._fallbacks[stage] += sum(slot.fallbacks for slot in slots)
        return [slot.value for slot in slots]

    def _items(self, train: Sequence[TrainExample]) -> list[_Item]:
        convention = self.context.extra.get("iou_convention", "inclusive")
        items, no_candidates, no_overlap = [], 0, 0
        for t in train:
            if not isinstance(t, TrainExample):
                raise TypeError(f"fit expects TrainExample objects, got {type(t).__name__}")
            ex = t.example
            if ex.n_candidates == 0:
                no_candidates += 1
                continue
            ious = iou_matrix(ex.boxes, t.label.box, convention)[:, 0]
            if not ious.max() > 0:
                no_overlap += 1
                continue
            items.append(_Item(ex, int(np.argmax(ious))))
        self._info.update(skipped_no_candidates=no_candidates, skipped_no_overlap=no_overlap)
        return items

    def _batch_size(self, k: int, n_items: int) -> int:
        return max(1, min(effective_batch_size(k, self.config.batch_size), n_items))

    # -- training ---------------------------------------------------------------------------------
    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        cfg = self.config
        self.losses = []
        self._fallbacks = {"train": 0, "predict": 0}
        self._info = {"head": "untrained"}
        items = self._items(train)
        adapter = self._pretrained_backbone()
        self._head = new_head(adapter.hidden_size, cfg.model_seed, adapter.device)
        bs = self._batch_size(len(train), len(items))
        self._info.update(n_train=len(items), k=len(train), steps=0, batch_size=bs if items else 0,
                          warmup_steps=warmup_steps(cfg.total_steps, cfg.warmup), seed=int(seed))
        if not items or cfg.total_steps == 0:
            return
        t0 = time.perf_counter()
        self._train(adapter, items, bs, seed)
        seconds = time.perf_counter() - t0
        self._perf = {"train_seconds": round(seconds, 3),
                      "steps_per_second": round(cfg.total_steps / seconds, 3) if seconds > 0 else None}
        self._info.update(head="trained", steps=cfg.total_steps, loss_first=self.losses[0], loss_last=self.losses[-1],
                          train_truncated_texts=sum(1 for it in items if self._is_cut(adapter, it.example.expression)))
        if cfg.save_weights:
            self._info["saved"] = self._save(adapter)

    def _train(self, adapter, items: list[_Item], bs: int, seed: int) -> None:
        import torch

        cfg = self.config
        head = self._head
        groups = parameter_groups([adapter.model], cfg.weight_decay, cfg.lr) if self.train_backbone else []
        groups += parameter_groups([head], cfg.weight_decay, cfg.head_lr or cfg.lr)
        steps = cfg.total_steps
        optimizer, scheduler = adamw_with_schedule(groups, cfg.lr, steps, cfg.warmup)
        targets = torch.tensor([it.target for it in items], dtype=torch.long, device=adapter.device)
        frozen = None if self.train_backbone else self._frozen(adapter, [it.example for it in items], "train")
        fallbacks: dict[int, int] = {}  # ft: per training item, counted the first time it is seen
        randomness = training_randomness(cfg.seed_policy, cfg.model_seed, int(seed))
        self._info["train_seed_entropy"] = list(randomness.entropy)
        order = batch_order(len(items), bs, steps, randomness.rng)
        progress = self.context.progress
        stage = f"{self.name or 'ft'} fit"
        self._dirty = self.train_backbone
        if self.train_backbone:
            adapter.model.train()
        head.train()
        try:
            with seeded_torch_rng(randomness.torch_seed, adapter.device):
                for step, idx in enumerate(order):
                    if frozen is None:
                        reps, valid, fallback = self._represent(adapter, [items[i].example for i in idx])
                        for row, i in enumerate(idx):
                            fallbacks.setdefault(i, int(fallback[row].sum()))
                    else:
                        reps, valid = self._stack([frozen[i] for i in idx], adapter.device)
                    loss = candidate_loss(head(reps), valid, targets[torch.as_tensor(idx, device=targets.device)])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    self.losses.append(float(loss.detach()))
                    progress(stage, step + 1, steps)
        finally:
            adapter.model.eval()
            head.eval()
            self._fallbacks["train"] += sum(fallbacks.values())

    @staticmethod
    def _stack(reps: list, device):
        import torch

        n_max = max(r.shape[0] for r in reps)
        out = torch.zeros(len(reps), n_max, reps[0].shape[1], dtype=reps[0].dtype, device=device)
        valid = torch.zeros(len(reps), n_max, dtype=torch.bool, device=device)
        for i, r in enumerate(reps):
            out[i, :r.shape[0]] = r
            valid[i, :r.shape[0]] = True
        return out, valid

    def _save(self, adapter) -> dict[str, str]:
        from safetensors.torch import save_file

        folder = Path(self.context.artifacts_dir)
        folder.mkdir(parents=True, exist_ok=True)
        head_path = folder / "head.safetensors"
        save_file({k: v.detach().cpu().contiguous() for k, v in self._head.state_dict().items()}, str(head_path))
        saved = {"head": str(head_path)}
        if self.train_backbone:
            target = folder / "backbone"
            if hasattr(adapter.model, "save_pretrained"):
                adapter.model.save_pretrained(target)
            else:
                target.mkdir(parents=True, exist_ok=True)
                save_file({k: v.detach().cpu().contiguous() for k, v in adapter.model.state_dict().items()},
                          str(target / "model.safetensors"))
            saved["backbone"] = str(target)
        return saved

    # -- prediction -------------------------------------------------------------------------------
    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        import torch

        adapter = self._backbone()
        if self._head is None:  # predict without fit: the zero-shot head
            self._head = new_head(adapter.hidden_size, self.config.model_seed, adapter.device)
        head = self._head
        adapter.model.eval()
        head.eval()
        out = [np.zeros(0, dtype=np.float64) for _ in examples]
        todo = [i for i, ex in enumerate(examples) if ex.n_candidates > 0]
        bs = max(1, int(self.context.eval_batch_size))
        with torch.no_grad():
            for start in range(0, len(todo), bs):
                chunk = todo[start:start + bs]
                batch = [examples[i] for i in chunk]
                if self.train_backbone:
                    reps, _, fallback = self._represent(adapter, batch)
                    self._fallbacks["predict"] += int(fallback.sum())
                else:
                    reps, _ = self._stack(self._frozen(adapter, batch, "predict"), adapter.device)
                logits = head(reps).float().cpu().numpy()
                for row, i in enumerate(chunk):
                    out[i] = logits[row, :examples[i].n_candidates].astype(np.float64)
        self._predicted_cut += sum(1 for ex in examples if self._is_cut(adapter, ex.expression))
        return out

    def take_counters(self) -> dict[str, Any]:
        out = {"pooling_fallbacks": self._fallbacks["predict"], "truncated_texts": self._predicted_cut}
        self._fallbacks["predict"] = 0
        self._predicted_cut = 0
        return out

    def sync_fitted(self, dist) -> None:
        """Data-parallel evaluation: every rank scores with rank 0's head (and ft's backbone)."""
        if self._head is not None:
            dist.broadcast_module(self._head)
        if self.train_backbone and self._adapter is not None:
            dist.broadcast_module(self._adapter.model)

    def perf_info(self) -> dict[str, Any]:
        return {**self._perf, "image_cache_hits": self._images.hits, "image_cache_misses": self._images.misses,
                "feature_cache_hits": self._features.hits, "feature_cache_misses": self._features.misses}

    def describe(self) -> dict[str, Any]:
        cfg = self.config
        return {
            **self._info,
            "backbone": "fine-tuned" if self.train_backbone else "frozen (linear probe)",
            "representation": "overlap-pooled final patch states + pooled [CLS] + 7 box-geometry features",
            "text": "plain expression, no template",
            "model_seed": cfg.model_seed,
            "seed_policy": cfg.seed_policy,
            "step_factor": cfg.step_factor,
            "head_lr": cfg.head_lr or cfg.lr,
            "train_pooling_fallbacks": self._fallbacks["train"],
        }


class FineTuneMethod(_CandidateScorer):
    """``ft``: the fine-tuning baseline; backbone and head trained (docs/protocol.md section 4)."""

    train_backbone = True


class LinearProbeMethod(_CandidateScorer):
    """``ft-head``: the linear probe; backbone frozen, only the candidate head trained."""

    train_backbone = False
