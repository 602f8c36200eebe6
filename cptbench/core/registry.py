"""A small name -> object registry whose errors say "did you mean" and list the choices."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterable, TypeVar

from cptbench.core.errors import UsageError

T = TypeVar("T")


class UnknownNameError(UsageError, KeyError):
    """An unknown registry name; ``str()`` carries suggestions and the list of choices."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(name)

    def __str__(self) -> str:
        return unknown_name_message(self.kind, self.name, self.choices)


def unknown_name_message(kind: str, name: str, choices: Iterable[str]) -> str:
    """``unknown <kind> 'name'. Did you mean ...? Choices: ...`` (the close matches, then all)."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Choices: {', '.join(choices) or '(none)'}."


class Registry(Generic[T]):
    """Maps names (and aliases) to lazily created objects.

    ``loader`` is a zero-argument callable returning the object, so registering a name never
    imports the code behind it (the CLI lists methods without importing torch).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._loaders: dict[str, Callable[[], T]] = {}
        self._aliases: dict[str, str] = {}
        self._origin: dict[str, str] = {}

    def add(self, name: str, loader: Callable[[], T], *, aliases: Iterable[str] = (), origin: str = "") -> None:
        """Register ``name`` (and ``aliases``); ``origin`` says where it comes from. A name registered twice is an error."""
        if name in self._loaders or name in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self._origin.get(name, '?')} and {origin})")
        self._loaders[name] = loader
        self._origin[name] = origin
        for alias in aliases:
            self._aliases[alias] = name

    def canonical(self, name: str) -> str:
        """The registered name of a name or alias; :class:`UnknownNameError` ("did you mean") otherwise."""
        if name in self._loaders:
            return name
        if name in self._aliases:
            return self._aliases[name]
        raise UnknownNameError(self.kind, name, list(self._loaders) + list(self._aliases))

    def get(self, name: str) -> T:
        """The object of ``name`` (its loader runs now)."""
        return self._loaders[self.canonical(name)]()

    def names(self) -> list[str]:
        """The registered names (aliases excluded), sorted."""
        return sorted(self._loaders)

    def aliases_of(self, name: str) -> list[str]:
        """The aliases of a registered name, sorted."""
        return sorted(a for a, n in self._aliases.items() if n == name)

    def origin(self, name: str) -> str:
        """Where ``name`` was registered from (e.g. ``entry point: cptbench.cpt.method``)."""
        return self._origin[self.canonical(name)]

    def __contains__(self, name: str) -> bool:
        return name in self._loaders or name in self._aliases
