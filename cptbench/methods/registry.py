"""Method registry: every method, cptbench's own included, registers through the
``cptbench.methods`` entry-point group (``pyproject.toml``), as a third-party package would.

Looking up or listing names never imports a method's module; only ``get_method_class`` does.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

from cptbench.core.registry import Registry
from cptbench.methods.base import Method, MethodContext
from cptbench.methods.options import parse_config

ENTRY_POINT_GROUP = "cptbench.methods"


@lru_cache(maxsize=1)
def method_registry() -> Registry[type]:
    """The registry of every installed method (built once per process)."""
    reg: Registry[type] = Registry("method")
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # An entry point may declare aliases after the object: "name = module:Class [alias1, alias2]".
        # (Read from the raw value: importlib's ``extras`` would split "fine-tune" into two words.)
        _, _, bracket = ep.value.partition("[")
        aliases = tuple(a.strip() for a in bracket.rstrip("] ").split(",") if a.strip())
        reg.add(ep.name, ep.load, aliases=aliases, origin=f"entry point: {ep.module}")
    return reg


def list_methods() -> list[str]:
    """The canonical names of every installed method."""
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
