"""Rich output for the CLI: progress bars and run events (leaderboard tables: :mod:`cptbench.cli.table_print`)."""

from __future__ import annotations

from typing import Any, Mapping

from cptbench.cli.state import AppState
from cptbench.cli.table_print import print_tables  # noqa: F401  (tables are printed from here too)


class RunReporter:
    """Receives the runner's progress and events and draws them with rich."""

    def __init__(self, state: AppState):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.state = state
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=state.console, transient=True,
            disable=state.verbosity < 0,
        )
        self._bars: dict[str, Any] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def on_progress(self, stage: str, done: int, total: int) -> None:
        """Advance the bar of ``stage`` (created on first use, removed when done)."""
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(bar, completed=done, total=total)
        if done >= total:
            self.progress.remove_task(bar)
            del self._bars[stage]

    def on_event(self, kind: str, info: Mapping[str, Any]) -> None:
        """Log one runner event (``job``, ``skip``, ``load``, ``data``, ``retry``, ``busy``, ``done``)."""
        log = self.progress.console.print if self.state.verbosity >= 0 else (lambda *a, **k: None)
        if kind == "job":
            log(f"[cyan][{info['index']}/{info['total']}][/] {info['task']} · {info['method']} · k={info['shots']} · seed {info['seed']}", highlight=False)
        elif kind == "skip" and self.state.verbosity >= 1:
            log(f"[dim][{info['index']}/{info['total']}] {info['task']} · {info['method']} · k={info['shots']} · seed {info['seed']}: already done[/]", highlight=False)
        elif kind == "load":
            log(f"[dim]loading task data: {info['task']}[/]", highlight=False)
        elif kind == "data":
            log(f"[dim]{info['task']}: data {info['root']}; images {info['images']} ({info['image_layout']})[/]", highlight=False)
        elif kind == "retry":
            log(f"[yellow]{info['task']} · {info['method']} · k={info['shots']} · seed {info['seed']}: worker lost "
                f"({info['why']}), retrying (attempt {info['attempt'] + 1})[/]", highlight=False)
        elif kind == "busy":
            log(f"[yellow][{info['index']}/{info['total']}] {info['task']} · {info['method']} · k={info['shots']} · seed "
                f"{info['seed']} · {info['split']}: skipped, being computed by {info['holder']}[/]", highlight=False)
        elif kind == "done":
            rec = info["record"]  # the typed RunRecord
            extra = f", {rec.n_invalid} invalid" if rec.n_invalid else ""
            if rec.n_no_candidates:
                extra += f", {rec.n_no_candidates} without candidates"
            skipped = sum((rec.n_skipped or {}).values())
            if skipped:
                extra += f", {skipped} bad skipped"
            extra += kept_text(rec.n_kept)
            resumed = f", {rec.resumed_examples} resumed" if rec.resumed_examples else ""
            acc = rec.accuracy
            acc_text = "   n/a " if acc is None or acc != acc else f"{acc:6.2f}%"  # n/a: a split with no expression
            log(f"    {rec.split:>6}: {acc_text}  ({rec.n_correct}/{rec.n}{extra}{resumed}, {rec.seconds:.1f}s)", highlight=False)

def kept_text(kept) -> str:
    """", 3 candidate boxes past the image kept, 1 zero-area kept" for a record's ``n_kept`` ("" when none)."""
    kept = kept or {}
    parts = []
    outside = kept.get("candidates_outside", 0)
    zero = kept.get("candidates_zero_area", 0)
    targets = kept.get("targets_outside", 0) + kept.get("targets_zero_area", 0)
    if outside:
        parts.append(f"{outside} candidate box{'es' if outside != 1 else ''} past the image kept (painted clipped)")
    if zero:
        parts.append(f"{zero} zero-area candidate{'s' if zero != 1 else ''} kept")
    if targets:
        parts.append(f"{targets} expression{'s' if targets != 1 else ''} with a target box past the image or of zero area kept")
    return "".join(", " + p for p in parts)
