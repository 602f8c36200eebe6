"""Few-shot colorful prompt tuning: MLM cross-entropy at ``[MASK]`` over the full vocabulary.

Pass units. A training pass is one painted copy of a training image (one candidate group) with the
expression's prompt, exactly as at prediction time. Its target is the colour word of the group's
candidate that matches the ground truth (IoU above the threshold under the task's convention; when
several in the group match, the one with the highest IoU, ties to the earlier candidate), or
``"none"`` when no candidate of the group matches. With the one-colour palette a pass is one
candidate, the release's rule; with ``C`` colours a pass asks about ``C`` candidates at once and the
text is the same, so the answer is the colour the referred object was painted with, if it was
painted in this copy. A group holding a matching candidate is a positive pass, every other group a
negative pass.

Per training expression and step, drawn afresh each step (docs/protocol.md section 7; the option
names are :class:`TrainSettings` fields and CPT options):

* ``positives="release"`` (default): all positive passes, except that with exactly 16 training
  expressions (the release's 16-shot runs) a single positive pass is kept, chosen at random, when
  there are several; ``positives="all"``: all positive passes at every k.
* negatives: as many random negative passes as kept positives (fewer when there are not enough),
  without replacement (usually 1 + 1).
* an expression without a positive pass (possible with detected proposals):
  ``no_positive="release"`` (default) gives two passes, the first group's and one random negative
  (which may be the first group again, as in the release); ``no_positive="one"`` gives one random
  negative pass.

Optimisation: AdamW (lr 3e-5, betas (0.9, 0.98), weight decay 0.01 except on biases and LayerNorm
weights), linear warm-up over the first ``warmup`` fraction of the steps then linear decay to 0,
``steps`` optimizer steps. Each step takes the next ``batch_size`` expressions of a shuffled order
(reshuffled when fewer than ``batch_size`` remain, so with ``batch_size == k`` every step sees all k
expressions); the step's loss is the mean cross-entropy over all its passes, accumulated over
micro-batches of at most ``micro_batch`` passes.

Randomness (:func:`cptbench.methods.optim.training_randomness`, shared with the fine-tuning baselines): under
``seed_policy="release"`` (default) one ``numpy.random.SeedSequence((model_seed,))``, under
``"per-run"`` one of ``(model_seed, seed)``, seeds a local numpy generator (order, positives,
negatives) and the torch RNG used by dropout, which runs inside ``torch.random.fork_rng`` so the
caller's global RNG state is left as it was. Under the default the run seed therefore changes
nothing here: runs differ only by their k-shot training examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cptbench.core.boxes import MetricSpec
from cptbench.methods.numerics import LOSS_READ_EVERY, read_losses, to_device
from cptbench.data.examples import TrainExample
from cptbench.methods.optim import (DEFAULT_SEED_POLICY, adamw_with_schedule, batch_order, check_seed_policy, effective_batch_size,
                     parameter_groups, seeded_torch_rng, training_randomness)
from cptbench.cpt.painting import Palette, candidate_groups

NONE_WORD = "none"
#: pass-selection rules (module doc); the first of each is the release's and the default
POSITIVE_RULES = ("release", "all")
NO_POSITIVE_RULES = ("release", "one")
#: the training-set size at which the release keeps a single positive pass
SINGLE_POSITIVE_SHOTS = 16


@dataclass(frozen=True)
class PassUnit:
    """One training pass: training expression ``example_index``, candidate group ``group``."""

    example_index: int
    group: int
    target: str


@dataclass(frozen=True)
class TrainSettings:
    """How one fit trains (module doc): optimisation, micro-batching, the IoU rule of a positive
    pass, the pass-selection rules and the seed policy."""

    steps: int = 500
    lr: float = 3e-5
    batch_size: int = 0  # 0: k capped at 16
    weight_decay: float = 0.01
    warmup: float = 0.1
    micro_batch: int = 32
    metric: MetricSpec = field(default_factory=MetricSpec)  # which candidate hits the target (the task's rule)
    positives: str = POSITIVE_RULES[0]
    no_positive: str = NO_POSITIVE_RULES[0]
    seed_policy: str = DEFAULT_SEED_POLICY

    def __post_init__(self):
        check_pass_rules(self.positives, self.no_positive)
        check_seed_policy(self.seed_policy)

    def effective_batch_size(self, k: int) -> int:
        """Training expressions per step for ``k`` shots: ``batch_size`` (16 when 0), at most k."""
        return effective_batch_size(k, self.batch_size)


def check_pass_rules(positives: str, no_positive: str) -> None:
    """A ``ValueError`` naming the choices unless both pass-selection rules are known."""
    if positives not in POSITIVE_RULES:
        raise ValueError(f"positives must be one of {', '.join(POSITIVE_RULES)} (release: one positive pass at "
                         f"{SINGLE_POSITIVE_SHOTS} shots; all: every positive pass), got {positives!r}")
    if no_positive not in NO_POSITIVE_RULES:
        raise ValueError(f"no_positive must be one of {', '.join(NO_POSITIVE_RULES)} (release: two passes, the first "
                         f"group's and a random negative; one: a random negative), got {no_positive!r}")


@dataclass
class TrainResult:
    """What a fit did: optimizer steps, the loss of each step, pass counts, the batch size, whether
    the 16-shot single-positive rule was in force and what seeded it."""

    steps: int = 0
    losses: list[float] = field(default_factory=list)
    passes: int = 0
    positives: int = 0
    negatives: int = 0
    expressions_without_positive: int = 0
    batch_size: int = 0
    single_positive: bool = False  # the 16-shot rule was in force
    seed_policy: str = DEFAULT_SEED_POLICY
    seed_entropy: tuple[int, ...] = ()

    @property
    def final_loss(self) -> float | None:
        """The last step's loss, or None without steps."""
        return self.losses[-1] if self.losses else None


