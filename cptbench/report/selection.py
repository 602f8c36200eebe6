"""Records by method label: what ``compare``, ``errors``, ``plot``, ``runs`` and ``report`` select from.

A *label* is what the tables print (:func:`cptbench.report.aggregate.method_labels`): the method name,
plus the differing options where one method ran with several configs (``cpt-blk[score=auto]``).
A spec given on the command line may be a label, a method name or alias (``cpt``), or
``name#<hash prefix>``.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, Sequence, TypeVar

from cptbench.core.errors import ResultsError, UsageError
from cptbench.report.aggregate import GROUP_KEYS, LeaderboardRow
from cptbench.results.records import RunRecord
from cptbench.results.store import ResultsStore

#: a run record or a leaderboard row: both carry task and the :data:`GROUP_KEYS`
Item = TypeVar("Item", RunRecord, LeaderboardRow)


def group_key(r: RunRecord | LeaderboardRow) -> tuple:
    """The aggregation group of a record or of a leaderboard row."""
    return tuple(getattr(r, k) for k in GROUP_KEYS)


def load_records(store: ResultsStore, tasks: Sequence[str] | None = None) -> list[RunRecord]:
    """The finished runs of ``store`` (of ``tasks`` only, when given); a :class:`ResultsError`
    when there are none, naming the tasks the folder holds."""
    records = store.records()
    if not records:
        raise ResultsError(f"no finished runs in {store.runs_path}; start with `cptbench run`.")
    return of_tasks(store, records, tasks) if tasks else records


def of_tasks(store: ResultsStore, items: Sequence[Item], tasks: Sequence[str]) -> list[Item]:
    """The records or leaderboard rows of ``tasks``; a :class:`ResultsError` when there are none."""
    picked = [x for x in items if x.task in tasks]
    if not picked:
        have = sorted({x.task for x in items})
        raise ResultsError(f"no runs of task(s) {', '.join(tasks)} in {store.runs_path}; it holds {', '.join(have)}.")
    return picked


def _canonical_method(name: str) -> str | None:
    """A registered method's canonical name for ``name`` (an alias such as ``cpt``), or None.
    Reads the registry only: no method module (nor torch) is imported."""
    from cptbench.methods.registry import canonical_method

    try:
        return canonical_method(name)
    except UsageError:  # not a registered name or alias: nothing to resolve
        return None


def match_rows(rows: Sequence[LeaderboardRow], spec: str) -> list[LeaderboardRow]:
    """Leaderboard rows that ``spec`` names: an exact label (with or without the ``*`` mark), a
    ``method#hash`` prefix, or a method name / alias: its default config where one ran (the plain
    label), else all its configs."""
    spec = spec.strip()
    exact = [r for r in rows if r.label in (spec, spec + "*") or r.label.rstrip("*") == spec]
    if exact:
        return exact
    if "#" in spec:
        name, _, prefix = spec.partition("#")
        hits = [r for r in rows if r.method == name and r.method_config_hash.startswith(prefix)]
        if hits:
            return hits
    canonical = spec if any(r.method == spec for r in rows) else _canonical_method(spec)
    plain = [r for r in rows if canonical and r.label.rstrip("*") == canonical]
    if plain:  # an alias names the method's default config, as its canonical name does (``cpt`` = ``cpt-blk``)
        return plain
    return [r for r in rows if canonical and r.method == canonical]


def known_labels(rows: Iterable[LeaderboardRow]) -> list[str]:
    """The distinct labels of ``rows``, sorted."""
    return sorted({r.label for r in rows})


def select_rows(rows: Sequence[LeaderboardRow], spec: str, *, task: str | None = None, shots: Sequence[int] | None = None,
                splits: Sequence[str] | None = None, model: str | None = None,
                proposals: str | None = None) -> list[LeaderboardRow]:
    """Rows of ``spec`` under the filters; a usage error naming the labels that exist otherwise."""
    hits = match_rows(rows, spec)
    if not hits:
        from cptbench.core.registry import unknown_name_message

        if _registered(spec):  # a real method that only has no runs here
            raise UsageError(f"method {spec!r} has no runs in these results (methods with runs: "
                             f"{', '.join(known_labels(rows)) or 'none'}); `cptbench run -m {spec}` computes them.")
        raise UsageError(unknown_name_message("method in the results:", spec, known_labels(rows)))
    out = [r for r in hits if (task is None or r.task == task) and (shots is None or r.shots in shots)
           and (splits is None or r.split in splits) and (model is None or r.model == model)
           and (proposals is None or r.proposals == proposals)]
    if not out:
        have = sorted({(r.task, r.shots) for r in hits})
        raise UsageError(f"{spec!r} has no runs with the filters given (it has task/k: "
                         + ", ".join(f"{t} k={k}" for t, k in have) + "); change --task/--shots/--split/--model.")
    return out


def select_all(rows: Sequence[LeaderboardRow], specs: Iterable[str]) -> list[LeaderboardRow]:
    """The rows that any of ``specs`` names (in ``rows``' order); a usage error for a spec that
    names none, listing the labels that exist."""
    keys: set[tuple] = set()
    for spec in specs:
        keys |= {group_key(r) for r in select_rows(rows, spec)}
    return [r for r in rows if group_key(r) in keys]


def records_of(records: Sequence[RunRecord], row: LeaderboardRow) -> list[RunRecord]:
    """The records behind a leaderboard row, sorted by seed."""
    key = group_key(row)
    return sorted((r for r in records if group_key(r) == key), key=lambda r: r.seed)


#: path -> prediction rows, while a :func:`predictions_cache` is open
_PREDICTIONS: ContextVar[dict[Any, list[dict[str, Any]]] | None] = ContextVar("cptbench_predictions", default=None)


@contextmanager
def predictions_cache() -> Iterator[None]:
    """Within the block, :func:`load_predictions` reads each predictions file once (a report
    reads ft's files for the candidates plot and for every comparison). The rows are shared: do
    not change them."""
    token = _PREDICTIONS.set({})
    try:
        yield
    finally:
        _PREDICTIONS.reset(token)


def load_predictions(store: ResultsStore, rec: RunRecord) -> list[dict[str, Any]]:
    """The per-example prediction rows of a run (``example_id``, ``pred``, ``iou``, ``correct``,
    ``status``, ``scores``), verified against the record
    (:meth:`~cptbench.results.store.ResultsStore.read_predictions`: inside the results folder, the
    recorded sha256, the recorded counts); read once per :func:`predictions_cache` block."""
    if not rec.predictions_path:
        raise ResultsError(f"run {rec.run_id} ({rec.method} k={rec.shots} seed {rec.seed} {rec.split}) names no predictions "
                           f"file (a schema-1 record); run it again to get per-example predictions.")
    cache = _PREDICTIONS.get()
    if cache is None:
        return store.read_predictions(rec)
    key = (rec.run_id, rec.predictions_path)
    if key not in cache:
        cache[key] = store.read_predictions(rec)
    return cache[key]


def filtered(results, tasks: Sequence[str] | None = None, methods: Sequence[str] | None = None,
             shots: Sequence[int] | None = None) -> tuple[ResultsStore, list[RunRecord], list[LeaderboardRow]]:
    """``(store, records, rows)`` of a results folder under the ``-t`` / ``-m`` / ``-k`` filters of
    ``plot`` and ``report`` (:func:`select_runs`)."""
    store = ResultsStore(results)
    return (store, *select_runs(store, tasks, methods, shots))


def select_runs(store: ResultsStore, tasks: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                shots: Sequence[int] | None = None) -> tuple[list[RunRecord], list[LeaderboardRow]]:
    """``(records, rows)`` of ``store``: rows of the methods named (:func:`select_all`) at the k
    asked for; rows of methods that do not train (random, oracle: the same at every k) are kept at
    their one k, as references. A usage error when nothing is left."""
    from cptbench.report.aggregate import aggregate

    records = load_records(store, tasks or None)
    rows = aggregate(records)
    if methods:
        rows = select_all(rows, methods)
    if shots:
        counts: dict[tuple, set[int]] = {}
        for r in rows:
            counts.setdefault((r.task, r.label), set()).add(r.shots)
        rows = [r for r in rows if r.shots in shots or (len(counts[(r.task, r.label)]) == 1 and not _trains(r.method))]
        if not any(r.shots in shots for r in rows):
            raise UsageError(f"no runs at k = {', '.join(map(str, shots))} with these filters (k present: "
                             f"{', '.join(map(str, sorted(set().union(*counts.values()))))}).")
    keys = {group_key(r) for r in rows}
    return [r for r in records if group_key(r) in keys], rows


def _registered(name: str) -> bool:
    """Whether ``name`` is a registered method name or alias (nothing is imported)."""
    try:
        from cptbench.methods.registry import method_registry

        reg = method_registry()
        return any(name == n or name in reg.aliases_of(n) for n in reg.names())
    except Exception:
        return False


def _trains(method: str) -> bool:
    try:
        from cptbench.methods.registry import get_method_class

        return bool(getattr(get_method_class(method), "trains", True))
    except Exception:
        return True
