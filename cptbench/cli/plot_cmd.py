"""``cptbench plot``: the figures of a results folder as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import click

from cptbench.cli.options import results_option
from cptbench.cli.common import parse_name_list
from cptbench.cli.state import pass_state

#: the figure kinds, in the order they are drawn by default
KINDS = ("shots", "rsd", "candidates")


@click.command()
@results_option
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: <results>/plots).")
@click.option("-t", "--task", "tasks", multiple=True, help="Only these tasks (repeatable or comma list).")
@click.option("-m", "--method", "methods", multiple=True, help="Only these methods/labels (repeatable or comma list).")
@click.option("--kind", "kinds", multiple=True, help=f"Which figures (repeatable or comma list): {', '.join(KINDS)}; default all.")
@click.option("-k", "--shots", type=click.IntRange(min=0), default=None,
              help="k of the accuracy-vs-candidates figure (default: the smallest k > 0).")
@click.option("--format", "formats", default="png,svg", show_default=True, help="Comma list of png, svg, pdf.")
@pass_state
def plot(state, results, out, tasks, methods, kinds, shots, formats) -> None:
    """Accuracy against shots (per split: mean line, ±1 std band, seeds as points, one line per
    method), RSD against shots, and accuracy against the number of candidates.

    \b
    Example:
      cptbench plot -m cpt-blk,ft --kind shots,rsd
    """
    from cptbench.core.errors import UsageError
    from cptbench.report.aggregate import aggregate
    from cptbench.report.plots import all_figures, file_stem, save
    from cptbench.report.selection import group_key, load_records, select_all
    from cptbench.results.store import ResultsStore

    store = ResultsStore(results)
    want = parse_name_list(kinds) or list(KINDS)
    bad = [k for k in want if k not in KINDS]
    if bad:
        raise UsageError(f"--kind {', '.join(bad)}: choose from {', '.join(KINDS)}.")
    fmts = parse_name_list([formats])
    if not fmts or any(f not in ("png", "svg", "pdf") for f in fmts):
        raise UsageError(f"--format {formats!r}: a comma list of png, svg, pdf.")
    records = load_records(store, parse_name_list(tasks) or None)
    rows = aggregate(records)
    names = parse_name_list(methods)
    if names:
        rows = select_all(rows, names)
        keys = {group_key(r) for r in rows}
        records = [r for r in records if group_key(r) in keys]
    folder = Path(out) if out else store.layout.plots
    written = []
    for kind, key, fig, series in all_figures(store, records, rows, want, shots):
        written += save(fig, folder / file_stem(kind, key), fmts)
        state.log(f"{kind}: {file_stem(kind, key)} ({len(series)} series)", level=1)
    if not written:
        raise UsageError("nothing to plot with these filters.")
    state.log(f"wrote {len(written)} files to {folder}/: " + ", ".join(sorted({p.stem for p in written})))
