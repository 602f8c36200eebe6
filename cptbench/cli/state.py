"""The typed state shared by CLI commands, and the mapping of library errors to clean CLI errors."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import click


@dataclass
class AppState:
    verbosity: int = 0
    _console: Any = field(default=None, repr=False)

    @property
    def console(self):
        """Rich console on stderr for logs and progress (stdout keeps the tables)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def log(self, message: str, level: int = 0) -> None:
        if self.verbosity >= level:
            self.console.print(message, highlight=False)


pass_state = click.make_pass_decorator(AppState, ensure=True)


def friendly_errors(fn):
    """Turn library errors (bad names, bad cards, bad data) into one-line CLI errors."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..data.errors import DataError
        from ..methods.base import ConfigError
        from ..registry import UnknownNameError
        from ..taskspec import TaskCardError

        try:
            return fn(*args, **kwargs)
        except (UnknownNameError, TaskCardError, DataError, ConfigError) as exc:
            raise click.ClickException(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished runs and saved predictions are kept; run the same command again to resume.", err=True)
            raise SystemExit(130)

    return wrapper


def parse_int_list(values: tuple[str, ...] | str | None, what: str) -> list[int]:
    """Accept repeated options and comma lists: ``-k 0 -k 1,2`` -> [0, 1, 2] (order kept, no repeats)."""
    if values is None:
        return []
    if isinstance(values, (str, int)):
        values = (str(values),)
    out: list[int] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                n = int(part)
            except ValueError:
                raise click.BadParameter(f"{what} must be integers, got {part!r}") from None
            if n < 0:
                raise click.BadParameter(f"{what} must be >= 0, got {n}")
            if n not in out:
                out.append(n)
    return out
