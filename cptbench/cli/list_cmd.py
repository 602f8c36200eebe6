"""``cptbench list tasks|methods``."""

from __future__ import annotations

import click

from .state import pass_state


@click.command("list")
@click.argument("what", type=click.Choice(["tasks", "methods"]))
@pass_state
def list_(state, what) -> None:
    """List the task cards or the registered methods."""
    from rich.console import Console
    from rich.table import Table

    if what == "tasks":
        from ..tasks import get_task, list_tasks

        table = Table("task", "version", "data", "eval splits", "default model", "description")
        for name in list_tasks():
            t = get_task(name)
            table.add_row(name, str(t.version), f"{t.source}:{t.dataset}({t.split_by})", " ".join(t.eval_splits),
                          t.default_model, t.description)
    else:
        from ..methods.registry import method_registry

        reg = method_registry()
        table = Table("method", "aliases", "provided by")
        for name in reg.names():
            table.add_row(name, ", ".join(reg.aliases_of(name)), reg.origin(name))
    Console().print(table)
