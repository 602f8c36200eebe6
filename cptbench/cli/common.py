"""What several commands share: the results-folder default, option parsing, the leaderboard printout.

A neutral module: commands import it, it imports no command.
"""

from __future__ import annotations

import os

import click

#: the results folder of every command (``--results``), unless $CPTBENCH_RESULTS says otherwise
DEFAULT_RESULTS = os.environ.get("CPTBENCH_RESULTS", "cptbench-results")


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
    out: list[str] = []
    for v in values or ():
        for part in str(v).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def show_leaderboard(state, store, tasks=None, published: bool = False) -> None:
    """Rebuild the leaderboard files from ``runs.jsonl`` and print the tables (of ``tasks`` only)."""
    from ..aggregate import aggregate, wide_tables, write_leaderboard
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
