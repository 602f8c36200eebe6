"""``cptbench reproduce RUN_ID``: rerun a recorded run from its record alone and say whether every
prediction matches (:mod:`cptbench.run.reproduce`)."""

from __future__ import annotations

import json

import click

from cptbench.cli.options import data_options, results_option, threads_option
from cptbench.cli.state import pass_state


@click.command()
@click.argument("run_id")
@results_option
@data_options
@click.option("--proposals", "proposals_file", default=None, help="The detections file of a run with det: proposals.")
@click.option("--scratch", type=click.Path(file_okay=False), default=None,
              help="Results folder of the rerun (default: a new temporary folder, removed afterwards).")
@click.option("--device", default=None, help="torch device (default: the record's).")
@threads_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_state
def reproduce(state, run_id, results, data_root, images, proposals_file, scratch, device, threads, fmt) -> None:
    """Rerun RUN_ID (a prefix of it is enough) from its record alone, into a scratch folder, and
    compare every prediction with the recorded one. The task's card version, data and model are
    fingerprinted first; if any changed the rerun is refused with the difference. Exit 0 when
    every prediction matches, 1 when one differs.

    \b
    Examples:
      cptbench runs -m cpt -k 1              # the run ids
      cptbench reproduce 3f2a91c0
      cptbench reproduce 3f2a91c0 --format json
    """
    import shutil
    import tempfile
    from pathlib import Path

    from rich.markup import escape

    from cptbench.cli.ui import RunReporter
    from cptbench.results.store import ResultsStore
    from cptbench.run.reproduce import reproduce as rerun

    store = ResultsStore(results)
    folder = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="cptbench-reproduce-"))
    try:
        if threads:
            from cptbench.methods.numerics import apply_threads

            apply_threads(threads)
        with RunReporter(state) as reporter:
            out = rerun(store, run_id, folder, data_root=data_root, images=images, proposals_file=proposals_file,
                        device=device, progress=reporter.on_progress, event=reporter.on_event)
    finally:
        if not scratch:
            shutil.rmtree(folder, ignore_errors=True)
    rec = out.record
    if fmt == "json":
        click.echo(json.dumps(out.to_json(), indent=1))
    else:
        verdict = "[green]every prediction matches[/]" if out.all_match else f"[red]{out.n - out.matched} of {out.n} predictions differ[/]"
        state.log(f"run {rec.run_id[:12]} ({escape(rec.task)} {rec.split} · {escape(rec.method)} k={rec.shots} seed "
                  f"{rec.seed}): {verdict}; {out.matched}/{out.n} matched, accuracy {rec.accuracy:.2f} recorded, "
                  f"{out.rerun.accuracy:.2f} rerun, largest score difference {out.max_score_diff:.3g}", level=-1)
        for d in out.differences:
            state.log(f"  {escape(str(d['example_id']))}: recorded {d['recorded']}, rerun {d['rerun']}", level=-1)
    if not out.all_match:
        raise click.exceptions.Exit(1)
