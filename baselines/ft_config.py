"""The options of the fine-tuning baselines ``ft`` and ``ft-head`` (``--set key=value``) and their
checks; :mod:`cptbench_baselines.finetune` explains what each does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cptbench.methods.numerics import check_precision
from cptbench.methods.optim import DEFAULT_SEED_POLICY, MAX_BATCH, check_seed_policy

from .candidate_head import PADDED_SLOT_RULES

#: what a training expression whose candidates all miss the ground truth (IoU 0) does: ``release``
#: trains toward candidate 0, ``skip`` drops it
NO_OVERLAP_RULES = ("release", "skip")


@dataclass(frozen=True)
class FineTuneConfig:
    """Options of ``ft`` / ``ft-head`` (``--set key=value``); the module docstring explains each."""

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
    padded_slots: str = PADDED_SLOT_RULES[0]  # release: padded slots enter the softmax at logit 1e-4 | mask
    no_overlap: str = NO_OVERLAP_RULES[0]  # release: an all-miss expression trains toward candidate 0 | skip
    precision: str = "auto"  # the run's numerics: auto (bf16 autocast on CUDA, fp32 elsewhere) | fp32 | bf16

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
            (self.padded_slots in PADDED_SLOT_RULES,
             f"padded_slots must be one of {', '.join(PADDED_SLOT_RULES)} (release: padded candidate slots enter the "
             f"softmax with logit 1e-4; mask: they are left out), got {self.padded_slots!r}"),
            (self.no_overlap in NO_OVERLAP_RULES,
             f"no_overlap must be one of {', '.join(NO_OVERLAP_RULES)} (release: a training expression whose candidates "
             f"all miss trains toward candidate 0; skip: it is dropped), got {self.no_overlap!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        check_seed_policy(self.seed_policy)
        check_precision(self.precision)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of a fit: ``steps * step_factor``."""
        return self.steps * self.step_factor


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
