"""``cptbench sweep``: a study (tasks x methods x shots x seeds) run cell by cell, here or on Ray."""

from __future__ import annotations

import click

from cptbench.cli.completion import complete_methods, complete_set_keys, complete_tasks
from cptbench.cli.options import DEFAULT_RESULTS, data_root_option, strict_data_option, threads_option
from cptbench.cli.common import command_line, parse_name_list, parse_sets
from cptbench.cli.state import parse_int_list, pass_state


@click.command()
@click.argument("study_file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-t", "--task", "tasks", multiple=True, shell_complete=complete_tasks, help="Task cards (repeatable or comma list); overrides the study file.")
@click.option("-m", "--method", "methods", multiple=True, shell_complete=complete_methods, help="Methods (repeatable or comma list); overrides the study file.")
@click.option("-k", "--shots", multiple=True, help="k values (repeatable or comma list); overrides the study file.")
@click.option("--seeds", default=None, help="Comma list of seeds; overrides the study file.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", shell_complete=complete_set_keys, help="Method option (repeatable), added to the study's options.")
@click.option("--model", default=None, help="Backbone (default: the study's, else each task card's).")
@data_root_option
@strict_data_option
@click.option("--device", default=None, help="torch device for local cells (Ray cells with GPUs use cuda).")
@click.option("--results", type=click.Path(file_okay=False), default=None,
              help=f"Results folder (default: the study's, else {DEFAULT_RESULTS}).")
@threads_option
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run each cell as a Ray task: `--ray` starts a local Ray, `--ray auto` or `--ray ray://host:10001` "
                   "joins a cluster (needs the extra cptbench[ray]).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Ray worker actors (default: GPUs / --gpus-per-task, or CPUs / 2).")
@click.option("--gpus-per-task", type=click.FloatRange(min=0), default=None, help="GPUs per Ray cell (default 1 when the cluster has GPUs).")
@click.option("--max-retries", type=click.IntRange(min=0), default=2, show_default=True, help="Retries of a cell whose Ray worker crashed.")
@click.option("--no-leaderboard", is_flag=True, help="Do not rebuild and print the leaderboard afterwards.")
@pass_state
def sweep(state, study_file, tasks, methods, shots, seeds, sets, model, data_root, strict_data, device, results, threads, ray_address,
          workers, gpus_per_task, max_retries, no_leaderboard) -> None:
    """Run a STUDY_FILE (YAML: tasks, methods, shots, seeds, options, model, ...) or a grid given by
    options, every cell in order here, or as Ray tasks with --ray. Finished runs are skipped, so an
    interrupted sweep resumes; only this process writes the results folder.

    \b
    Examples:
      cptbench sweep -m cpt,ft -k 0,1,2,4,8,16 --seeds 0,1,2,3,4
      cptbench sweep study.yaml --ray auto --gpus-per-task 1
    """
    from cptbench.run.engine import Runner
    from cptbench.run.plan import plan
    from cptbench.results.store import ResultsStore
    from cptbench.run.sweep import Study, load_study, study_request
    from cptbench.cli.ui import RunReporter

    study = load_study(study_file) if study_file else Study()
    options = {**study.options, **parse_sets(sets)}
    request = study_request(
        study, tasks=parse_name_list(tasks) or None, methods=parse_name_list(methods) or None,
        shots=parse_int_list(shots, "--shots") if shots else None,
        seeds=parse_int_list(seeds, "--seeds") if seeds is not None else None,
        options=options, model=model, data_root=data_root, device=device, strict_data=strict_data or None, threads=threads,
        command=command_line())
    jobs = plan(request)
    store = ResultsStore(results or study.results or DEFAULT_RESULTS)
    n_runs = sum(len(j.splits) for j in jobs)
    where = f"Ray ({ray_address})" if ray_address else "this process"
    state.log(f"[bold]sweep: {len(jobs)} cells, {n_runs} runs on {where}[/] → {store.root}")
    with RunReporter(state) as reporter:
        runner = Runner(request, store, progress=reporter.on_progress, event=reporter.on_event)
        if ray_address:
            from cptbench.run.ray import run_on_ray

            failed = []

            def on_cell(outcome):
                if outcome.error:
                    failed.append(outcome)
                    state.log(f"[red]cell {outcome.job_index + 1} failed after {outcome.attempts} attempt(s): {outcome.error}[/]")

            outcomes = run_on_ray(runner, jobs, address=ray_address, workers=workers, gpus_per_task=gpus_per_task,
                                  max_retries=max_retries, on_cell=on_cell)
            new = sum(o.records for o in outcomes)
        else:
            failed = []
            new = len(runner.run(jobs))
    state.log(f"{new} new runs, {n_runs - new - len(runner.busy)} already in {store.runs_path}"
              + (f", {len(runner.busy)} skipped: being computed by another process" if runner.busy else ""))
    if not no_leaderboard and store.runs_path.exists():
        from cptbench.cli.common import show_leaderboard

        show_leaderboard(state, store, tasks=list(dict.fromkeys(t.name for t in request.tasks)))
    if failed:
        raise click.exceptions.Exit(1)
