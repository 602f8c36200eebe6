"""The public method interface: what a third-party method implements.

A method is a class with a frozen dataclass ``Config`` (its options, all with defaults), a
``fit(train_examples, seed)`` and a ``predict(examples)`` that returns one score array per example
(higher = more likely the referred candidate). Zero-shot is ``fit([])``. Methods never compute
metrics; the harness scores every method the same way.

Register a method through the ``cptbench.methods`` entry-point group of your package::

    [project.entry-points."cptbench.methods"]
    my-method = "my_package.module:MyMethod"
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from cptbench.core.boxes import MetricSpec
from cptbench.data.examples import Example, TrainExample
from cptbench.core.errors import UsageError

#: ``progress(stage, done, total)``: methods report long loops through this; the CLI draws bars.
ProgressFn = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The progress callback that reports nothing."""
    return None


@dataclass(frozen=True)
class MethodContext:
    """What the harness gives a method besides its config: where and with what to run.

    Built by one function for every caller (:func:`cptbench.run.context.build_context`); tests and
    scripts may build one directly.

    * ``model``: hub id or local path of the backbone (``None`` for methods without a model);
    * ``device``: the torch device the method runs on;
    * ``task`` and ``metric``: the task's name and its localisation rule (IoU convention, threshold,
      rule): the one rule a method uses to decide which training candidate hits the target;
    * ``shots``: k of the run (0 = zero-shot);
    * ``eval_batch_size``: forward passes per batch, or ``"auto"`` (the largest the device holds,
      :class:`cptbench.methods.numerics.BatchSizer`);
    * ``precision``: the run's resolved numerics, ``"fp32"`` or ``"bf16"`` (autocast), applied with
      :func:`cptbench.methods.numerics.precision_context`;
    * ``progress``: ``progress(stage, done, total)`` for long loops;
    * ``artifacts_dir``: where a method may save weights when asked to;
    * ``adapter``: an injected, ready backbone adapter (tests, dry runs); ``None`` loads ``model``.
    """

    model: str | None = None
    device: str = "cpu"
    task: str = ""
    metric: MetricSpec = field(default_factory=MetricSpec)
    shots: int = 0
    eval_batch_size: int | str = 32
    precision: str = "fp32"
    progress: ProgressFn = no_progress
    artifacts_dir: Path | None = None
    adapter: Any = None

    def __post_init__(self):
        bs = self.eval_batch_size
        if not (bs == "auto" or (isinstance(bs, int) and not isinstance(bs, bool) and bs >= 1)):
            raise ValueError(f"eval_batch_size must be a positive integer or 'auto', got {bs!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be a resolved precision, 'fp32' or 'bf16', got {self.precision!r} "
                             f"(resolve 'auto' with cptbench.methods.numerics.resolve_precision)")
        if not isinstance(self.metric, MetricSpec):
            raise TypeError(f"metric must be a MetricSpec, got {type(self.metric).__name__}")

    @property
    def micro_batch(self) -> int:
        """A fixed batch size for loops that cannot probe (training micro-batches): the requested
        size, or the CPU default under ``auto``."""
        from cptbench.methods.numerics import AUTO_CPU_BATCH

        return AUTO_CPU_BATCH if self.eval_batch_size == "auto" else int(self.eval_batch_size)


@dataclass(frozen=True)
class NoConfig:
    """Config of a method without options."""


class ConfigError(UsageError, ValueError):
    """A method option that does not exist or has a value of the wrong type."""


class Method(ABC):
    """Base class of every method (see the module docstring)."""

    #: registry name, set by the registry when loaded
    name: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig
    #: does the method load a vision-language model (``--model``)?
    needs_model: ClassVar[bool] = False
    #: the config ``model_type`` values the method takes (None: any); a run refuses a local model
    #: folder of another type before any fit
    model_types: ClassVar[tuple[str, ...] | None] = None
    #: the declared exception: a method that reads evaluation labels (an upper bound, e.g. oracle).
    #: Every record and table marks its rows.
    uses_eval_labels: ClassVar[bool] = False
    #: does ``fit`` depend on the training examples (False: one run serves every k)?
    trains: ClassVar[bool] = False
    #: do results vary with the seed even without training (then k = 0 runs every seed)?
    stochastic: ClassVar[bool] = False
    #: the method's result version: bump it when a change of the method's code changes its results
    #: for the same inputs (part of its run ids when non-zero, so its old runs are not mistaken for
    #: new ones); recorded as ``method_version``
    version: ClassVar[int] = 0

    def __init__(self, config: Any, context: MethodContext):
        self.config = config
        self.context = context

    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Adapt to the k training examples (labels included). ``train`` is empty for zero-shot."""

    @abstractmethod
    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """One float array of length ``example.n_candidates`` per example."""

    def set_eval_labels(self, labels: Mapping[str, Any]) -> None:  # pragma: no cover - oracle only
        """Receive the evaluation labels by example id; only methods that declare
        ``uses_eval_labels`` are given them (others refuse)."""
        raise RuntimeError(f"method {self.name!r} does not declare uses_eval_labels")

    def describe(self) -> dict[str, Any]:
        """Facts about the fitted method for the run record (template, score rule, training steps
        and losses, ...): what ``config`` and ``fit`` decided, the same for every split of a run.
        Must not depend on what ``predict`` has seen (that goes in :meth:`take_counters`)."""
        return {}

    def take_counters(self) -> dict[str, Any]:
        """Additive counts (numbers, or dicts of numbers) about the examples predicted since the
        last call, e.g. ``{"passes": 40, "truncated_expressions": 1}``; the counts restart at zero.

        The harness calls it after every saved chunk and sums the chunks of a split, so a split's
        record counts that split only, and a resumed run counts exactly what an uninterrupted one
        does. Count per example (never "distinct things seen so far"), so chunks add up."""
        return {}

    def sync_fitted(self, dist) -> None:
        """Under data-parallel evaluation every rank fits the same job; make every rank's fitted state
        rank 0's (``dist.broadcast_module(module)`` for each trained module). The default does nothing,
        which is right for methods whose fit is deterministic on every device."""

    def perf_info(self) -> dict[str, Any]:
        """Performance facts (cache hits, painted copies, ...): recorded under ``perf``, which
        like the timings may differ between a resumed and an uninterrupted run."""
        return {}
