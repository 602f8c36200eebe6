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

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from cptbench.data.examples import Example, TrainExample
from cptbench.core.errors import UsageError
from cptbench.core.registry import unknown_name_message

#: ``progress(stage, done, total)``: methods report long loops through this; the CLI draws bars.
ProgressFn = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class MethodContext:
    """What the harness gives a method besides its config: where and with what to run."""

    model: str | None = None  # hub id or local path; None for methods without a model
    device: str = "cpu"
    task: str = ""
    eval_batch_size: int = 32
    progress: ProgressFn = _no_progress
    artifacts_dir: Path | None = None  # where a method may save weights when asked to
    extra: Mapping[str, Any] = field(default_factory=dict)


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
    #: the declared exception: a method that reads evaluation labels (an upper bound, e.g. oracle).
    #: Every record and table marks its rows.
    uses_eval_labels: ClassVar[bool] = False
    #: does ``fit`` depend on the training examples (False: one run serves every k)?
    trains: ClassVar[bool] = False
    #: do results vary with the seed even without training (then k = 0 runs every seed)?
    stochastic: ClassVar[bool] = False

    def __init__(self, config: Any, context: MethodContext):
        self.config = config
        self.context = context

    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Adapt to the k training examples (labels included). ``train`` is empty for zero-shot."""

    @abstractmethod
    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """One float array of length ``example.n_candidates`` per example."""

    def set_eval_labels(self, labels: Mapping[str, Any]) -> None:  # pragma: no cover - oracle only
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


def parse_config(config_cls: type, values: Mapping[str, Any], *, method: str) -> Any:
    """Build ``config_cls`` from ``values`` (strings from the command line are converted to the
    field's type); unknown keys get "did you mean"."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    kwargs = {}
    for key, raw in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            raise ConfigError(unknown_name_message(f"option of method {method!r}:", key, fields))
        kwargs[key] = _convert(raw, fields[key], method)
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method {method!r}: {exc}") from exc


def _convert(raw: Any, f: dataclasses.Field, method: str) -> Any:
    default = f.default if f.default is not dataclasses.MISSING else (
        f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    if not isinstance(raw, str) or isinstance(default, str) or default is None:
        if isinstance(default, tuple) and isinstance(raw, list):
            return tuple(raw)
        return raw
    try:
        if isinstance(default, bool):
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
    except ValueError:
        raise ConfigError(
            f"method {method!r}: option {f.name!r} expects {type(default).__name__}, got {raw!r}"
        ) from None
    return raw


def config_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}