def expression_passes(train_example: TrainExample, index: int, palette: Palette, settings: TrainSettings
                      ) -> tuple[list[PassUnit], list[PassUnit]]:
    """The positive and negative pass units of one training expression (module doc)."""
    ex, label = train_example.example, train_example.label
    if ex.n_candidates == 0:
        return [], []
    ious = settings.metric.ious(ex.boxes, label.box)
    hits = settings.metric.hits(ious)
    positives, negatives = [], []
    for g, members in enumerate(candidate_groups(ex.n_candidates, len(palette))):
        matched = [i for i in members if hits[i]]
        if matched:
            best = max(matched, key=lambda i: (ious[i], -i))
            positives.append(PassUnit(index, g, palette.words[best - members.start]))
        else:
            negatives.append(PassUnit(index, g, NONE_WORD))
    return positives, negatives


def select_passes(positives: Sequence[PassUnit], negatives: Sequence[PassUnit], rng: np.random.Generator, *,
                  single_positive: bool = False, no_positive: str = NO_POSITIVE_RULES[0]) -> list[PassUnit]:
    """The passes of one expression for one step (module doc): the positives (one random positive
    when ``single_positive`` and there are several), then as many random negatives as positives.
    Without positives: ``no_positive="release"`` the first group's pass plus one random negative,
    ``"one"`` one random negative."""
    kept = list(positives)
    if single_positive and len(kept) > 1:
        kept = [kept[int(rng.integers(len(kept)))]]
    n_neg = min(len(negatives), len(kept) if kept else 1)
    picked = sorted(rng.choice(len(negatives), size=n_neg, replace=False).tolist()) if n_neg else []
    first = [negatives[0]] if not kept and negatives and no_positive == "release" else []
    return kept + first + [negatives[i] for i in picked]


def train_prompt(
    model: Any,
    train: Sequence[TrainExample],
    palette: Palette,
    forward: Callable[[Sequence[PassUnit]], Any],
    target_id: Callable[[str], int],
    settings: TrainSettings,
    seed: int,
    model_seed: int = 88,
    progress: Callable[[str, int, int], None] | None = None,
) -> TrainResult:
    """Prompt-tune ``model`` in place; ``forward(units)`` returns the ``(len(units), V)`` logits at
    ``[MASK]`` for those passes (with gradients)."""
    import torch

    result = TrainResult()
    k = len(train)
    if k == 0 or settings.steps <= 0:
        return result
    units = [expression_passes(te, i, palette, settings) for i, te in enumerate(train)]
    result.expressions_without_positive = sum(1 for pos, _ in units if not pos)
    result.batch_size = settings.effective_batch_size(k)
    single = settings.positives == "release" and k == SINGLE_POSITIVE_SHOTS
    result.single_positive = single
    randomness = training_randomness(settings.seed_policy, model_seed, seed)
    result.seed_policy, result.seed_entropy = randomness.policy, randomness.entropy
    rng = randomness.rng
    order = batch_order(k, result.batch_size, settings.steps, rng)
    optimizer, scheduler = adamw_with_schedule(parameter_groups(model, settings.weight_decay), settings.lr,
                                               settings.steps, settings.warmup)
    device = next(model.parameters()).device
    micro = max(1, int(settings.micro_batch))
    was_training = model.training
    model.train()
    pending: list[Any] = []  # the steps' losses, on the device until the next read
    try:
        with seeded_torch_rng(randomness.torch_seed, device):
            for step, batch in enumerate(order):
                passes: list[PassUnit] = []
                for i in batch:
                    passes.extend(select_passes(*units[i], rng, single_positive=single,
                                                no_positive=settings.no_positive))
                if not passes:  # only expressions without candidates
                    continue
                optimizer.zero_grad(set_to_none=True)
                total = None
                for start in range(0, len(passes), micro):
                    chunk = passes[start: start + micro]
                    # the targets are known before the forward: built on the host, sent without a wait
                    targets = to_device([target_id(u.target) for u in chunk], device)
                    logits = forward(chunk)
                    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum") / len(passes)
                    loss.backward()
                    part = loss.detach()
                    total = part if total is None else total + part
                optimizer.step()
                scheduler.step()
                result.steps += 1
                pending.append(total)
                result.passes += len(passes)
                result.positives += sum(1 for u in passes if u.target != NONE_WORD)
                result.negatives += sum(1 for u in passes if u.target == NONE_WORD)
                if len(pending) >= LOSS_READ_EVERY:
                    result.losses.extend(read_losses(pending))
                if progress is not None:
                    progress("fit", step + 1, settings.steps)
        result.losses.extend(read_losses(pending))
    finally:
        model.train(was_training)
    return result


def save_weights(adapter: Any, out: Path) -> None:
    """Write the adapter's tuned model (``save_pretrained``, else a ``model.pt`` state dict) and its
    tokenizer into the folder ``out`` (option ``save_weights``)."""
    out.mkdir(parents=True, exist_ok=True)
    model = adapter.model
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(out)
    else:
        import torch

        torch.save(model.state_dict(), out / "model.pt")
    tokenizer = getattr(adapter, "tokenizer", None)
    if hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(out)
