"""``cptbench runs``: list and filter finished runs; move a selection aside (``--delete``)."""

from __future__ import annotations

import click

from cptbench.cli.options import results_option
from cptbench.cli.common import parse_name_list
from cptbench.cli.state import parse_int_list, pass_state
from cptbench.results.layout import ResultsLayout

#: the layout's names relative to the results folder, for the help text
_NAMES = ResultsLayout("")


def _config_filter(spec: str):
    """A test of a record for ``KEY=VALUE`` (an option of the run's method config) or a
    config-hash prefix."""
    from cptbench.report.aggregate import option_value

    key, eq, value = spec.partition("=")
    key, value = key.strip(), value.strip()
    if eq:
        return lambda rec: key in rec.method_config and option_value(rec.method_config[key]) == value
    return lambda rec: rec.method_config_hash.startswith(spec)


@click.command()
@results_option
@click.option("-t", "--task", "tasks", multiple=True, help="Tasks (repeatable or comma list).")
@click.option("-m", "--method", "methods", multiple=True, help="Methods: names, aliases or labels as tables print them (repeatable or comma list).")
@click.option("--model", "models", multiple=True, help="Models (repeatable or comma list).")
@click.option("-k", "--shots", multiple=True, help="k values (repeatable or comma list).")
@click.option("--seed", "seeds", multiple=True, help="Seeds (repeatable or comma list).")
@click.option("--split", "splits", multiple=True, help="Splits (repeatable or comma list).")
@click.option("--option", "configs", multiple=True, metavar="KEY=VALUE|HASH",
              help="Method option value (score=auto) or config-hash prefix (repeatable: all must hold). "
                   "(--config is the global YAML file of option defaults.)")
@click.option("--since", default=None, help="Created on or after: an ISO date or date-time (2025-01-31, 2025-01-31T12:00; "
                                            "UTC unless a zone is given) or a duration back from now (30m, 12h, 7d, 2w).")
@click.option("--until", default=None, help="Created before: as --since (a bare date means before that day ends).")
@click.option("--run-id", "run_ids", multiple=True, help="Run id prefixes (repeatable or comma list).")
@click.option("--delete", is_flag=True, help=f"Move the selected runs aside: records to {_NAMES.deleted_runs}, "
                                           f"predictions to {_NAMES.deleted_predictions_dir}/.")
@click.option("--restore", is_flag=True, help=f"Move the selected deleted runs back (from {_NAMES.deleted_runs}; the "
                                            f"filters select among the deleted runs).")
