"""Rich output for the CLI: progress bars, run events and leaderboard tables."""

from __future__ import annotations

from typing import Any, Mapping

from .state import AppState


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
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(bar, completed=done, total=total)
        if done >= total:
            self.progress.remove_task(bar)
            del self._bars[stage]

    def on_event(self, kind: str, info: Mapping[str, Any]) -> None:
        log = self.progress.console.print if self.state.verbosity >= 0 else (lambda *a, **k: None)
        if kind == "job":
            log(f"[cyan][{info['index']}/{info['total']}][/] {info['task']} · {info['method']} · k={info['shots']} · seed {info['seed']}", highlight=False)
        elif kind == "skip" and self.state.verbosity >= 1:
            log(f"[dim][{info['index']}/{info['total']}] {info['task']} · {info['method']} · k={info['shots']} · seed {info['seed']}: already done[/]", highlight=False)
        elif kind == "load":
            log(f"[dim]loading task data: {info['task']}[/]", highlight=False)
        elif kind == "data":
            log(f"[dim]{info['task']}: data {info['root']}, images: {info['image_layout']}[/]", highlight=False)
        elif kind == "busy":
            log(f"[yellow][{info['index']}/{info['total']}] {info['task']} · {info['method']} · k={info['shots']} · seed "
                f"{info['seed']} · {info['split']}: skipped, being computed by {info['holder']}[/]", highlight=False)
        elif kind == "done":
            extra = f", {info['n_invalid']} invalid" if info["n_invalid"] else ""
            if info.get("n_no_candidates"):
                extra += f", {info['n_no_candidates']} without candidates"
            skipped = sum((info.get("n_skipped") or {}).values())
            if skipped:
                extra += f", {skipped} bad skipped"
            resumed = f", {info['resumed_examples']} resumed" if info.get("resumed_examples") else ""
            log(f"    {info['split']:>6}: {info['accuracy']:6.2f}%  ({info['n_correct']}/{info['n']}{extra}{resumed}, {info['seconds']:.1f}s)", highlight=False)


def print_tables(state: AppState, tables, published=None) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console()
    for t in tables:
        table = Table(title=t.title, title_justify="left")
        for i, h in enumerate(t.header):
            table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i < 3)
        for row in t.rows:
            table.add_row(*row)
        out.print(table)
        for note in t.notes:
            out.print(f"[yellow]note:[/] {note}", highlight=False)
    if published:
        for t in published:
            table = Table(title=t.title, title_justify="left", style="dim")
            for i, h in enumerate(t.header):
                table.add_column(h, justify="left" if i < 3 else "right")
            for row in t.rows:
                table.add_row(*row)
            out.print(table)
    out.print("[dim]Accuracy %; mean ± population std over seeds; RSD = std/mean; * = reads eval labels (upper bound).[/]")
