"""``cptbench run``: evaluate methods on tasks over k-shot splits and seeds, then print the leaderboard."""

from __future__ import annotations

import click

from cptbench.cli.completion import complete_methods, complete_set_keys, complete_tasks
from cptbench.core.defaults import CHUNK_SIZE, DEFAULT_SEEDS, DEFAULT_TASK, EVAL_BATCH_SIZE
from cptbench.cli.options import data_options, results_option, strict_data_option, threads_option
from cptbench.cli.common import command_line, parse_name_list, parse_sets
from cptbench.cli.state import parse_int_list, pass_state


class BatchSizeType(click.ParamType):
    """A positive integer or ``auto``."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        """The int, or ``"auto"``; anything else fails with Click's usage message."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is not a positive integer or 'auto'", param, ctx)


BATCH_SIZE = BatchSizeType()


@click.command()
@click.option("-m", "--method", "methods", multiple=True, shell_complete=complete_methods, default=("cpt",), show_default=True,
              help="Method name (repeatable or comma list); see `cptbench list methods`.")
@click.option("-k", "--shots", multiple=True, default=("1",), show_default=True,
              help="Training expressions per run (repeatable or comma list, e.g. -k 0,1,2,4,8,16); 0 = zero-shot.")
@click.option("-t", "--task", "tasks", multiple=True, shell_complete=complete_tasks, help="Task card name (repeatable or comma list); default: the bundled synthref.")
@click.option("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), show_default=True, help="Comma list of seeds (k-shot draws); zero-shot runs use the first only.")
@click.option("--split", "splits", multiple=True, help="Evaluate only these eval splits (repeatable or comma list; default: all of the task card).")
@click.option("--proposals", default=None, help="'gt' (all COCO annotations) or a detections JSON file; default: the task card's.")
@click.option("--model", default=None, help="Hub id or local folder of the backbone; default: the task card's.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", shell_complete=complete_set_keys,
              help="Method option (repeatable), e.g. --set palette=release5 or --set cpt-seg.alpha=0.5.")
@data_options
@results_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N expressions of each split (smoke tests).")
@click.option("--skip-bad", is_flag=True,
              help="Drop degenerate boxes and empty expressions (counted in every record) instead of refusing the data.")
@strict_data_option
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda or cuda:1.")
@click.option("--batch-size", type=BATCH_SIZE, default=str(EVAL_BATCH_SIZE), show_default=True,
              help="Evaluation batch size (forward passes), or 'auto': the largest the device holds, found once "
                   "per model, device and image size and cached (CPU: 32); halved on out-of-memory.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=None,
              help="Numerics of every model method, CPT and ft alike (its 'precision' option): auto = bf16 autocast "
                   "with fp32 master weights on CUDA, fp32 elsewhere; fp32 = the release's numerics. Default: each "
                   "method's option (auto).")
@click.option("--sampler", type=click.Choice(["cptbench", "release"]), default="cptbench", show_default=True,
              help="The k-shot draw: cptbench (seeded from task, k and seed over the sorted pairs) or release (the "
                   "CPT release's random.shuffle over the refs file's order, to reproduce its official subsets); "
                   "also --set sampler=release.")
@click.option("--sealed/--no-sealed", default=None,
              help="Run each method's fit and predict in its own process that never holds an evaluation label, a path "
                   "into the data root or the results folder (default: sealed for methods that are not part of "
                   "cptbench; --no-sealed trusts every method, --sealed seals cptbench's own too).")
@threads_option
@click.option("--chunk-size", type=click.IntRange(min=1), default=CHUNK_SIZE, show_default=True,
              help="Predictions are saved every N expressions (what a kill can lose at most).")
@click.option("--no-leaderboard", is_flag=True, help="Do not rebuild and print the leaderboard afterwards.")
@pass_state
def run(state, methods, shots, tasks, seeds, splits, proposals, model, sets, data_root, images, results, limit,
        skip_bad, strict_data, device, batch_size, precision, sampler, sealed, threads, chunk_size, no_leaderboard) -> None:
    """Run METHODs on TASKs for every k in --shots and every seed; finished runs are skipped, so an
    interrupted command resumes where it stopped. Inputs are checked before anything is trained.

    \b
    Examples:
      cptbench run --method cpt --shots 1
      cptbench run -m cpt,ft -k 0,1,2,4,8,16 --seeds 0,1,2,3,4
      cptbench run -m cpt-seg -t refcoco --data-root ~/data/refer --model dandelin/vilt-b32-mlm --device cuda
    """
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest, plan
    from cptbench.results.store import ResultsStore
    from cptbench.tasks.cards import get_task
    from cptbench.cli.ui import RunReporter

    task_specs = [get_task(t) for t in (parse_name_list(tasks) or [DEFAULT_TASK])]
    request = RunRequest(
        tasks=task_specs, methods=parse_name_list(methods), shots=parse_int_list(shots, "--shots"),
        seeds=parse_int_list(seeds, "--seeds"), proposals=proposals, model=model, options=parse_sets(sets),
        splits=parse_name_list(splits) or None, limit=limit, data_root=data_root, images=images, device=device,
        eval_batch_size=batch_size, chunk_size=chunk_size, skip_bad=skip_bad, strict_data=strict_data,
        precision=precision, sampler=sampler, sealed=sealed, threads=threads,
        command=command_line(),
    )
    jobs = plan(request)
    store = ResultsStore(results)
    dist = None
    from cptbench.run.distributed import from_environment, world_size

    if world_size() > 1:  # torchrun / accelerate launch
        dist = from_environment(device)
        if not dist.is_main:
            state.verbosity, no_leaderboard = -1, True  # rank 0 speaks and writes
    state.log(f"[bold]{len(jobs)} jobs, {sum(len(j.splits) for j in jobs)} runs[/] → {store.root}")
    with RunReporter(state) as reporter:
        runner = Runner(request, store, progress=reporter.on_progress, event=reporter.on_event, dist=dist)
        new = runner.run(jobs)
    n_runs = sum(len(j.splits) for j in jobs)
    busy = f", {len(runner.busy)} skipped: being computed by another process (run the command again later)" if runner.busy else ""
    state.log(f"{len(new)} new runs, {n_runs - len(new) - len(runner.busy)} already in {store.runs_path}{busy}")
    if not no_leaderboard:
        from cptbench.cli.common import show_leaderboard

        show_leaderboard(state, store, tasks=[t.name for t in task_specs])
