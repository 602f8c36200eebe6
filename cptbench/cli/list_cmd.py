"""``cptbench list tasks|methods|options [METHOD]``: what can be run and how it can be set, laid out
for an 80-column terminal or as JSON (``--format json``). Descriptions and options are read from
the task cards and the methods themselves (:mod:`cptbench.methods.describe`)."""

from __future__ import annotations

import json

import click

from cptbench.cli.completion import complete_list_name
from cptbench.cli.state import pass_state


@click.command("list")
@click.argument("what", type=click.Choice(["tasks", "methods", "options"]))
@click.argument("method", required=False, shell_complete=complete_list_name)
@click.option("-t", "--task", default=None,
              help="list options: defaults as this task card sets them (default: none, the methods' own).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_state
def list_(state, what, method, task, fmt) -> None:
    """List the task cards, the registered methods with a one-line description, or the --set options
    of METHOD (key, type, default, accepted values, where the default comes from, what it does;
    every method's when METHOD is left out).

    \b
    Examples:
      cptbench list methods
      cptbench list options cpt-seg -t synthref
      cptbench list options ft --format json
    """
    from cptbench.core.errors import UsageError

    if method and what != "options":
        raise UsageError(f"`list {what}` takes no name; `cptbench list options {method}` lists a method's options.")
    doc = {"tasks": _tasks, "methods": _methods, "options": _options}[what](method, task)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1, default=str))
        return
    {"tasks": _print_tasks, "methods": _print_methods, "options": _print_options}[what](doc)


def _tasks(_method, _task) -> list[dict]:
    from cptbench.tasks.cards import get_task, list_tasks

    out = []
    for name in list_tasks():
        t = get_task(name)
        out.append({"task": t.name, "version": t.version, "source": t.source, "dataset": t.dataset,
                    "split_by": t.split_by, "eval_splits": list(t.eval_splits), "default_model": t.default_model,
                    "description": " ".join(t.description.split())})
    return out


def _methods(_method, _task) -> list[dict]:
    from cptbench.methods.describe import summary
    from cptbench.methods.registry import get_method_class, method_registry

    reg = method_registry()
    out = []
    for name in reg.names():
        try:
            cls = get_method_class(name)
            about, trains, labels = summary(cls), bool(cls.trains), bool(cls.uses_eval_labels)
        except Exception as exc:  # a plug-in that fails to import is listed with the reason
            about, trains, labels = f"(cannot be loaded: {type(exc).__name__}: {exc})", None, None
        out.append({"method": name, "aliases": list(reg.aliases_of(name)), "description": about, "trains": trains,
                    "uses_eval_labels": labels, "provided_by": reg.origin(name)})
    return out


def _options(method, task) -> dict[str, list[dict]]:
    from cptbench.methods.describe import describe_options
    from cptbench.methods.registry import get_method_class, list_methods
    from cptbench.tasks.cards import get_task

    spec = get_task(task) if task else None
    names = [method] if method else list_methods()
    out = {}
    for name in names:
        cls = get_method_class(name)
        out[cls.name] = [o.to_json() for o in describe_options(cls, spec)]
    return out


def _table(*columns):
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for name, kw in columns:
        table.add_column(name, **kw)
    return table


def _print_tasks(doc) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console()
    table = _table(*((c, {"overflow": "fold"}) for c in ("task", "v", "data", "eval splits", "default model")))
    for t in doc:
        data = t["dataset"] if t["source"] == t["dataset"] else f"{t['source']}:{t['dataset']}"
        table.add_row(t["task"], str(t["version"]), f"{data}({t['split_by']})", " ".join(t["eval_splits"]), t["default_model"])
    out.print(table)
    about = _table(("task", {"no_wrap": True}), ("description", {"ratio": 1}))
    for t in doc:
        about.add_row(t["task"], escape(t["description"]))
    out.print(about)


def _print_methods(doc) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console()
    table = _table(("method", {"no_wrap": True}), ("aliases", {}), ("description", {"ratio": 1}))
    for m in doc:
        marks = "" if m["trains"] is None else (" (trains)" if m["trains"] else "") + (" (reads eval labels)" if m["uses_eval_labels"] else "")
        table.add_row(m["method"], ", ".join(m["aliases"]), escape(m["description"] + marks))
    out.print(table)
    plugins = sorted({m["provided_by"] for m in doc})
    out.print(f"[dim]methods register through the cptbench.methods entry point group ({escape(', '.join(plugins))}); "
              f"`cptbench list options METHOD` lists a method's --set options[/]", highlight=False)


def _print_options(doc) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console()
    for name, options in doc.items():
        table = _table(("--set key", {"no_wrap": True}), ("type", {"no_wrap": True}), ("default", {"max_width": 14}),
                       ("accepts", {"ratio": 1}), ("default from", {"max_width": 14}))
        table.title = f"{name}: --set KEY=VALUE (or --set {name}.KEY=VALUE)"
        table.title_justify = "left"
        for o in options:
            default = json.dumps(o["default"]) if not isinstance(o["default"], str) else o["default"]
            if isinstance(o["default"], float):
                default = f"{o['default']:.4g}"
            table.add_row(o["key"], o["type"], escape(default), escape(o["range"] or "see the method's docs"), escape(o["source"]))
            if o["help"]:
                table.add_row("", "", "", f"[dim]{escape(o['help'])}[/]", "")
        out.print(table)
