"""The Python API: what ``cptbench run`` does, as a call.

::

    import cptbench

    records = cptbench.evaluate(tasks="synthref", methods=["cpt", "ft"], shots=[0, 1], seeds=[0, 1])
    frame = cptbench.records_frame(records)          # one row per run (needs pandas)

``evaluate`` plans, checks, runs and records exactly as the CLI (the same engine, results folder,
resume and locking), and returns the typed :class:`~cptbench.results.records.RunRecord` of every run
the call asked for: computed now or found already recorded in the results folder.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from cptbench.core.defaults import DEFAULT_DEVICE, DEFAULT_SEEDS, DEFAULT_TASK, EVAL_BATCH_SIZE


def _names(value: str | Iterable[str] | None, default: Sequence[str]) -> list[str]:
    from cptbench.core.values import name_list

    if value is None:
        return list(default)
    return name_list([value] if isinstance(value, str) else list(value))


def _ints(value: int | str | Iterable[int] | None, default: Sequence[int], what: str) -> list[int]:
    from cptbench.core.values import int_list

    if value is None:
        return list(default)
    if isinstance(value, int):
        return [value]
    return int_list(value if isinstance(value, str) else [str(v) for v in value], what)


def evaluate(tasks: str | Iterable[str] | None = None, methods: str | Iterable[str] = "cpt",
             shots: int | Iterable[int] = 1, seeds: int | Iterable[int] | None = None, *,
             model: str | None = None, proposals: str | None = None, options: Mapping[str, Any] | None = None,
             splits: str | Iterable[str] | None = None, limit: int | None = None, data_root: str | None = None,
             images: str | None = None, device: str = DEFAULT_DEVICE, batch_size: int | str = EVAL_BATCH_SIZE,
             precision: str | None = None, skip_bad: bool = False, strict_data: bool = False, sealed: bool | None = None,
             results: str | None = None,
             progress: Callable[[str, int, int], None] | None = None,
             event: Callable[[str, Mapping[str, Any]], None] | None = None) -> list:
    """Run ``methods`` on ``tasks`` for every k in ``shots`` and every seed; the records of every run
    asked for, in plan order (new ones and those already in the results folder).

    Arguments mirror ``cptbench run``: ``tasks`` default to the bundled ``synthref``, ``seeds`` to
    0-4, ``options`` are ``--set`` values (``{"steps": 5}`` or ``{"cpt-seg.alpha": 0.4}``),
    ``results`` is the results folder (default ``$CPTBENCH_RESULTS`` or ``./cptbench-results``);
    ``sealed`` as ``--sealed`` (None: methods that are not part of cptbench run sealed).
    ``progress(stage, done, total)`` and ``event(kind, info)`` hear what the CLI draws.
    Errors a user can cause raise :class:`cptbench.core.errors.CptbenchError` subclasses."""
    from cptbench.results.layout import default_results_dir
    from cptbench.results.store import ResultsStore
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest, plan
    from cptbench.tasks import get_task

    request = RunRequest(
        tasks=[get_task(t) for t in _names(tasks, [DEFAULT_TASK])], methods=_names(methods, ["cpt"]),
        shots=_ints(shots, [1], "shots"), seeds=_ints(seeds, DEFAULT_SEEDS, "seeds"), proposals=proposals,
        model=model, options=dict(options or {}), splits=_names(splits, []) or None, limit=limit,
        data_root=data_root, images=images, device=device, eval_batch_size=batch_size, skip_bad=skip_bad,
        strict_data=strict_data, precision=precision, sealed=sealed, command="cptbench.evaluate(...)")
    store = ResultsStore(results or default_results_dir())
    kwargs = {k: v for k, v in (("progress", progress), ("event", event)) if v is not None}
    runner = Runner(request, store, **kwargs)
    jobs = runner.prepare(plan(request))
    runner.run(jobs)
    by_id = {r.run_id: r for r in store.records()}
    return [by_id[spec.run_id] for job in jobs for spec in job.runs if spec.run_id in by_id]


def load_records(results: str | None = None) -> list:
    """The typed records of a results folder (validated; default ``$CPTBENCH_RESULTS`` or
    ``./cptbench-results``)."""
    from cptbench.results.layout import default_results_dir
    from cptbench.results.store import ResultsStore

    return ResultsStore(results or default_results_dir()).records()


#: the columns of :func:`records_frame`, in order (the record's scalar fields a table needs)
FRAME_COLUMNS = ("run_id", "task", "task_version", "split", "method", "method_config_hash", "model", "proposals",
                 "shots", "seed", "limit", "accuracy", "n", "n_correct", "n_invalid", "n_no_candidates",
                 "uses_eval_labels", "precision", "fit_seconds", "predict_seconds", "seconds", "model_fingerprint",
                 "data_fingerprint", "manifest_sha256", "created_at")


def records_frame(records: Iterable):
    """A pandas DataFrame with one row per record and :data:`FRAME_COLUMNS` (plus the method's
    options as ``config.<key>`` columns). Needs pandas (``pip install pandas``)."""
    try:
        import pandas as pd
    except ImportError:
        from cptbench.core.errors import UsageError

        raise UsageError("records_frame needs pandas: pip install pandas") from None
    rows = []
    for rec in records:
        row = {col: getattr(rec, col) for col in FRAME_COLUMNS}
        row.update({f"config.{k}": v for k, v in sorted(rec.method_config.items())
                    if isinstance(v, (str, int, float, bool)) or v is None})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else list(FRAME_COLUMNS))
