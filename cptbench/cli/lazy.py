"""A Click group whose subcommands live in their own modules and are imported only when used."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Mapping

import click


class LazyCommands(click.Group):
    """``commands_table``: name -> (module, attribute). Listing imports nothing; a name is imported
    when it runs or shows its help. Unknown names get "did you mean"."""

    def __init__(self, commands_table: Mapping[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.commands_table = dict(commands_table or {})

    def _available(self, name: str) -> bool:
        module = self.commands_table[name][0]
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    def list_commands(self, ctx):
        """The names whose module is installed, sorted (nothing is imported)."""
        return sorted(n for n in self.commands_table if self._available(n))

    def get_command(self, ctx, name):
        """The command ``name``, imported now; None for an unknown or uninstalled name."""
        if name not in self.commands_table or not self._available(name):
            return None
        module, attr = self.commands_table[name]
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx, args):
        """As Click's, but an unknown command name is a usage error with "did you mean"."""
        name = args[0] if args else None
        if name is not None and not name.startswith("-") and self.get_command(ctx, name) is None:
            from cptbench.core.registry import unknown_name_message

            raise click.UsageError(unknown_name_message("command", name, self.list_commands(ctx)), ctx)
        return super().resolve_command(ctx, args)
