"""``cptbench list tasks|methods``: tables laid out for an 80-column terminal."""

from __future__ import annotations

import click

from cptbench.cli.state import pass_state


@click.command("list")
@click.argument("what", type=click.Choice(["tasks", "methods"]))
@pass_state
def list_(state, what) -> None:
    """List the task cards or the registered methods."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console()
    if what == "tasks":
        from cptbench.tasks.cards import get_task, list_tasks

        specs = [get_task(name) for name in list_tasks()]
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
        for col in ("task", "v", "data", "eval splits", "default model"):
            table.add_column(col, overflow="fold")
        for t in specs:
            data = t.dataset if t.source == t.dataset else f"{t.source}:{t.dataset}"
            table.add_row(t.name, str(t.version), f"{data}({t.split_by})", " ".join(t.eval_splits),
                          t.default_model)
        out.print(table)
        about = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
        about.add_column("task", no_wrap=True)
        about.add_column("description", ratio=1)
        for t in specs:
            about.add_row(t.name, escape(" ".join(t.description.split())))
        out.print(about)
    else:
        from cptbench.methods.registry import method_registry

        reg = method_registry()
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
        for col in ("method", "aliases", "provided by"):
            table.add_column(col, overflow="fold")
        for name in reg.names():
            table.add_row(name, ", ".join(reg.aliases_of(name)), reg.origin(name))
        out.print(table)
