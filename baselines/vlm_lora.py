"""LoRA few-shot tuning of a generative model (``fewshot=lora``) through peft, an optional
dependency (``pip install 'cptbench[lora]'``).

Adapters of rank ``lora_r`` (scale ``lora_alpha / lora_r``, dropout ``lora_dropout``) go on the
language model's ``lora_targets`` projections only (module names matching
``.*language_model.*\\.(q_proj|v_proj)`` by default; the vision tower and the projector stay as
they are); every other weight is frozen. The adapters' A matrices are drawn from the model seed,
B starts at zero, so before the first step the model is exactly the pre-trained one.

Objective: for each training expression, the zero-shot prompt of the drawn copy that holds its
target (the candidate of highest IoU that hits under the task's rule) followed by the target's
answer (colour word or number, end-of-turn token included); the loss is the mean negative
log-likelihood over the batch's answer tokens (the prompt's tokens are not trained on). The budget,
schedule and seeding are every trained method's (:mod:`cptbench.methods.optim`): ``steps`` AdamW
steps, batch k capped at 16, 10% warm-up then linear decay, betas (0.9, 0.98), weight decay except
biases and norms, training randomness from the model seed (``seed_policy=release``) or (model
seed, run seed); no dev set, the last adapters are used. :func:`detach` removes the adapters and
gives back the untouched pre-trained model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from cptbench.methods.numerics import precision_context
from cptbench.methods.optim import (adamw_with_schedule, batch_order, effective_batch_size, parameter_groups,
                                    seeded_torch_rng, training_randomness)
from cptbench.models.generative import GenerativeAdapter, Prompt


def peft_available() -> bool:
    """Whether peft can be imported."""
    try:
        import peft  # noqa: F401
    except ImportError:
        return False
    return True


def require_peft() -> None:
    """Raise a clear error when peft is missing."""
    if not peft_available():
        from cptbench.methods.base import ConfigError

        raise ConfigError("fewshot=lora needs peft, which is not installed: pip install 'cptbench[lora]' "
                          "(or choose fewshot=icl)")


@dataclass(frozen=True)
class TrainItem:
    """One training expression: the zero-shot prompt of its target's copy and the target's answer ids."""

    prompt: Prompt
    answer: tuple[int, ...]


def target_pattern(targets: Sequence[str]) -> str:
    """The regular expression of the module names that get adapters (module doc)."""
    return r".*language_model.*\.(?:" + "|".join(re.escape(t) for t in targets) + r")"


def attach(model, config) -> Any:
    """Put LoRA adapters on ``model`` in place (module doc); returns peft's handle for :func:`detach`."""
    require_peft()
    from peft import LoraConfig, get_peft_model

    pattern = target_pattern(config.targets)
    if not any(re.fullmatch(pattern, name) for name, _ in model.named_modules()):
        raise ValueError(f"lora_targets {config.lora_targets!r}: no module of the language model matches "
                         f"{pattern!r}; name the model's attention projections")
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=pattern, bias="none")
    with seeded_torch_rng(config.model_seed, next(model.parameters()).device):
        return get_peft_model(model, lora)


def detach(handle) -> Any:
    """Remove the adapters; returns the pre-trained model (its weights were never changed)."""
    return handle.unload()


def trainable_parameters(model) -> int:
    """How many parameters the optimizer updates."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def answer_loss(adapter: GenerativeAdapter, items: Sequence[TrainItem]):
    """The mean negative log-likelihood of the items' answer tokens after their prompts (one
    left-padded forward; logits only at the positions that predict answer tokens)."""
    import torch

    batch = adapter.collate([it.prompt for it in items], [it.answer for it in items])
    hidden, _ = adapter.hidden(batch.inputs, use_cache=False)
    length = hidden.shape[1]
    rows, cols, targets = [], [], []
    for r, it in enumerate(items):
        m = len(it.answer)
        for t, tok in enumerate(it.answer):
            rows.append(r)
            cols.append(length - m - 1 + t)
            targets.append(tok)
    device = hidden.device
    picked = hidden[torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)]
    logits = adapter.model.lm_head(picked).float()
    return torch.nn.functional.cross_entropy(logits, torch.as_tensor(targets, device=device))


def train(adapter: GenerativeAdapter, items: Sequence[TrainItem], config, k: int, seed: int, precision: str,
          progress=None) -> tuple[list[float], dict[str, Any]]:
    """Train the attached adapters on ``items`` (module doc); returns the loss of every step and
    the facts of the fit."""
    model = adapter.model
    steps = int(config.steps)
    bs = max(1, min(effective_batch_size(k, config.batch_size), len(items)))
    randomness = training_randomness(config.seed_policy, config.model_seed, int(seed))
    facts = {"batch_size": bs, "steps": steps, "train_seed_entropy": list(randomness.entropy),
             "trainable_parameters": trainable_parameters(model)}
    if not items or steps == 0:
        return [], facts
    groups = parameter_groups([model], config.weight_decay, config.lr)
    optimizer, scheduler = adamw_with_schedule(groups, config.lr, steps, config.warmup)
    order = batch_order(len(items), bs, steps, randomness.rng)
    losses: list[float] = []
    device = adapter.device
    model.train()
    try:
        with seeded_torch_rng(randomness.torch_seed, device):
            for step, idx in enumerate(order):
                with precision_context(device, precision):
                    loss = answer_loss(adapter, [items[i] for i in idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                if progress is not None:
                    progress(step + 1, steps)
    finally:
        model.eval()
    return losses, facts
