"""``cptbench leaderboard``: rebuild the leaderboard CSV/Markdown from runs.jsonl and print it."""

from __future__ import annotations

import click

from .run_cmd import DEFAULT_RESULTS
from .state import friendly_errors, pass_state


def show_leaderboard(state, store, tasks=None, published: bool = False) -> None:
    from ..aggregate import aggregate, write_leaderboard, wide_tables
    from .ui import print_tables

    records = store.records()
    if not records:
        raise click.ClickException(f"no finished runs in {store.runs_path}; start with `cptbench run`.")
    out = write_leaderboard(store, aggregate(records))
    rows = [r for r in out["rows"] if tasks is None or r["task"] in tasks]
    pub = None
    if published:
        from ..references import published_tables

        pub = published_tables(tasks)
    print_tables(state, wide_tables(rows), pub)
    state.log(f"[dim]wrote {out['paths']['long']}, {out['paths']['wide'].name}, {out['paths']['markdown'].name}[/]")


@click.command()
@click.option("--results", type=click.Path(file_okay=False), default=DEFAULT_RESULTS, show_default=True, help="Results folder.")
@click.option("-t", "--task", "tasks", multiple=True, help="Only these tasks in the printed table (the CSVs hold all).")
@click.option("--published", is_flag=True, help="Also show published reference numbers (marked as published, with their proposal setting).")
@pass_state
@friendly_errors
def leaderboard(state, results, tasks, published) -> None:
    """Aggregate runs.jsonl into leaderboard.csv (long), leaderboard_wide.csv and leaderboard.md."""
    from ..store import ResultsStore

    show_leaderboard(state, ResultsStore(results), tasks=list(tasks) or None, published=published)
