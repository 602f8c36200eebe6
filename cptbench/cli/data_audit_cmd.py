"""``cptbench data audit``: can label-free heuristics beat random on a task's data?"""

from __future__ import annotations

import click

from cptbench.cli.options import data_options, strict_data_option
from cptbench.cli.common import parse_name_list
from cptbench.cli.state import pass_state


@click.command()
@click.argument("task")
@data_options
@click.option("--proposals", default=None, help="Candidates: 'gt' or a detections JSON file (default: the task card's).")
@click.option("--split", "splits", multiple=True,
              help="Eval split(s) to audit (repeat or comma list; default: the task's eval splits).")
@click.option("--heuristic", "heuristics", multiple=True, help="Heuristic(s) to run (repeat or comma list; default: all).")
@click.option("--bonferroni", is_flag=True, help="Family-wise 95% intervals (corrected for the number of comparisons).")
@click.option("--skip-bad", is_flag=True, help="Drop degenerate boxes / expressions instead of refusing them.")
@strict_data_option
@click.option("--json", "json_out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the report as JSON to this file.")
@pass_state
def audit(state, task, data_root, images, proposals, splits, heuristics, bonferroni, skip_bad, strict_data, json_out) -> None:
    """Score label-free heuristics (first candidate, largest / smallest box, most central, category prior,
    ref and sentence order, expression length) like any method and compare each with random
    (1 / candidates per expression), with a 95% interval. Exits with status 1 when a heuristic beats
    random by more than its interval."""
    import json

    from rich.console import Console
    from rich.table import Table

    from cptbench.run.audit import audit_task
    from cptbench.tasks.cards import get_task

    spec = get_task(task)
    state.log(f"[dim]auditing {spec.name} (version {spec.version})[/]")
    report = audit_task(spec, data_root=data_root, images=images, proposals=proposals,
                        splits=parse_name_list(splits) or None, heuristics=parse_name_list(heuristics) or None,
                        skip_bad=skip_bad, strict_data=strict_data,
                        correction="bonferroni" if bonferroni else "none")
    state.log(f"[dim]data {report.data_root}, images: {report.image_layout}; candidates: {report.proposals}; "
              f"category-prior and expression-length fitted on {report.n_train} train expressions[/]")
    out = Console()
    pct = f"{100 * report.level:.2f}".rstrip("0").rstrip(".")
    for split in dict.fromkeys(r.split for r in report.results):
        rows = [r for r in report.results if r.split == split]
        table = Table(title=f"{spec.name} / {split}: {rows[0].n} expressions, {rows[0].images} images",
                      title_justify="left")
        table.add_column("heuristic", no_wrap=True)
        for name in ("accuracy", f"{pct}% interval", "random", "excess"):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        for r in rows:
            verdict = "[red]beats random[/]" if r.flagged else ("below random" if r.below else "within noise")
            table.add_row(r.heuristic, f"{r.accuracy:.2f}", f"{r.ci_low:.2f} .. {r.ci_high:.2f}", f"{r.chance:.2f}",
                          f"{r.excess:+.2f}", verdict)
        out.print(table)
    if json_out:
        with open(json_out, "w", encoding="utf-8") as fh:
            json.dump(report.to_json(), fh, indent=1)
            fh.write("\n")
    if not report.ok:
        names = ", ".join(f"{r.heuristic} on {r.split}" for r in report.flagged)
        out.print(f"[red]shortcut audit failed: {names} beat random by more than the {pct}% interval[/]")
        raise SystemExit(1)
    out.print("[green]shortcut audit passed: every heuristic within noise of random or below it[/]")
