"""Method registry: core methods by import path, everything else through entry points.

Looking up or listing names never imports a method's module; only ``get_method_class`` does.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Mapping

from cptbench.core.registry import Registry
from cptbench.methods.base import Method, MethodContext
from cptbench.methods.options import parse_config

ENTRY_POINT_GROUP = "cptbench.methods"

# Core methods (shipped in cptbench itself). Baselines register through ENTRY_POINT_GROUP.
_CORE: dict[str, tuple[str, tuple[str, ...]]] = {
    "oracle": ("cptbench.methods.oracle:OracleMethod", ()),
    "cpt-blk": ("cptbench.cpt.method:CptBlockMethod", ("cpt",)),
    "cpt-seg": ("cptbench.cpt.method:CptSegMethod", ()),
}


def _import(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=1)
def method_registry() -> Registry[type]:
    """Every method name and alias: the core methods and the ``cptbench.methods`` entry points
    (built once; nothing is imported until a class is asked for)."""
    reg: Registry[type] = Registry("method")
    for name, (path, aliases) in _CORE.items():
        reg.add(name, lambda p=path: _import(p), aliases=aliases, origin=f"core: {path.partition(':')[0]}")
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # An entry point may declare aliases after the object: "name = module:Class [alias1, alias2]".
        # (Read from the raw value: importlib's ``extras`` would split "fine-tune" into two words.)
        _, _, bracket = ep.value.partition("[")
        aliases = tuple(a.strip() for a in bracket.rstrip("] ").split(",") if a.strip())
        reg.add(ep.name, ep.load, aliases=aliases, origin=f"entry point: {ep.module}")
    return reg


def list_methods() -> list[str]:
    """The canonical names of every registered method, sorted."""
    return method_registry().names()


def canonical_method(name: str) -> str:
    """The canonical name of a method name or alias (``UnknownNameError`` for neither)."""
    return method_registry().canonical(name)


def get_method_class(name: str) -> type[Method]:
    """The method class of ``name`` (imported now), with its ``name`` set to the canonical one;
    a ``TypeError`` when it is not a :class:`~cptbench.methods.base.Method` subclass."""
    reg = method_registry()
    canonical = reg.canonical(name)
    cls = reg.get(canonical)
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"method {canonical!r} ({reg.origin(canonical)}) is not a cptbench.methods.Method subclass")
    cls.name = canonical
    return cls


def create_method(name: str, options: Mapping[str, Any] | None = None, context: MethodContext | None = None) -> Method:
    """Instantiate method ``name`` with its options validated into its ``Config``."""
    cls = get_method_class(name)
    config = parse_config(cls.Config, dict(options or {}), method=cls.name)
    return cls(config, context or MethodContext())
