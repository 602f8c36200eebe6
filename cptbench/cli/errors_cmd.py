"""``cptbench errors``: the expressions a method gets wrong at every seed."""

from __future__ import annotations

from pathlib import Path

import click

from cptbench.cli.options import data_options, results_option

from cptbench.cli.completion import complete_methods, complete_tasks
from cptbench.cli.state import pass_state
from cptbench.core.defaults import DEFAULT_TASK


@click.command()
@click.option("-m", "--method", default="cpt", show_default=True, shell_complete=complete_methods,
              help="Method label as the leaderboard prints it (cpt-blk, 'cpt-blk[score=auto]'); the default as in `run`.")
@click.option("-t", "--task", default=DEFAULT_TASK, show_default=True, shell_complete=complete_tasks,
              help="Task card name (the default as in `run`).")
@click.option("--split", default=None, help="Eval split, e.g. val (default: every split the method ran on).")
@click.option("-k", "--shots", type=click.IntRange(min=0), default=None,
              help="k of the runs (default: the smallest k > 0 the method ran, else 0).")
@click.option("--min-wrong", type=click.IntRange(min=1), default=None,
              help="Wrong at at least this many seeds (default: at every seed).")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True, help="Rows to print (the CSV holds all).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="Write every hard expression to this CSV.")
@click.option("--model", default=None, help="Only runs of this model (when the method ran with several).")
@results_option
@data_options
@click.option("--proposals", "proposals_file", default=None, help="The detections file the runs used (runs with det: proposals).")
@pass_state
def errors(state, method, task, split, shots, min_wrong, top, csv_path, model, results, data_root, images, proposals_file) -> None:
    """The hardest expressions of METHOD on TASK/SPLIT: wrong at every seed (or --min-wrong), with
    the expression, the chosen and the true box (xyxy pixels) and the score margin (chosen minus
    the best-scoring correct candidate, mean over the wrong seeds; large = confidently wrong).

    \b
    Examples:
      cptbench errors                       # cpt on synthref, every split, as `run` defaults
      cptbench errors -m cpt-blk -t synthref --split testA -k 1 --csv hard.csv
    """
    from rich.console import Console

    from cptbench.core.errors import UsageError
    from cptbench.report.aggregate import aggregate
    from cptbench.report.data import open_task
    from cptbench.report.hardest import to_csv
    from cptbench.report.selection import load_records, select_rows
    from cptbench.results.store import ResultsStore

    store = ResultsStore(results)
    records = load_records(store)
    rows = select_rows(aggregate(records), method, task=task, splits=[split] if split else None, model=model)
    ks = sorted({r.shots for r in rows})
    k = shots if shots is not None else next((x for x in ks if x > 0), ks[0])
    rows = [r for r in rows if r.shots == k]
    if not rows:
        raise UsageError(f"{method!r} has no runs on {task} {split or ''} at k={k} (it has k = {', '.join(map(str, ks))}).")
    _, ds = open_task(task, data_root, images)
    splits = [s for s in dict.fromkeys(r.split for r in rows)]
    out = Console()
    every = []
    for sp in splits:
        here = [r for r in rows if r.split == sp]
        if len(here) > 1:
            raise UsageError(f"{method!r} matches several configs or models on {task} {sp} k={k} ("
                             + ", ".join(f"{r.label} ({r.model})" for r in here) + "); name one label, or give --model.")
        items = _split_table(state, out, store, records, here[0], ds, task, k, min_wrong, top, proposals_file)
        every += items
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        Path(csv_path).write_text(to_csv(every), encoding="utf-8")
        state.log(f"wrote {csv_path} ({len(every)} rows)")


def _split_table(state, out, store, records, row, ds, task, k, min_wrong, top, proposals_file) -> list:
    """Print the hardest expressions of one split's row; returns them."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from cptbench.report.hardest import hardest
    from cptbench.report.selection import records_of

    recs = records_of(records, row)
    items = hardest(store, recs, ds, min_wrong=min_wrong, proposals_file=proposals_file)
    need = f"at least {min_wrong} of" if min_wrong else "all"
    split = row.split
    out.print(f"{escape(row.label)} on {task} {split}, k={k}: {len(items)} of {row.n} expressions wrong at "
              f"{need} {len(recs)} seed(s) ({row.model}, proposals {row.proposals})", highlight=False)
    if items:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
        table.add_column("#", justify="right")
        table.add_column("expression", ratio=1, overflow="fold")
        table.add_column("wrong", justify="right", no_wrap=True)
        table.add_column("chosen box (IoU)", no_wrap=True)
        table.add_column("true box", no_wrap=True)
        table.add_column("margin", justify="right", no_wrap=True)
        fmt = lambda b: "-" if b is None else "[" + ",".join(f"{v:.0f}" for v in b) + "]"  # noqa: E731
        for i, h in enumerate(items[:top], 1):
            margin = "no hit" if h.margin_mean is None else f"{h.margin_mean:+.3g}"
            table.add_row(str(i), f"{escape(h.expression)} [dim]({h.example_id})[/]", f"{h.n_wrong}/{h.n_seeds}",
                          escape(f"#{h.chosen} {fmt(h.chosen_box)} ({h.chosen_iou:.2f})"), escape(fmt(h.true_box)), margin)
        out.print(table)
        if len(items) > top:
            state.log(f"[dim]{len(items) - top} more; --top N or --csv FILE for all[/]")
    return items
