"""The leaderboard files of a results folder, rebuilt from ``runs.jsonl`` alone.

Where they live is :attr:`cptbench.results.layout.ResultsLayout.leaderboards`' to say: the long
CSV, the wide CSV and the Markdown tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cptbench.report.aggregate import LeaderboardRow, aggregate
from cptbench.report.tables import WideTable, long_csv, markdown, wide_csv, wide_tables
from cptbench.results.layout import ResultsLayout
from cptbench.core.files import write_atomic
from cptbench.results.store import ResultsStore


@dataclass(frozen=True)
class Leaderboard:
    """What :func:`write_leaderboard` wrote: the files (``long``, ``wide``, ``markdown``) and the
    rows and tables in them."""

    paths: dict[str, Path]
    rows: list[LeaderboardRow]
    tables: list[WideTable]


def write_leaderboard(store: ResultsStore, rows: Sequence[LeaderboardRow] | None = None) -> Leaderboard:
    """Write the leaderboard files of ``store`` from ``rows`` (default: its records, aggregated),
    each atomically."""
    if rows is None:
        rows = aggregate(store.records())
    rows = list(rows)
    tables = wide_tables(rows)
    paths = store.layout.leaderboards
    write_atomic(paths["long"], long_csv(rows).encode(), kill_point="leaderboard.tmp")
    write_atomic(paths["wide"], wide_csv(tables).encode())
    write_atomic(paths["markdown"], markdown(tables).encode())
    return Leaderboard(paths, rows, tables)


def remove_leaderboard(layout: ResultsLayout) -> None:
    """Delete the leaderboard files (a folder without runs has no leaderboard)."""
    for path in layout.leaderboards.values():
        path.unlink(missing_ok=True)
