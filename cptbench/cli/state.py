"""The typed state shared by CLI commands, the list parser they share, and :func:`describe_error`:
the message and exit code of an exception. The error boundary that uses it is
:meth:`cptbench.cli.main.LazyGroup.invoke`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import click


@dataclass
class AppState:
    """Options every command shares (``-v``/``-q`` verbosity, ``--debug``) and the log console."""

    verbosity: int = 0
    debug: bool = False
    _console: Any = field(default=None, repr=False)

    @property
    def console(self):
        """Rich console on stderr for logs and progress (stdout keeps the tables)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self._console

    def log(self, message: str, level: int = 0) -> None:
        """Print ``message`` (rich markup) on the log console when verbosity is at least ``level``."""
        if self.verbosity >= level:
            self.console.print(message, highlight=False)


pass_state = click.make_pass_decorator(AppState, ensure=True)


def describe_error(exc: BaseException) -> tuple[int, str]:
    """(exit code, one message) for an exception that reached the CLI: 2 for usage, 1 for data and
    everything else. The message names the file or record and the fix where the error knows them."""
    from cptbench.core.errors import CptbenchError

    if isinstance(exc, CptbenchError):
        return exc.exit_code, str(exc)
    if isinstance(exc, OSError):
        where = exc.filename or ""
        what = exc.strerror or str(exc)
        fix = {
            "PermissionError": "check the permissions, or pick another folder",
            "IsADirectoryError": "a file was expected there",
            "NotADirectoryError": "a folder was expected there; move the file away",
            "FileExistsError": "move it away or pick another folder",
            "FileNotFoundError": "check the path",
        }.get(type(exc).__name__, "check the path and the disk")
        if getattr(exc, "errno", None) == 28:
            fix = "free some disk space and run the same command again (finished work is kept)"
        return 1, f"{where + ': ' if where else ''}{what} ({fix})."
    if isinstance(exc, MemoryError):
        return 1, "out of memory; lower --batch-size (finished work is kept: run the same command again)."
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, RuntimeError) and "out of memory" in text.lower():
        return 1, f"the device ran out of memory ({text[:160]}); lower --batch-size and run the same command again."
    return 1, (f"internal error: {type(exc).__name__}: {text[:300]}. This is a bug in cptbench or in a plug-in "
               f"method, not in your input; rerun with --debug for the traceback and report it.")


def parse_int_list(values: tuple[str, ...] | str | None, what: str) -> list[int]:
    """Accept repeated options and comma lists: ``-k 0 -k 1,2`` -> [0, 1, 2] (order kept, no repeats)."""
    from cptbench.core.values import int_list

    return int_list(values, what)
