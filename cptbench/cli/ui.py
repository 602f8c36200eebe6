"""Rich output for the CLI: progress bars, run events and leaderboard tables."""

from __future__ import annotations

from typing import Any, Mapping

from cptbench.cli.state import AppState


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

def _table_width(console, table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def _measured_table(t, compact: bool, show_model: bool):
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from cptbench.report.tables import cell, cell_lines, shots_text

    models = [m for m in t.models if m != "none"]
    title = escape(t.title if show_model or not models else f"{t.title} · model {models[0]}")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD if compact else box.SQUARE,
                  padding=(0, 1), show_edge=not compact, pad_edge=not compact)
    if show_model:
        table.add_column("model", overflow="fold")
    table.add_column("method", overflow="fold", no_wrap=not compact)
    table.add_column("k", justify="right", no_wrap=True)
    table.add_column("seeds", justify="right", no_wrap=True)
    for s in t.splits:  # compact cells never wrap; a forced wide layout on a narrow terminal wraps its cells
        table.add_column(s, justify="right", no_wrap=compact)
    for i, e in enumerate(t.entries):
        cells = []
        for s in t.splits:
            c = e.cells.get(s)
            if c is None:
                cells.append("")
            elif compact:
                lines = [escape(x) for x in cell_lines(c)]
                cells.append(lines[0] + "".join(f"\n[dim]{x}[/]" for x in lines[1:]))
            else:
                cells.append(escape(cell(c)))
        multi = compact and any(c.n_seeds > 1 for c in e.cells.values())
        last = i == len(t.entries) - 1
        table.add_row(*([escape(e.model)] if show_model else []), escape(e.label), shots_text(e.shots, compact), e.seeds_text(), *cells,
                      end_section=multi and not last)
    return table


def print_tables(state: AppState, tables, published=None, layout: str = "auto", console=None) -> None:
    """Print measured tables (and published ones, dimmed). ``layout``: ``compact`` (one line of
    mean ± std per cell, RSD and interval below; fits 80 columns), ``wide`` (one line per row), or
    ``auto``: wide where the terminal is wide enough for it, else compact."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cptbench.report.tables import LEGEND

    out = console or Console()
    for t in tables:
        show_model = len([m for m in t.models if m != "none"]) > 1  # "none": methods that use no model
        if layout == "auto":
            wide = _measured_table(t, False, show_model)
            table = wide if _table_width(out, wide) <= out.width else _measured_table(t, True, show_model)
        else:
            table = _measured_table(t, layout == "compact", show_model)
        out.print(table)
        for note in t.notes:
            out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if tables:
        out.print(f"[dim]{escape(LEGEND)}[/]", highlight=False)
    for t in published or ():
        table = Table(title=escape(t.title), title_justify="left", style="dim")
        for i, h in enumerate(t.header):
            table.add_column(h, justify="left" if i < 3 else "right", overflow="fold")
        for row in t.rows:
            table.add_row(*map(escape, row))
        out.print(table)


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
