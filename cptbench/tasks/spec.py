"""Task cards: declarative YAML files validated into frozen dataclasses.

A card is pure data. Unknown keys, missing keys and wrong types are refused with an error that names
the file and the key. Variants (RefCOCO, RefCOCO+, RefCOCOg, synthref) differ by data only.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from cptbench.core.boxes import IOU_CONVENTIONS, THRESHOLD_RULES, MetricSpec
from cptbench.core.errors import UsageError


class FrozenDict(dict):
    """A read-only mapping for card values (unlike ``MappingProxyType`` it pickles, so jobs can be
    shipped to Ray workers)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("task card values are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __hash__(self):  # frozen dataclasses holding one stay hashable
        return hash(tuple(sorted((k, repr(v)) for k, v in self.items())))


class TaskCardError(UsageError, ValueError):
    """A task card that cannot be used; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class SplitCounts:
    """Known sizes of a split, used by ``cptbench data check`` to validate a download."""

    sentences: int | None = None
    refs: int | None = None
    images: int | None = None


@dataclass(frozen=True)
class SynthRefSpec:
    """Generator settings of the bundled procedural benchmark (``source: synthref``)."""

    seed: int = 0
    image_size: int = 64
    min_objects: int = 3
    max_objects: int = 8
    images: Mapping[str, int] = field(default_factory=lambda: {"train": 200, "val": 60, "testA": 60, "testB": 60})


@dataclass(frozen=True)
class TaskSpec:
    """A validated task card (README "Tasks"): the data, its splits, the default model and
    proposals, the metric, expected split sizes, per-method option defaults and (synthref) the
    generator's settings. ``path`` is the file it was read from."""

    name: str
    version: int
    description: str
    source: Literal["refer", "synthref"]
    dataset: str
    split_by: str
    train_split: str
    eval_splits: tuple[str, ...]
    default_model: str
    default_proposals: str = "gt"
    image_dir: str = "images/train2014"
    metric: MetricSpec = field(default_factory=MetricSpec)
    expected_counts: Mapping[str, SplitCounts] = field(default_factory=dict)
    method_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    synthref: SynthRefSpec | None = None
    path: str = ""  # the file the card was read from (provenance), not a YAML key

    @property
    def refs_file(self) -> str:
        """The refs pickle of the card's split scheme: ``refs(<split_by>).p``."""
        return f"refs({self.split_by}).p"


_NOT_KEYS = {"path"}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, where: str, file: str) -> Any:
    """Check ``value`` against the annotation ``tp``, converting YAML lists to tuples and nested
    mappings to dataclasses. Raises :class:`TaskCardError` naming ``file`` and ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where, file)
    if origin is Literal:
        if value not in args:
            raise TaskCardError(f"{file}: key '{where}' is {value!r}; allowed values: {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise TaskCardError(f"{file}: key '{where}' must be a mapping, got {type(value).__name__}")
        return _build(tp, value, file, prefix=f"{where}.")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TaskCardError(f"{file}: key '{where}' must be a list, got {type(value).__name__}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]", file) for i, v in enumerate(value))
    if origin in (Mapping, dict, collections.abc.Mapping) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise TaskCardError(f"{file}: key '{where}' must be a mapping, got {type(value).__name__}")
        kt, vt = args if args else (Any, Any)
        return FrozenDict(
            {_coerce(k, kt, where, file): _coerce(v, vt, f"{where}.{k}", file) for k, v in value.items()}
        )
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(tp, type):
        if isinstance(value, bool) and tp is not bool:
            raise TaskCardError(f"{file}: key '{where}' must be {_type_name(tp)}, got a boolean")
        if not isinstance(value, tp):
            raise TaskCardError(f"{file}: key '{where}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _build(cls, data: Mapping[str, Any], file: str, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _NOT_KEYS}
    unknown = [k for k in data if k not in fields]
    if unknown:
        import difflib

        key = unknown[0]
        close = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
        raise TaskCardError(
            f"{file}: unknown key '{prefix}{key}'.{hint} Allowed keys here: {', '.join(fields)}."
        )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], prefix + name, file)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TaskCardError(f"{file}: missing required key '{prefix}{name}'.")
    return cls(**kwargs)


def parse_task_card(data: Any, file: str) -> TaskSpec:
    """Validate a card's mapping (``include:`` already resolved) into a :class:`TaskSpec`; every
    problem is a :class:`TaskCardError` naming ``file`` and the key."""
    if not isinstance(data, Mapping):
        raise TaskCardError(f"{file}: a task card must be a YAML mapping of keys to values.")
    spec = _build(TaskSpec, data, file)
    spec = dataclasses.replace(spec, path=file)
    if not _NAME.match(spec.name):
        raise TaskCardError(f"{file}: key 'name' is {spec.name!r}; a task name is letters, digits, '.', '_', '+' or '-' "
                            f"and starts with a letter or digit (it names folders in the results).")
    if not _NAME.match(spec.dataset):
        raise TaskCardError(f"{file}: key 'dataset' is {spec.dataset!r}; it names one folder under the data root "
                            f"(letters, digits, '.', '_', '+', '-'; no '/' or '..').")
    parts = Path(spec.image_dir).parts
    if Path(spec.image_dir).is_absolute() or ".." in parts or not parts:
        raise TaskCardError(f"{file}: key 'image_dir' is {spec.image_dir!r}; it is a folder inside the data root "
                            f"(relative, no '..'), e.g. images/train2014.")
    if spec.version < 1:
        raise TaskCardError(f"{file}: key 'version' must be a positive integer (bump it when splits, metric or preprocessing change).")
    if not spec.eval_splits:
        raise TaskCardError(f"{file}: key 'eval_splits' must list at least one split.")
    if spec.train_split in spec.eval_splits:
        raise TaskCardError(f"{file}: key 'eval_splits' contains the train split {spec.train_split!r}; k-shot examples would leak into evaluation.")
    if not 0.0 < spec.metric.threshold < 1.0:
        raise TaskCardError(f"{file}: key 'metric.threshold' must lie in (0, 1), got {spec.metric.threshold}.")
    assert spec.metric.iou_convention in IOU_CONVENTIONS and spec.metric.threshold_rule in THRESHOLD_RULES
    if spec.source == "synthref" and spec.synthref is None:
        raise TaskCardError(f"{file}: a card with 'source: synthref' needs a 'synthref:' section (generator settings).")
    if spec.source != "synthref" and spec.synthref is not None:
        raise TaskCardError(f"{file}: key 'synthref' is only allowed with 'source: synthref'.")
    if spec.synthref is not None:
        missing = [s for s in (spec.train_split, *spec.eval_splits) if s not in spec.synthref.images]
        if missing:
            raise TaskCardError(f"{file}: key 'synthref.images' has no image count for split(s) {missing}.")
    return spec


#: how deep ``include:`` chains may go (a card including a card including a card ...)
MAX_INCLUDE_DEPTH = 4
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _read_card(path: Path) -> Any:
    import yaml

    from cptbench.core.yamlio import StrictYamlError, load_yaml

    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except StrictYamlError as exc:
        raise TaskCardError(f"{path}: {exc}.") from exc
    except yaml.YAMLError as exc:
        raise TaskCardError(f"{path}: not valid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskCardError(f"{path}: cannot read the task card: {exc}") from exc


def _included_file(path: Path, ref: Any) -> Path:
    """The card file ``include: ref`` of ``path`` names: a card name (looked up beside the card,
    then among all task folders) or a ``.yaml`` path relative to the card."""
    if not isinstance(ref, str) or not ref.strip():
        raise TaskCardError(f"{path}: key 'include' must name a task card (e.g. include: refcoco), got {ref!r}.")
    if ref.endswith((".yaml", ".yml")):
        target = (path.parent / ref)
        if not target.is_file():
            raise TaskCardError(f"{path}: include: {ref!r} is not a file (looked for {target}).")
        return target
    beside = path.parent / f"{ref}.yaml"
    if beside.is_file():
        return beside
    from cptbench.tasks.cards import card_files

    files = card_files()
    if ref not in files:
        from cptbench.core.registry import unknown_name_message

        raise TaskCardError(f"{path}: include: " + unknown_name_message("task card", ref, files))
    return files[ref]


def card_mapping(path: str | os.PathLike, read: list | None = None, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The card's keys with its ``include:`` resolved: the included card's keys first (itself
    resolved the same way), then this card's, a top-level key replacing the included one whole.
    ``read`` collects every file read (for caches)."""
    path = Path(path)
    if read is not None:
        read.append(path)
    resolved = path.resolve()
    if resolved in _chain:
        names = " -> ".join(p.name for p in (*_chain, resolved))
        raise TaskCardError(f"{path}: include loop ({names}); remove one include.")
    if len(_chain) > MAX_INCLUDE_DEPTH:
        raise TaskCardError(f"{path}: include chain deeper than {MAX_INCLUDE_DEPTH} cards; flatten it.")
    data = _read_card(path)
    if not isinstance(data, Mapping):
        raise TaskCardError(f"{path}: a task card must be a YAML mapping of keys to values.")
    data = dict(data)
    if "include" not in data:
        return data
    base = card_mapping(_included_file(path, data.pop("include")), read, (*_chain, resolved))
    return {**base, **data}


def load_task_card(path: str | os.PathLike, read: list | None = None) -> TaskSpec:
    """Read and validate one card file (``include:`` resolved); its ``name`` must match the file
    name. ``read`` collects every file read."""
    path = Path(path)
    spec = parse_task_card(card_mapping(path, read), str(path))
    if spec.name != path.stem:
        raise TaskCardError(f"{path}: key 'name' is {spec.name!r} but the file is named {path.name!r}; rename one so they match.")
    return spec
