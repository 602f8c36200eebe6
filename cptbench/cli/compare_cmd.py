"""``cptbench compare A B``: paired comparison of two methods per split and k."""

from __future__ import annotations

import click

from cptbench.cli.options import results_option
from cptbench.cli.common import parse_name_list
from cptbench.cli.state import parse_int_list, pass_state


@click.command()
@click.argument("a")
@click.argument("b")
@results_option
@click.option("-t", "--task", default=None, help="Only this task (default: every task both ran).")
@click.option("-k", "--shots", multiple=True, help="Only these k (repeatable or comma list; default: every k both ran).")
@click.option("--split", "splits", multiple=True, help="Only these splits (repeatable or comma list).")
@click.option("--model", default=None, help="Only runs of this model (when a method ran with several).")
@click.option("--proposals", default=None, help="Only runs with this proposal setting (gt or det:<file>:<sha>).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_state
def compare(state, a, b, results, task, shots, splits, model, proposals, fmt) -> None:
    """Compare method A against method B (labels as the leaderboard prints them, e.g. cpt-blk,
    'cpt-blk[score=auto]', or a method name; differences are A - B, in accuracy points).

    \b
    k > 0, 2+ shared seeds: paired over seeds (both methods see the same k-shot draw per seed):
      paired t-test, exact sign-flip permutation test, Wilcoxon signed-rank, Cohen's d_z.
    One shared seed or zero-shot: paired over expressions (from the predictions files):
      McNemar's exact test and a paired bootstrap 95% interval (10,000 resamples, seed 0).
    Headline per k: the gain averaged over splits and the RSD reduction 1 - RSD_A/RSD_B.
    Pairs that differ in model, proposals, data, limit or k-shot draws are flagged, never hidden.

    \b
    Examples:
      cptbench compare cpt-blk ft -k 1
      cptbench compare 'cpt-blk[score=auto]' 'cpt-blk[score=auto-safe]' --task synthref
    """
    from cptbench.report.aggregate import aggregate
    from cptbench.report.compare import compare as run_compare
    from cptbench.report.selection import load_records
    from cptbench.results.store import ResultsStore

    store = ResultsStore(results)
    records = load_records(store)
    rows = aggregate(records)
    cmp = run_compare(store, records, rows, a, b, task=task,
                      shots=parse_int_list(shots, "--shots") if shots else None,
                      splits=parse_name_list(splits) or None, model=model, proposals=proposals)
    if fmt == "json":
        import json

        from cptbench.report.tables import json_safe

        # NaN (a split without expressions) as null, as `leaderboard --format json`: the output stays JSON
        click.echo(json.dumps(json_safe(cmp.to_json()), indent=1, sort_keys=True, default=float, allow_nan=False))
        return
    print_comparison(cmp)


def print_comparison(cmp, console=None) -> None:
    """Print a :class:`~cptbench.report.compare.Comparison` as rich tables (seed-paired, then
    expression-paired), its headline figures and its notes."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cptbench.report.compare import (EXPRESSION_HEADER, SEED_HEADER, expression_rows, headline_lines, note_lines,
                                         seed_counts, seed_rows)

    out = console or Console()
    la, lb = cmp.splits[0].a.label, cmp.splits[0].b.label
    tasks = sorted({sc.task for sc in cmp.splits})
    out.print(f"[bold]A = {escape(la)}[/]   [bold]B = {escape(lb)}[/]   task {escape(', '.join(tasks))}   (A-B in accuracy points)",
              highlight=False)
    for title, header, rows in ((f"paired over seeds ({seed_counts(cmp)}; same k-shot draw per seed)", SEED_HEADER, seed_rows(cmp)),
                                ("paired over expressions (one run each)", EXPRESSION_HEADER, expression_rows(cmp))):
        if not rows:
            continue
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                      padding=(0, 0, 0, 0))
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
        for row in rows:
            table.add_row(*map(escape, row))
        out.print(table)
    for line in headline_lines(cmp):
        out.print(f"[bold]headline[/] {escape(line)}" if not line.startswith("  ") else f"[dim]{escape(line)}[/]", highlight=False)
    for line in note_lines(cmp):
        style = "red" if line.startswith("differs:") else "yellow"
        out.print(f"[{style}]note:[/] {escape(line)}", highlight=False)
