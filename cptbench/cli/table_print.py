"""Leaderboard tables on the terminal (rich): the compact layout (one line per row, fits 80
columns: mean ± std and RSD) and the full layout (one line per row with the interval; wraps on a
narrow terminal)."""

from __future__ import annotations

from typing import Sequence

from cptbench.cli.state import AppState

#: the layouts ``leaderboard --layout`` accepts (``wide`` is the old name of ``full``)
LAYOUTS = ("auto", "compact", "full", "wide")
#: labels longer than this become footnotes in the compact layout when the table would not fit
LABEL_MAX = 16


def _width(console, table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(10_000), table).maximum


def _table(t, full: bool, show_model: bool, labels: dict[str, str], narrow: bool = False):
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from cptbench.report.cells import cell, compact_cell, narrow_cell, shots_text

    models = [m for m in t.models if m != "none"]
    title = escape(t.title if show_model or not models else f"{t.title} · model {models[0]}")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), show_edge=False,
                  pad_edge=False)
    if show_model:
        table.add_column("model", overflow="fold")
    table.add_column("method", no_wrap=True)
    table.add_column("k", justify="right", no_wrap=True)
    table.add_column("seeds", justify="right", no_wrap=True)
    for s in t.splits:  # compact cells never wrap; full cells wrap at their spaces on a narrow terminal
        table.add_column(s, justify="right", no_wrap=not full)
    for e in t.entries:
        fmt = cell if full else narrow_cell if narrow else compact_cell
        cells = [escape(fmt(e.cells[s])) if s in e.cells else "" for s in t.splits]
        table.add_row(*([escape(e.model)] if show_model else []), escape(labels.get(e.label, e.label)),
                      shots_text(e.shots, True), e.seeds_text(), *cells)
    return table


def _footnotes(t) -> dict[str, str]:
    """Short names for the long labels of a table: ``cpt-blk (a)`` for ``cpt-blk[palette=release5]``."""
    out: dict[str, str] = {}
    for e in t.entries:
        if len(e.label) > LABEL_MAX and e.label not in out:
            base = e.label.split("[")[0].split(" ")[0].split("#")[0]
            out[e.label] = f"{base} ({chr(ord('a') + len(out) % 26)}{len(out) // 26 or ''})"
    return out


def render_table(t, layout: str, width: int, console=None):
    """``(table, footnotes)`` of one measured table for a terminal ``width`` columns wide:
    ``layout`` compact, full (``wide``) or auto (full where it fits, else compact); the compact
    layout replaces long labels by footnotes where the table would not fit otherwise, then prints
    one decimal (never a cell cut to an ellipsis)."""
    from rich.console import Console

    console = console or Console(width=width)
    show_model = len([m for m in t.models if m != "none"]) > 1  # "none": methods that use no model
    full = layout in ("full", "wide")
    if layout == "auto":
        table = _table(t, True, show_model, {})
        if _width(console, table) <= width:
            return table, {}
    table = _table(t, full, show_model, {})
    if full or _width(console, table) <= width:
        return table, {}
    notes = _footnotes(t)
    table = _table(t, False, show_model, notes)
    if _width(console, table) <= width:
        return table, notes
    return _table(t, False, show_model, notes, narrow=True), notes  # one decimal rather than cut cells


def print_tables(state: AppState, tables: Sequence, published=None, layout: str = "auto", console=None) -> None:
    """Print measured tables (and published ones, dimmed): ``layout`` compact (one line per row:
    mean ± std and RSD; fits 80 columns), full (``wide``: one line per row with the 95% interval),
    or ``auto``: full where the terminal is wide enough for it, else compact."""
    from rich.console import Console
    from rich.markup import escape

    from cptbench.report.cells import COMPACT_LEGEND, LEGEND

    out = console or Console()
    compact_seen = False
    for t in tables:
        table, notes = render_table(t, layout, out.width, out)
        compact_seen = compact_seen or _is_compact(table)
        out.print(table)
        for label, short in notes.items():
            out.print(f"[dim]{escape(short)} = {escape(label)}[/]", highlight=False)
        for note in t.notes:
            out.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    if tables:
        out.print(f"[dim]{escape(COMPACT_LEGEND if compact_seen else LEGEND)}[/]", highlight=False)
    for t in published or ():
        print_published(out, t)


def _is_compact(table) -> bool:
    return all(c.no_wrap for c in table.columns[-1:])


def print_published(out, t) -> None:
    """A published table, dimmed, with its title saying it is not measured here."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(t.title), title_justify="left", style="dim", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False)
    for i, h in enumerate(t.header):
        table.add_column(h, justify="left" if i < 3 or h == "source" else "right", overflow="fold")
    for row in t.rows:
        table.add_row(*map(escape, row))
    out.print(table)
