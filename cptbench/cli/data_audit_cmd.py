"""``cptbench data audit``: can label-free heuristics, or baselines that never look at the image,
beat random on a task's data?"""

from __future__ import annotations

import click

from cptbench.cli.options import data_options, results_option, strict_data_option
from cptbench.cli.common import parse_name_list
from cptbench.cli.state import pass_state


@click.command()
@click.argument("task")
@data_options
@click.option("--proposals", default=None, help="Candidates: 'gt' or a detections JSON file (default: the task card's).")
@click.option("--split", "splits", multiple=True,
              help="Eval split(s) to audit (repeat or comma list; default: the task's eval splits).")
@click.option("--heuristic", "heuristics", multiple=True, help="Heuristic(s) to run (repeat or comma list; default: all).")
@click.option("--blind", "blind", multiple=True,
              help="Blind baseline(s) to train and run (repeat or comma list; default: blind-text, blind-image).")
@click.option("--no-blind", is_flag=True, help="Run the fixed heuristics only (no blind baseline).")
@click.option("--bonferroni", is_flag=True, help="Family-wise 95% intervals (corrected for the number of comparisons).")
@click.option("--skip-bad", is_flag=True, help="Drop degenerate boxes / expressions instead of refusing them.")
@strict_data_option
@click.option("--json", "json_out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the report as JSON to this file.")
@results_option
@pass_state
def audit(state, task, data_root, images, proposals, splits, heuristics, blind, no_blind, bonferroni, skip_bad,
          strict_data, json_out, results) -> None:
    """Score label-free heuristics (first candidate, largest / smallest box, most central, category prior,
    ref and sentence order, expression length) and blind baselines trained on the train split
    (blind-text: expression, boxes and categories, no pixels; blind-image: no expression either) like
    any method, and compare each with random (1 / candidates per expression), with a 95% interval.
    Exits with status 1 when any of them beats random by more than its interval. The report is kept in
    the results folder (audits/<task>/), where `cptbench report` shows each task's blind ceiling."""
    import json

    from rich.console import Console

    from cptbench.run.audit import audit_task
    from cptbench.tasks.cards import get_task

    spec = get_task(task)
    state.log(f"[dim]auditing {spec.name} (version {spec.version})[/]")
    report = audit_task(spec, data_root=data_root, images=images, proposals=proposals,
                        splits=parse_name_list(splits) or None, heuristics=parse_name_list(heuristics) or None,
                        blind=[] if no_blind else (parse_name_list(blind) or None), skip_bad=skip_bad,
                        strict_data=strict_data,
                        correction="bonferroni" if bonferroni else "none")
    state.log(f"[dim]data {report.data_root}, images: {report.image_layout}; candidates: {report.proposals}; "
              f"{', '.join(report.fitted) or 'nothing'} fitted on {report.n_train} train expressions[/]")
    out = Console()
    pct = f"{100 * report.level:.2f}".rstrip("0").rstrip(".")
    for split in dict.fromkeys(r.split for r in report.results):
        out.print(_split_table(spec.name, split, [r for r in report.results if r.split == split], pct))
    blind_summary = report.solvable_without_looking()
    if blind_summary:
        out.print(_blind_table(spec.name, blind_summary, pct))
    text = json.dumps(report.to_json(), indent=1) + "\n"
    if json_out:
        with open(json_out, "w", encoding="utf-8") as fh:
            fh.write(text)
    if not splits:  # a whole-task audit is kept where the report looks for it
        from cptbench.core.files import write_atomic
        from cptbench.results.layout import ResultsLayout

        kept = ResultsLayout(results).audit(report.task, report.proposals)
        write_atomic(kept, text.encode())
        state.log(f"[dim]kept in {kept}[/]")
    if not report.ok:
        names = ", ".join(f"{r.heuristic} on {r.split}" for r in report.flagged)
        out.print(f"[red]shortcut audit failed: {names} beat random by more than the {pct}% interval[/]")
        for reads_expression, what in ((True, "without looking at the image"),
                                       (False, "without looking at the image or reading the expression")):
            names = sorted({r.heuristic for r in report.flagged
                            if r.kind == "blind" and bool(r.info.get("reads_expression")) == reads_expression})
            if names:
                out.print(f"[red]part of this task is solvable {what} ({', '.join(names)}): compare methods "
                          f"with these rows, not only with random[/]")
        raise SystemExit(1)
    out.print("[green]shortcut audit passed: every heuristic and blind baseline within noise of random or below it[/]")


def _verdict(r) -> str:
    return "[red]beats random[/]" if r.flagged else ("below random" if r.below else "within noise")


def _split_table(task: str, split: str, rows, pct: str):
    """One split's rows: the heuristics, then (in their own section) the blind baselines."""
    from rich import box
    from rich.table import Table

    # frameless, short headers, the verdict last and allowed to wrap: fits 80 columns uncut
    table = Table(title=f"{task} / {split}: {rows[0].n} expressions, {rows[0].images} images", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("baseline", no_wrap=True)
    for name in ("acc %", f"{pct}% interval", "random", "excess"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("verdict", ratio=1)
    previous = None
    for r in rows:
        if previous is not None and r.kind != previous:
            table.add_section()
        previous = r.kind
        table.add_row(r.heuristic, f"{r.accuracy:.2f}", f"{r.ci_low:.2f}..{r.ci_high:.2f}", f"{r.chance:.2f}",
                      f"{r.excess:+.2f}", _verdict(r))
    return table


def _blind_table(task: str, summary: dict, pct: str):
    """Solvable without looking: per split, chance and each blind baseline's accuracy [interval]."""
    from rich import box
    from rich.table import Table

    names = list(dict.fromkeys(name for s in summary.values() for name in s["baselines"]))
    table = Table(title=f"{task}: solvable without looking (blind baselines trained on the train split; "
                        f"{pct}% intervals)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    table.add_column("split", no_wrap=True)
    table.add_column("random", justify="right", no_wrap=True)
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("verdict", ratio=1)
    for split, s in summary.items():
        cells = []
        for name in names:
            b = s["baselines"].get(name)
            cells.append("" if b is None else f"{b['accuracy']:.2f}\n[{b['ci_low']:.2f}, {b['ci_high']:.2f}]")
        verdict = "[red]above chance without looking[/]" if s["flagged"] else "within noise"
        table.add_row(split, f"{s['chance']:.2f}", *cells, verdict)
    return table