@click.option("--yes", is_flag=True, help="With --delete or --restore: do not ask for confirmation.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@pass_state
def runs(state, results, tasks, methods, models, shots, seeds, splits, configs, since, until, run_ids, delete, restore,
         yes, fmt) -> None:
    """List finished runs (filters combine with AND), move a selection aside with --delete, or
    back with --restore.

    Deleted records are appended to runs.deleted.jsonl and their predictions files move to
    deleted/predictions/; nothing is erased, and --restore moves them back (a run computed anew
    since it was deleted stays as it is). The leaderboard files are rebuilt. Running the same
    `cptbench run` again computes deleted runs anew.

    \b
    Examples:
      cptbench runs -m cpt-blk -k 1
      cptbench runs --option score=auto --delete --yes
      cptbench runs --until 2025-01-31 --task synthref --delete
      cptbench runs --since 2h --restore --yes
    """
    from cptbench.core.errors import UsageError
    from cptbench.core.values import parse_when
    from cptbench.report.aggregate import aggregate
    from cptbench.report.selection import group_key, load_records, select_all
    from cptbench.results.store import ResultsStore

    if delete and restore:
        raise UsageError("--delete and --restore go in opposite directions; give one.")
    store = ResultsStore(results)
    start = parse_when(since, "--since") if since else None
    end = parse_when(until, "--until", end_of_day=True) if until else None
    records = load_records(store) if not restore else _deleted_records(store)
    rows = aggregate(records)
    label_of = {group_key(r): r.label for r in rows}
    # every option is parsed (and a bad one refused) once, before any filtering
    task_list, model_list, split_list = parse_name_list(tasks), parse_name_list(models), parse_name_list(splits)
    shot_list = parse_int_list(shots, "--shots") if shots else None
    seed_list = parse_int_list(seeds, "--seed") if seeds else None
    prefixes = parse_name_list(run_ids)
    method_keys = {group_key(r) for r in select_all(rows, parse_name_list(methods))} if methods else None
    tests = [_config_filter(c) for c in configs]
    sel = list(records)
    if tasks:
        sel = [r for r in sel if r.task in task_list]
    if method_keys is not None:
        sel = [r for r in sel if group_key(r) in method_keys]
    if models:
        sel = [r for r in sel if r.model in model_list]
    if shot_list is not None:
        sel = [r for r in sel if r.shots in shot_list]
    if seed_list is not None:
        sel = [r for r in sel if r.seed in seed_list]
    if splits:
        sel = [r for r in sel if r.split in split_list]
    for test in tests:
        sel = [r for r in sel if test(r)]
    if start is not None:
        sel = [r for r in sel if (t := _created(r)) is not None and t >= start]
    if end is not None:
        sel = [r for r in sel if (t := _created(r)) is not None and t < end]
    if run_ids:
        sel = [r for r in sel if any(r.run_id.startswith(p) for p in prefixes)]
    if fmt == "json" and not delete:
        import json

        from cptbench.report.tables import json_safe

        click.echo(json.dumps(json_safe([r.to_json() for r in sel]), indent=1, sort_keys=True, default=str, allow_nan=False))
        return
    _print(sel, label_of, len(records))
    if restore:
        _restore(state, store, sel, yes)
        return
    if not delete:
        return
    if not sel:
        state.log("nothing selected: nothing moved")
        return
    _confirm(yes, f"--delete would move {len(sel)} runs aside", f"Move these {len(sel)} runs to {store.layout.deleted_runs}?")
    moved = _move_aside(store, sel)
    state.log(f"moved {moved} records to {store.layout.deleted_runs} and their predictions to "
              f"{store.layout.deleted_predictions_dir}/; {len(records) - moved} runs remain")
    from cptbench.report.leaderboard import remove_leaderboard, write_leaderboard

    if len(records) - moved:
        write_leaderboard(store)
    else:
        remove_leaderboard(store.layout)


def _created(rec):
    """When ``rec`` was created, as an aware datetime (None when the record has no valid date)."""
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(str(rec.created_at).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _deleted_records(store) -> list:
    """The records in the deleted-runs file (validated like ``runs.jsonl``'s)."""
    from cptbench.results.records import RunRecord
    from cptbench.results.store import read_jsonl

    path = store.layout.deleted_runs
    return [RunRecord.from_json(raw, f"{path}: line {line}") for line, raw in read_jsonl(path, with_lines=True)]


def _confirm(yes: bool, action: str, question: str) -> None:
    """Go on when ``--yes`` was given or the user says yes at a terminal; without a terminal, refuse
    naming ``action`` and the flag to add."""
    import sys

    from cptbench.core.errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{action}; add --yes to confirm (no terminal to ask).")
    click.confirm(question, abort=True)


def _restore(state, store, sel, yes: bool) -> None:
    """Move the selected deleted runs and their predictions back; rebuild the leaderboard."""
    import os

    if not sel:
        state.log("nothing selected among the deleted runs: nothing restored")
        return
    _confirm(yes, f"--restore would move {len(sel)} runs back", f"Move these {len(sel)} runs back to {store.runs_path}?")
    import json

    lines = store.restore_records([r.run_id for r in sel], store.layout.deleted_runs)
    back = {json.loads(ln)["run_id"] for ln in lines}
    for rec in sel:
        if rec.run_id not in back or not rec.predictions_path:
            continue
        target = store.layout.inside(rec.predictions_path, "predictions_path")
        source = store.layout.deleted_predictions_dir / target.name
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    kept = len(sel) - len(back)
    state.log(f"restored {len(back)} runs to {store.runs_path}" + (f"; {kept} left in {store.layout.deleted_runs}: "
                                                                  f"computed anew since they were deleted" if kept else ""))
    from cptbench.report.leaderboard import write_leaderboard

    write_leaderboard(store)


def _move_aside(store, sel) -> int:
    """Move the records of ``sel`` to the deleted runs and their predictions files to the deleted
    predictions folder; returns how many records moved. Every predictions path is checked (inside
    the results folder) before anything moves."""
    import os
    import time

    sources = [store.layout.inside(r.predictions_path, "predictions_path") for r in sel if r.predictions_path]
    lines = store.move_records([r.run_id for r in sel], store.layout.deleted_runs)
    dest = store.layout.deleted_predictions_dir
    dest.mkdir(parents=True, exist_ok=True)
    for src in sources:
        if not src.is_file():
            continue
        target = dest / src.name
        if target.exists():  # the same run deleted before: keep both
            target = dest / f"{src.stem}.{time.strftime('%Y%m%dT%H%M%S')}{src.suffix}"
        os.replace(src, target)
    return len(lines)


def _print(sel, label_of, total: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cptbench.report.tables import shots_text
    from cptbench.report.selection import group_key

    out = Console()
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=(0, 0),
                  title=f"{len(sel)} of {total} runs", title_justify="left")
    for col, just in (("run", "left"), ("task", "left"), ("split", "left"), ("method", "left"), ("k", "right"),
                      ("seed", "right"), ("acc %", "right"), ("n", "right"), ("created", "left")):
        table.add_column(col, justify=just, overflow="fold", no_wrap=col in ("run", "k", "seed", "acc %", "n", "created"))
    for r in sorted(sel, key=lambda r: (r.task, label_of.get(group_key(r), r.method), r.shots, r.seed, r.split)):
        acc = "n/a" if r.accuracy != r.accuracy else f"{r.accuracy:.2f}"
        table.add_row(r.run_id[:8], r.task, r.split, escape(label_of.get(group_key(r), r.method)), shots_text(r.shots, True),
                      str(r.seed), acc, str(r.n), (r.created_at or "")[:10])
    out.print(table)
