"""``cptbench plot``: the figures of a results folder as PNG (300 dpi), PDF and SVG."""

from __future__ import annotations

from pathlib import Path

import click

from cptbench.cli.options import figure_filter_options, results_option
from cptbench.cli.common import parse_name_list
from cptbench.cli.state import pass_state

#: the figure kinds, in the order they are drawn by default
KINDS = ("shots", "rsd", "candidates")


@click.command()
@results_option
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: <results>/plots).")
@figure_filter_options
@click.option("--kind", "kinds", multiple=True, help=f"Which figures (repeatable or comma list): {', '.join(KINDS)}; default all.")
@click.option("--candidates-k", type=click.IntRange(min=0), default=None,
              help="k of the accuracy-vs-candidates figure (default: the smallest k > 0 shown).")
@click.option("--format", "formats", default="png,pdf,svg", show_default=True,
              help="Comma list of png (300 dpi), pdf and svg (vector; SVG keeps text as text).")
@pass_state
def plot(state, results, out, tasks, methods, shots, y_range, kinds, candidates_k, formats) -> None:
    """Accuracy against shots (per split: mean line, ±1 std band, seeds as points, one colour per
    method in every figure; oracle and chance as reference lines that do not set the scale;
    published numbers as stars), RSD against shots (k with 3+ seeds) and accuracy against the
    number of candidates.

    \b
    Examples:
      cptbench plot -m cpt-blk,ft --kind shots,rsd
      cptbench plot -t synthref -k 1,4,16 --y-range 0,60 --format pdf
    """
    from cptbench.core.errors import UsageError
    from cptbench.report.plots import all_figures, file_stem
    from cptbench.report.figure_style import save
    from cptbench.report.selection import filtered

    want = parse_name_list(kinds) or list(KINDS)
    bad = [k for k in want if k not in KINDS]
    if bad:
        raise UsageError(f"--kind {', '.join(bad)}: choose from {', '.join(KINDS)}.")
    fmts = parse_name_list([formats])
    if not fmts or any(f not in ("png", "svg", "pdf") for f in fmts):
        raise UsageError(f"--format {formats!r}: a comma list of png, svg, pdf.")
    store, records, rows = filtered(results, tasks, methods, shots)
    folder = Path(out) if out else store.layout.plots
    written = []
    k_cand = candidates_k if candidates_k is not None else (shots[0] if len(shots or ()) == 1 else None)
    for kind, key, fig, series in all_figures(store, records, rows, want, k_cand, y_mode=y_range):
        written += save(fig, folder / file_stem(kind, key), fmts)
        state.log(f"{kind}: {file_stem(kind, key)} ({len(series)} series)", level=1)
    if not written:
        raise UsageError("nothing to plot with these filters.")
    state.log(f"wrote {len(written)} files to {folder}/: " + ", ".join(sorted({p.stem for p in written})))
