"""``cptbench run``: evaluate methods on tasks over k-shot splits and seeds, then print the leaderboard."""

from __future__ import annotations

import os

import click

from .state import friendly_errors, parse_int_list, pass_state

DEFAULT_RESULTS = os.environ.get("CPTBENCH_RESULTS", "cptbench-results")


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, eq, value = v.partition("=")
        if not eq or not key.strip():
            raise click.BadParameter(f"--set expects KEY=VALUE or METHOD.KEY=VALUE, got {v!r}")
        out[key.strip()] = value.strip()
    return out


@click.command()
@click.option("-m", "--method", "methods", multiple=True, default=("cpt",), show_default=True,
              help="Method name (repeatable); see `cptbench list methods`.")
@click.option("-k", "--shots", multiple=True, default=("1",), show_default=True,
              help="Training expressions per run (repeatable or comma list, e.g. -k 0,1,2,4,8,16); 0 = zero-shot.")
@click.option("-t", "--task", "tasks", multiple=True, help="Task card name (repeatable); default: the bundled synthref.")
@click.option("--seeds", default="0,1,2,3,4", show_default=True, help="Comma list of seeds (k-shot draws); zero-shot runs use the first only.")
@click.option("--split", "splits", multiple=True, help="Evaluate only these eval splits (default: all of the task card).")
@click.option("--proposals", default=None, help="'gt' (all COCO annotations) or a detections JSON file; default: the task card's.")
@click.option("--model", default=None, help="Hub id or local folder of the backbone; default: the task card's.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Method option (repeatable), e.g. --set palette=release5 or --set cpt-seg.alpha=0.5.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, envvar="CPTBENCH_DATA_ROOT",
              help="Folder with <dataset>/refs(<splitBy>).p and <dataset>/instances.json.")
@click.option("--images", type=click.Path(file_okay=False), default=None, help="Image folder (default: <data-root>/images/train2014).")
@click.option("--results", type=click.Path(file_okay=False), default=DEFAULT_RESULTS, show_default=True,
              help="Results folder (runs.jsonl, predictions, manifests, leaderboards); env CPTBENCH_RESULTS.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N expressions of each split (smoke tests).")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda or cuda:1.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Evaluation batch size (forward passes).")
@click.option("--no-leaderboard", is_flag=True, help="Do not rebuild and print the leaderboard afterwards.")
@pass_state
@friendly_errors
def run(state, methods, shots, tasks, seeds, splits, proposals, model, sets, data_root, images, results, limit,
        device, batch_size, no_leaderboard) -> None:
    """Run METHODs on TASKs for every k in --shots and every seed; finished runs are skipped, so an
    interrupted command resumes where it stopped.

    \b
    Examples:
      cptbench run --method cpt --shots 1
      cptbench run -m cpt -m ft -k 0,1,2,4,8,16 --seeds 0,1,2,3,4
      cptbench run -m cpt-seg -t refcoco --data-root ~/data/refer --model dandelin/vilt-b32-mlm --device cuda
    """
    from ..runner import RunRequest, Runner, plan
    from ..store import ResultsStore
    from ..tasks import get_task
    from .ui import RunReporter

    task_specs = [get_task(t) for t in (tasks or ("synthref",))]
    request = RunRequest(
        tasks=task_specs, methods=list(methods), shots=parse_int_list(shots, "--shots"),
        seeds=parse_int_list(seeds, "--seeds"), proposals=proposals, model=model, options=_parse_sets(sets),
        splits=list(splits) or None, limit=limit, data_root=data_root, images=images, device=device,
        eval_batch_size=batch_size,
    )
    if not request.seeds:
        raise click.BadParameter("--seeds needs at least one seed")
    try:
        jobs = plan(request)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    store = ResultsStore(results)
    n_runs = sum(len(j.runs) for j in jobs)
    state.log(f"[bold]{len(jobs)} jobs, {n_runs} runs[/] → {store.root}")
    with RunReporter(state) as reporter:
        new = Runner(request, store, progress=reporter.on_progress, event=reporter.on_event).run(jobs)
    state.log(f"{len(new)} new runs, {n_runs - len(new)} already in {store.runs_path}")
    if not no_leaderboard:
        from .leaderboard_cmd import show_leaderboard

        show_leaderboard(state, store, tasks=[t.name for t in task_specs])
