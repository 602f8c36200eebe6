"""Fine-tuning baselines on the CPT backbones: ``ft`` (full fine-tuning, alias ``finetune``) and
``ft-head`` (the linear probe: frozen backbone, trained head).

Input and representation (docs/protocol.md section 4)
---------------------------------------------
The unpainted image and the plain expression give each candidate box a vector of overlap-pooled
final patch states, the pooled [CLS] state and 7 box-geometry features
(:mod:`cptbench_baselines.ft_inputs`). An MLP head ``Linear(2H+7, H) - GELU - LayerNorm(H) -
Linear(H, 1)`` gives one logit per candidate. The loss is the softmax cross-entropy over the
candidates of an expression toward the candidate with the highest IoU with the ground truth (the
task's IoU convention; first candidate on ties).

As the release, by default (each with today's earlier behaviour as a named option):

* ``padded_slots=release``: a batch's rows are padded to its largest candidate count and the padded
  slots enter the softmax with a constant logit of 1e-4 (Oscar's refcoco head); ``mask`` leaves
  them out.
* ``no_overlap=release``: a training expression whose candidates all have IoU 0 with the ground
  truth trains toward candidate 0 (the arg-max of all-zero IoUs); ``skip`` drops it (no signal).
  Expressions without candidates are always skipped. Both are counted in ``describe()``.

Numerics: the run's device policy (:mod:`cptbench.methods.numerics`), as CPT: ``context.precision``
(bf16 autocast with fp32 master weights on CUDA by default, fp32 elsewhere) for every forward of
training and prediction, ``context.eval_batch_size`` (or ``auto``) for prediction batches, halved
on out-of-memory. The ``precision`` option is what the harness resolves into
``context.precision``.

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
Prepared images, model texts and (``ft-head``) candidate representations are cached
(:class:`~cptbench_baselines.ft_inputs.CandidateInputs`). ``describe()["train_pooling_fallbacks"]``
counts candidates of the usable training expressions of the last ``fit`` that took the
nearest-patch fallback (each once, however many steps see it); ``take_counters()`` reports, per
predicted expression, ``pooling_fallbacks`` and ``truncated_texts`` (the harness sums them per split).

The backbone is loaded lazily with ``cptbench.models.loading.load_adapter(context.model,
context.device)``; tests may inject a ready adapter as ``context.adapter`` (``ft`` then trains it
in place). Calling ``fit`` again restarts from the pre-trained weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from cptbench.data.examples import Example, TrainExample
from cptbench.methods import Method, MethodContext
from cptbench.methods.numerics import (LOSS_READ_EVERY, BatchSizer, precision_context, read_losses, run_batches,
                                      to_device)
from cptbench.methods.optim import (adamw_with_schedule, batch_order, effective_batch_size, parameter_groups,
                                    seeded_torch_rng, training_randomness, warmup_steps)

from .candidate_head import candidate_loss, new_head
from .ft_config import FineTuneConfig
from .ft_inputs import CandidateInputs, stack_representations

@dataclass(frozen=True)
class _Item:
    """A training expression as kept after ``fit`` starts: the example and the target index only."""

    example: Example
    target: int


# ------------------------------------------------------------------------------------------ method
class _CandidateScorer(Method):
    """Common code of ``ft`` and ``ft-head``; ``train_backbone`` is the one difference."""

    Config = FineTuneConfig
    needs_model = True
    trains = True
    #: 2: the release's padded-slot and no-overlap rules, the run's precision policy (was 0)
    version = 2
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
        self.inputs = CandidateInputs(self.image_cache_size, self.text_cache_size,
                                      0 if self.train_backbone else self.feature_cache_size)
        self._sizer = BatchSizer(context.eval_batch_size, context.device)
        self._head = None
        self._predicted_cut = 0
        self._perf: dict[str, Any] = {}
        self._info: dict[str, Any] = {"head": "untrained"}
        #: training loss per optimizer step of the last ``fit``
        self.losses: list[float] = []

    # -- backbone ---------------------------------------------------------------------------------
    def _backbone(self):
        if self._adapter is None:
            if self.context.adapter is not None:
                self._adapter, self._injected = self.context.adapter, True
            else:
                if not self.context.model:
                    raise ValueError(f"method {self.name!r} needs a model (--model or the task card's default_model)")
                from cptbench.models.loading import load_adapter

                self._adapter = load_adapter(self.context.model, self.context.device)
            if not self.train_backbone:
                for p in self._adapter.model.parameters():
                    p.requires_grad_(False)
            self._adapter.model.eval()
            self._sizer = BatchSizer(self.context.eval_batch_size, self._adapter.device)
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

    def _items(self, train: Sequence[TrainExample]) -> list[_Item]:
        """The usable training expressions and their target candidate (the highest IoU under the
        task's rule); the ones skipped are counted in ``describe()``."""
        metric = self.context.metric
        items, no_candidates, no_overlap, zero_target = [], 0, 0, 0
        for t in train:
            if not isinstance(t, TrainExample):
                raise TypeError(f"fit expects TrainExample objects, got {type(t).__name__}")
            ex = t.example
            if ex.n_candidates == 0:
                no_candidates += 1
                continue
            ious = metric.ious(ex.boxes, t.label.box)
            if not ious.max() > 0:
                if self.config.no_overlap == "skip":
                    no_overlap += 1
                    continue
                zero_target += 1  # the release: arg-max of all-zero IoUs, candidate 0
            items.append(_Item(ex, int(np.argmax(ious))))
        self._info.update(skipped_no_candidates=no_candidates, skipped_no_overlap=no_overlap,
                          trained_toward_first_no_overlap=zero_target)
        return items

    def _batch_size(self, k: int, n_items: int) -> int:
        return max(1, min(effective_batch_size(k, self.config.batch_size), n_items))

    # -- training ---------------------------------------------------------------------------------
    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Train the head (and, for ``ft``, the backbone) on the k training expressions."""
        cfg = self.config
        self.losses = []
        self.inputs.fallbacks = {"train": 0, "predict": 0}
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
                          train_truncated_texts=sum(1 for it in items if self.inputs.is_cut(adapter, it.example.expression)))
        if cfg.save_weights:
            self._info["saved"] = self._save(adapter)

    def _train(self, adapter, items: list[_Item], bs: int, seed: int) -> None:
        cfg = self.config
        head = self._head
        groups = parameter_groups([adapter.model], cfg.weight_decay, cfg.lr) if self.train_backbone else []
        groups += parameter_groups([head], cfg.weight_decay, cfg.head_lr or cfg.lr)
        steps = cfg.total_steps
        optimizer, scheduler = adamw_with_schedule(groups, cfg.lr, steps, cfg.warmup)
        targets = [it.target for it in items]  # on the host: each step's are sent without a wait
        device, precision = adapter.device, self.context.precision
        frozen = None
        if not self.train_backbone:
            with precision_context(device, precision):
                frozen = self.inputs.frozen(adapter, [it.example for it in items], "train", self.context.micro_batch)
        fallbacks: dict[int, Any] = {}  # ft: per training item, counted the first time it is seen
        randomness = training_randomness(cfg.seed_policy, cfg.model_seed, int(seed))
        self._info["train_seed_entropy"] = list(randomness.entropy)
        order = batch_order(len(items), bs, steps, randomness.rng)
        progress = self.context.progress
        stage = f"{self.name or 'ft'} fit"
        self._dirty = self.train_backbone
        pending: list = []
        if self.train_backbone:
            adapter.model.train()
        head.train()
        try:
            with seeded_torch_rng(randomness.torch_seed, device):
                for step, idx in enumerate(order):
                    with precision_context(device, precision):  # forward under the policy; weights stay fp32
                        if frozen is None:
                            reps, valid, fallback = self.inputs.represent(adapter, [items[i].example for i in idx])
                            for row, i in enumerate(idx):
                                if i not in fallbacks:  # kept on the device: read once, after the loop
                                    fallbacks[i] = fallback[row].sum()
                        else:
                            reps, valid = stack_representations([frozen[i] for i in idx], device)
                        logits = head(reps)
                    loss = candidate_loss(logits, valid, to_device([targets[i] for i in idx], device), cfg.padded_slots)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    pending.append(loss.detach())  # read once per LOSS_READ_EVERY steps: no wait per step
                    if len(pending) >= LOSS_READ_EVERY:
                        self.losses.extend(read_losses(pending))
                    progress(stage, step + 1, steps)
                self.losses.extend(read_losses(pending))
        finally:
            adapter.model.eval()
            head.eval()
            if fallbacks:
                import torch

                self.inputs.fallbacks["train"] += int(torch.stack(list(fallbacks.values())).sum())

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
    def _logits(self, adapter, batch: Sequence[Example]):
        """(B, N) head logits of a batch (padded slots hold whatever the head gives them)."""
        if self.train_backbone:
            reps, _, fallback = self.inputs.represent(adapter, batch)
            self.inputs.fallbacks["predict"] += int(fallback.sum())
        else:
            reps, _ = stack_representations(self.inputs.frozen(adapter, batch, "predict", len(batch)), adapter.device)
        return self._head(reps)

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """One logit per candidate from the (trained or zero-shot) head."""
        import torch

        adapter = self._backbone()
        if self._head is None:  # predict without fit: the zero-shot head
            self._head = new_head(adapter.hidden_size, self.config.model_seed, adapter.device)
        adapter.model.eval()
        self._head.eval()
        out = [np.zeros(0, dtype=np.float64) for _ in examples]
        todo = [i for i, ex in enumerate(examples) if ex.n_candidates > 0]

        def finish(chunk, logits):
            for row, i in enumerate(chunk):
                out[i] = logits[row, :examples[i].n_candidates].astype(np.float64)

        with torch.no_grad():
            size = self._sizer.size(*self._auto_probe(adapter, examples, todo))
            run_batches(todo, size, lambda chunk: [examples[i] for i in chunk], lambda batch: self._logits(adapter, batch),
                        finish, device=adapter.device, precision=self.context.precision, on_batch_size=self._sizer.on_oom)
        self._predicted_cut += sum(1 for ex in examples if self.inputs.is_cut(adapter, ex.expression))
        return out

    def _auto_probe(self, adapter, examples: Sequence[Example], todo: Sequence[int]):
        """(key, probe) for ``--batch-size auto``: a forward of ``n`` copies of the call's example
        with the most candidates (``(None, None)`` when there is nothing to probe with)."""
        if not todo:
            return None, None
        worst = max((examples[i] for i in todo), key=lambda ex: (ex.n_candidates, len(str(ex.expression))))
        _, (w, h) = self.inputs.image(adapter, worst)

        def key() -> str:
            from cptbench.methods.numerics import autobatch_key

            return autobatch_key(getattr(adapter, "model_name", "?"), adapter.device, f"{h}x{w}/{worst.n_candidates}",
                                 self.context.precision, f"{self.name or 'ft'}")

        def probe(n: int) -> None:
            with precision_context(adapter.device, self.context.precision):
                self.inputs.represent(adapter, [worst] * n)

        return key, probe

    def take_counters(self) -> dict[str, Any]:
        """Per-expression counts since the last call: pooling fallbacks and truncated texts."""
        out = {"pooling_fallbacks": self.inputs.fallbacks["predict"], "truncated_texts": self._predicted_cut}
        self.inputs.fallbacks["predict"] = 0
        self._predicted_cut = 0
        return out

    def sync_fitted(self, dist) -> None:
        """Data-parallel evaluation: every rank scores with rank 0's head (and ft's backbone)."""
        if self._head is not None:
            dist.broadcast_module(self._head)
        if self.train_backbone and self._adapter is not None:
            dist.broadcast_module(self._adapter.model)

    def perf_info(self) -> dict[str, Any]:
        """Training speed, the batch size used and cache hits."""
        out = {**self._perf, **self.inputs.stats(), "precision": self.context.precision}
        if self._sizer.used is not None:
            out["eval_batch_size"] = self._sizer.used
        return out

    def describe(self) -> dict[str, Any]:
        """What the config and the fit decided (per-split counts: :meth:`take_counters`)."""
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
            "padded_slots": cfg.padded_slots,
            "no_overlap": cfg.no_overlap,
            "precision": self.context.precision,
            "train_pooling_fallbacks": self.inputs.fallbacks["train"],
        }


class FineTuneMethod(_CandidateScorer):
    """``ft``: the fine-tuning baseline; backbone and head trained (docs/protocol.md section 4)."""

    train_backbone = True


class LinearProbeMethod(_CandidateScorer):
    """``ft-head``: the linear probe; backbone frozen, only the candidate head trained."""

    train_backbone = False
