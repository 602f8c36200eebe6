"""``cptbench leaderboard``: rebuild the leaderboard CSV/Markdown from runs.jsonl and print it."""

from __future__ import annotations

import click

from .common import DEFAULT_RESULTS, parse_name_list, show_leaderboard
from .state import pass_state


@click.command()
@click.option("--results", type=click.Path(file_okay=False), default=DEFAULT_RESULTS, show_default=True, help="Results folder.")
@click.option("-t", "--task", "tasks", multiple=True, help="Only these tasks in the printed table (repeatable or comma list; the CSVs hold all).")
@click.option("--published", is_flag=True, help="Also show published reference numbers (marked as published, with their proposal setting).")
@pass_state
def leaderboard(state, results, tasks, published) -> None:
    """Aggregate runs.jsonl into leaderboard.csv (long), leaderboard_wide.csv and leaderboard.md."""
    from ..store import ResultsStore

    show_leaderboard(state, ResultsStore(results), tasks=parse_name_list(tasks) or None, published=published)
