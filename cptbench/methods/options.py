"""Method options: one owner for turning ``--set`` values, study files and task-card defaults into a
method's frozen ``Config``.

* :func:`parse_config` builds a config dataclass from strings or values (unknown keys get "did you
  mean"; wrong types and values are refused with the method and option named);
* :func:`card_method_defaults` reads a card's ``method_defaults`` (aliases resolved, misspellings
  refused even for methods not asked for);
* :func:`resolve_options` merges card defaults and the user's options (``key`` or ``method.key``);
* :func:`check_scopes` refuses a scoped option whose method is not in the request;
* :func:`config_dict` is a config's JSON-ready form (what the run identity hashes).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from cptbench.core.errors import UsageError
from cptbench.core.registry import unknown_name_message
from cptbench.methods.base import ConfigError, Method


def parse_config(config_cls: type, values: Mapping[str, Any], *, method: str) -> Any:
    """Build ``config_cls`` from ``values`` (strings from the command line are converted to the
    field's type); unknown keys get "did you mean"; a number that is not finite (``inf``, ``nan``)
    is refused for every option of every method (no option means "infinitely many")."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    kwargs = {}
    for key, raw in values.items():
        key = key.replace("-", "_")
        if key not in fields:
            raise ConfigError(unknown_name_message(f"option of method {method!r}:", key, fields))
        value = _convert(raw, fields[key], method)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"method {method!r}: option {key!r} must be a finite number, got {raw!r}")
        kwargs[key] = value
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


def card_method_defaults(task) -> dict[str, dict[str, Any]]:
    """A card's ``method_defaults`` with aliases resolved to canonical names and every option
    checked against the method's config; a misspelt method or option is a ``TaskCardError``."""
    from cptbench.methods.registry import get_method_class, method_registry
    from cptbench.tasks.spec import TaskCardError

    reg = method_registry()
    out: dict[str, dict[str, Any]] = {}
    for name, options in task.method_defaults.items():
        if name not in reg:
            raise TaskCardError(f"{task.path}: method_defaults: " + unknown_name_message("method", name, reg.names()))
        canonical = reg.canonical(name)
        if canonical in out:
            raise TaskCardError(f"{task.path}: method_defaults names {canonical!r} twice (once as {name!r}); keep one entry.")
        cls = get_method_class(canonical)
        try:
            parse_config(cls.Config, dict(options), method=canonical)
        except UsageError as exc:
            raise TaskCardError(f"{task.path}: method_defaults.{name}: {exc}") from None
        out[canonical] = dict(options)
    return out


def resolve_options(cls: type[Method], task, options: Mapping[str, Any]) -> dict[str, Any]:
    """Task-card defaults for the method, then the user's options (unscoped or scoped to it)."""
    from cptbench.methods.registry import get_method_class

    merged = dict(card_method_defaults(task).get(cls.name, {}))
    for key, value in options.items():
        scope, dot, name = key.rpartition(".")
        if not dot:
            merged[key] = value
        elif scope == cls.name or (scope and get_method_class(scope) is cls):
            merged[name] = value
    return merged


def method_config(cls: type[Method], task, options: Mapping[str, Any]) -> Any:
    """The frozen config of method ``cls`` on ``task`` with the user's ``options``."""
    return parse_config(cls.Config, resolve_options(cls, task, options), method=cls.name)


def check_scopes(options: Mapping[str, Any], methods: Sequence[type[Method]]) -> None:
    """A scoped option (``cpt-seg.alpha``) must name a method of the request."""
    from cptbench.methods.registry import method_registry

    asked = {m.name for m in methods}
    for key in options:
        scope, dot, _ = key.rpartition(".")
        if dot and scope:
            canonical = method_registry().canonical(scope)
            if canonical not in asked:
                raise UsageError(f"--set {key}: method {scope!r} is not among the methods of this command ({', '.join(sorted(asked))}).")


def has_option(cls: type[Method], name: str) -> bool:
    """Whether method ``cls`` has the option ``name``."""
    return dataclasses.is_dataclass(cls.Config) and any(f.name == name for f in dataclasses.fields(cls.Config))
