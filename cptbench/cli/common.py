"""What several commands share: option parsing, progress bars, the leaderboard printout (shared
option declarations: :mod:`cptbench.cli.options`).

A neutral module: commands import it, it imports no command.
"""

from __future__ import annotations

import click



def command_line() -> str:
    """This process's command line as a shell would read it (``cptbench run ...``)."""
    import shlex
    import sys

    prog = "cptbench" if sys.argv and sys.argv[0].endswith(("cptbench", "__main__.py", "main.py")) else sys.argv[0]
    return shlex.join([prog, *sys.argv[1:]])


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    """``--set KEY=VALUE`` / ``--set METHOD.KEY=VALUE`` options as a dict."""
    out = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or not key.strip():
            raise click.BadParameter(f"--set expects KEY=VALUE or METHOD.KEY=VALUE, got {v!r}")
        out[key.strip()] = value.strip()
    return out


def parse_name_list(values: tuple[str, ...] | list[str] | None) -> list[str]:
    """Repeated options and comma lists: ``-m cpt -m ft,random`` -> ["cpt", "ft", "random"] (order kept)."""
    from cptbench.core.values import name_list

    return name_list(values)


class ProgressBars:
    """Draws the library's ``progress(label, done, total)`` callbacks with rich on the state's console
    (bytes for archives, counts for images / rows); ``with ProgressBars(state) as bars: f(progress=bars)``."""

    #: labels counted in items (the others are bytes)
    COUNTED = ("images", "import")

    def __init__(self, state):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
                                 TimeElapsedColumn(), console=state.console, transient=True, disable=state.verbosity < 0)
        self._bars: dict[str, int] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if label in self.COUNTED:
            detail = f"{done}/{total}"
        else:
            detail = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        bar = self._bars.get(label)
        if bar is None:
            bar = self._bars[label] = self.progress.add_task(label, total=total, detail=detail)
        self.progress.update(bar, completed=done, total=total, detail=detail)


def show_leaderboard(state, store, tasks=None, published: bool = False, all_published: bool = False,
                     layout: str = "auto", fmt: str = "table") -> None:
    """Rebuild the leaderboard files from ``runs.jsonl`` and print the tables (of ``tasks`` only).

    ``published``: also the published reference rows of the tasks shown (``all_published``: of
    every task). ``fmt``: ``table`` (rich, ``layout`` compact/wide/auto), ``md``, ``csv`` (the long
    CSV), ``json`` or ``latex`` (booktabs), printed to stdout."""
    from cptbench.cli.ui import print_tables
    from cptbench.report.aggregate import aggregate
    from cptbench.report.leaderboard import write_leaderboard
    from cptbench.report.tables import CSV_SCHEMA_VERSION, latex, long_csv, long_json, markdown, wide_tables
    from cptbench.report.selection import load_records, of_tasks

    board = write_leaderboard(store, aggregate(load_records(store)))
    if tasks:  # rows keep the labels given over all rows: the printed table names them as the files do
        rows = of_tasks(store, board.rows, tasks)
        tables = wide_tables(rows)
    else:
        rows, tables = board.rows, board.tables
    pub = None
    if published or all_published:
        from cptbench.report.references import published_rows, select_published

        shown = sorted({r.task for r in rows})
        chosen = select_published(None, None) if all_published else select_published(shown, {(r.task, r.proposals) for r in rows})
        pub = chosen.tables
    if fmt == "table":
        print_tables(state, tables, pub, layout=layout)
        if pub is not None:
            _explain_published(state, shown, chosen, published_rows())
    elif fmt == "md":
        click.echo(markdown([*tables, *(pub or [])]), nl=False)
    elif fmt == "latex":
        click.echo(latex([*tables, *(pub or [])]), nl=False)
    elif fmt == "csv":
        click.echo(long_csv(rows), nl=False)
    elif fmt == "json":
        import json

        doc = {"schema_version": CSV_SCHEMA_VERSION, "rows": long_json(rows)}
        if pub is not None:
            from cptbench.report.references import published_claims, published_rows

            names = {r.task for r in rows}
            doc["published"] = [r for r in published_rows() if all_published or r["task"] in names]
            doc["published_claims"] = [c for c in published_claims() if all_published or c["task"] in names]
        click.echo(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False))
    else:
        raise click.BadParameter(f"--format must be table, md, csv, json or latex, got {fmt!r}")
    state.log(f"[dim]wrote {board.paths['long']}, {board.paths['wide'].name}, {board.paths['markdown'].name}[/]")


def _explain_published(state, shown, chosen, rows) -> None:
    """Say which tasks have no published numbers, how many rows of other proposal settings were
    left out, and the claims made for the tasks shown."""
    from rich.markup import escape

    from cptbench.report.references import claim_text, published_claims

    others = sorted({r["task"] for r in rows})
    for task in chosen.tasks_without:
        state.log(f"[dim]no published numbers for {escape(task)} (published rows exist for {', '.join(others)}: "
                  f"--all-published shows them; the CPT paper's per-shot table is not among them, see README)[/]")
    if chosen.hidden:
        state.log(f"[dim]{chosen.hidden} published rows of other proposal settings left out (--all-published shows them)[/]")
    for c in published_claims():
        if c["task"] in shown:
            state.log(f"[dim]{escape(claim_text(c))}[/]")
