"""``cptbench leaderboard``: rebuild the leaderboard CSV/Markdown from runs.jsonl and print it."""

from __future__ import annotations

import click

from cptbench.cli.options import results_option
from cptbench.cli.common import parse_name_list, show_leaderboard
from cptbench.cli.state import pass_state


@click.command()
@results_option
@click.option("-t", "--task", "tasks", multiple=True, help="Only these tasks in the printed table (repeatable or comma list; the CSVs hold all).")
@click.option("--published", is_flag=True, help="Also show published reference numbers of the tasks shown (marked as published, with their proposal setting).")
@click.option("--all-published", is_flag=True, help="Show the published reference numbers of every task, not only of those in the results.")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "latex"]), default="table", show_default=True,
              help="table: for the terminal; md: Markdown; csv: the long CSV; json: the long rows; latex: booktabs tables.")
@click.option("--layout", type=click.Choice(["auto", "compact", "full", "wide"]), default="auto", show_default=True,
              help="Terminal tables: compact (one line per row, fits 80 columns: mean ± std and RSD), full (one line "
                   "per row with the 95% interval; `wide` is its old name), auto (full when the terminal is wide enough).")
@pass_state
def leaderboard(state, results, tasks, published, all_published, fmt, layout) -> None:
    """Aggregate runs.jsonl into leaderboard.csv (long), leaderboard_wide.csv and leaderboard.md.

    \b
    Examples:
      cptbench leaderboard --published
      cptbench leaderboard --format latex > table.tex
      cptbench leaderboard -t synthref --format csv
    """
    from cptbench.results.store import ResultsStore

    show_leaderboard(state, ResultsStore(results), tasks=parse_name_list(tasks) or None, published=published,
                     all_published=all_published, layout=layout, fmt=fmt)
