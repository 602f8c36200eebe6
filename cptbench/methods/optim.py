"""Optimisation pieces shared by every trained method (CPT and the fine-tuning baselines), so that
the comparison runs under one budget rule and one schedule.

* AdamW parameter groups: weight decay on everything but biases and LayerNorm parameters.
* Learning rate: the release's (Hugging Face) linear schedule: ``step / w`` during the ``w`` warm-up
  steps (so the first optimizer step has factor 0), then linear decay to 0 at ``steps``;
  ``w = ceil(warmup * steps)`` as in transformers' Trainer.
* Batches: the k training expressions are shuffled once per epoch by a local generator, the epochs
  form one stream, and each step takes the next ``batch_size`` items; with ``batch_size == k`` (the
  default, k <= 16) every step sees all k.
* Dropout: :func:`seeded_torch_rng` forks the global torch RNG, seeds it for the training loop and
  restores it afterwards, so training is reproducible and leaves no trace outside.
* Seeds (:func:`training_randomness`, docs/protocol.md section 7): one policy for every trained
  method. ``release`` (the default, the release's few-shot scripts): all training randomness
  (negative sampling, batch order, dropout) comes from the model seed (88) alone, so the run seed
  picks only the k-shot draw and the spread over seeds is the spread over training subsets.
  ``per-run``: it comes from (model seed, run seed), so runs also differ by training noise.
  Initialisation (pre-trained weights, a new head's init) always comes from the model seed.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

BETAS = (0.9, 0.98)
ADAM_EPS = 1e-8
MAX_BATCH = 16

#: how a fit's training randomness is seeded (module doc); the first is the default
SEED_POLICIES = ("release", "per-run")
DEFAULT_SEED_POLICY = SEED_POLICIES[0]


def effective_batch_size(k: int, batch_size: int = 0) -> int:
    """``batch_size`` if set, else k capped at 16 (the release's few-shot rule); never more than k."""
    return max(1, min(batch_size if batch_size > 0 else MAX_BATCH, k))


def parameter_groups(modules: Any, weight_decay: float, lr: float | None = None) -> list[dict[str, Any]]:
    """Two AdamW groups over the trainable parameters of ``modules`` (a module or a list): with
    weight decay, and without (biases, LayerNorm weights and biases). ``lr`` sets a group lr."""
    import torch

    if isinstance(modules, torch.nn.Module):
        modules = [modules]
    decay, plain, seen = [], [], set()
    for root in modules:
        for module in root.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                if isinstance(module, torch.nn.LayerNorm) or name == "bias" or "layernorm" in type(module).__name__.lower():
                    plain.append(p)
                else:
                    decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    if lr is not None:
        for g in groups:
            g["lr"] = lr
    return groups


def warmup_steps(steps: int, warmup: float) -> int:
    """Warm-up steps for a ``warmup`` fraction of ``steps``: rounded up, never more than ``steps``."""
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1], got {warmup}")
    return min(int(steps), math.ceil(warmup * steps - 1e-9))


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor before optimizer step ``step`` (0-based), see the module doc."""
    if step < warmup:
        return step / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def adamw_with_schedule(groups: list[dict[str, Any]], lr: float, steps: int, warmup: float):
    """AdamW (betas (0.9, 0.98)) and its LambdaLR linear warm-up / decay scheduler."""
    import torch

    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=BETAS, eps=ADAM_EPS)
    n_warm = warmup_steps(steps, warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, steps, n_warm))
    return optimizer, scheduler


def batch_order(n_items: int, batch_size: int, steps: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """``steps`` lists of ``batch_size`` indices from the epoch-shuffled stream (module doc)."""
    if n_items <= 0 or batch_size <= 0:
        raise ValueError("batch_order needs at least one item and a positive batch size")
    epochs = math.ceil(steps * batch_size / n_items)
    stream = np.concatenate([rng.permutation(n_items) for _ in range(epochs)]) if epochs else np.zeros(0, int)
    for s in range(steps):
        yield stream[s * batch_size:(s + 1) * batch_size].tolist()


@contextmanager
def seeded_torch_rng(seed: int, device: Any = "cpu"):
    """Fork the global torch RNG (CPU and the model's CUDA device), seed it, restore it after."""
    import torch

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    devices: Iterable[int] = [dev.index if dev.index is not None else torch.cuda.current_device()] if cuda else []
    with torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(int(seed))
        yield


def check_seed_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`SEED_POLICIES`, else a ``ValueError`` naming them."""
    if policy not in SEED_POLICIES:
        raise ValueError(f"seed_policy must be one of {', '.join(SEED_POLICIES)} (release: training randomness from "
                         f"the model seed alone; per-run: from the model seed and the run seed), got {policy!r}")
    return policy


@dataclass
class TrainingRandomness:
    """What seeds one fit: ``rng`` (batch order, negative sampling) and ``torch_seed`` (dropout, used
    with :func:`seeded_torch_rng`). ``entropy`` is what they were derived from (for the record)."""

    policy: str
    entropy: tuple[int, ...]
    rng: np.random.Generator
    torch_seed: int


def training_randomness(policy: str, model_seed: int, run_seed: int) -> TrainingRandomness:
    """The training randomness of a fit under ``policy`` (module doc): one
    ``numpy.random.SeedSequence`` of ``(model_seed,)`` (``release``) or ``(model_seed, run_seed)``
    (``per-run``), spawned into the numpy stream and the torch seed."""
    check_seed_policy(policy)
    entropy = (int(model_seed),) if policy == "release" else (int(model_seed), int(run_seed))
    order_ss, torch_ss = np.random.SeedSequence(list(entropy)).spawn(2)
    return TrainingRandomness(policy, entropy, np.random.default_rng(order_ss), int(torch_ss.generate_state(1)[0]))
