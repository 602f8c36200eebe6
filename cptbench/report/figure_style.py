"""How figures look, the same in every figure: one colour per method (whatever else the figure
shows), reference lines (ceilings and chance) that never set the scale, one y range over a
figure's panels, and the files a figure is saved as (PNG at 300 dpi, vector PDF and SVG)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable, Sequence

#: colours of cptbench's own methods (matplotlib's tab10 and greys); other methods get a colour from
#: their name's hash, so a method keeps its colour in every figure and every report
METHOD_COLOURS = {
    "cpt-blk": "#1f77b4", "cpt-seg": "#ff7f0e", "ft": "#d62728", "ft-head": "#e377c2", "random": "#7f7f7f",
    "oracle": "#000000", "blind-text": "#9467bd", "blind-image": "#8c564b", "first-candidate": "#bcbd22",
    "largest-box": "#17becf", "smallest-box": "#2ca02c", "most-central": "#aec7e8", "category-prior": "#ffbb78",
    "ref-order": "#98df8a", "sent-order": "#ff9896", "expression-length": "#c5b0d5",
}
#: colours for methods not in :data:`METHOD_COLOURS` (tab20 without the colours taken above)
_SPARE = ("#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
#: line styles and markers of a method's second, third ... config (a variant keeps its method's hue)
_VARIANT_STYLES = (("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1)), "v"))
#: how the reference lines are drawn: ceiling (reads evaluation labels), chance (1 / candidates)
REFERENCE_STYLE = {"ceiling": {"ls": (0, (6, 2, 1, 2)), "color": "#000000", "lw": 1.0},
                   "chance": {"ls": ":", "color": "#555555", "lw": 1.2}}
#: resolution of the PNG files (print quality); the report embeds lighter PNGs (:func:`png_bytes`)
PNG_DPI = 300
#: the y ranges ``plot`` / ``report`` accept: one over the figure's panels, one per panel, or fixed
Y_RANGES = ("shared", "panel")


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def base_method(label: str) -> str:
    """The method a label names: ``cpt-blk[palette=release5] [model ab12cd]`` -> ``cpt-blk``."""
    return label.split("[")[0].split(" ")[0].split("#")[0].rstrip("*")


def method_colour(method: str) -> str:
    """The colour of ``method`` in every figure."""
    return METHOD_COLOURS.get(method) or _SPARE[_hash(method) % len(_SPARE)]


def _shade(colour: str, amount: float) -> str:
    """``colour`` mixed with white (amount > 0) or black (amount < 0)."""
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    target = 255 if amount > 0 else 0
    a = abs(amount)
    return "#" + "".join(f"{round(c + (target - c) * a):02x}" for c in (r, g, b))


def series_style(label: str) -> dict:
    """``color``, ``ls`` and ``marker`` of a series: the method's colour, a solid line and round
    markers for its plain label; a shade of the same colour, its own line style and marker for a
    variant (another config, model or data), fixed by the label alone."""
    method = base_method(label)
    colour = method_colour(method)
    if label.rstrip("*") == method:
        return {"color": colour, "ls": "-", "marker": "o"}
    h = _hash(label)
    ls, marker = _VARIANT_STYLES[h % len(_VARIANT_STYLES)]
    shade = (0.25 + 0.2 * ((h >> 4) % 3) / 2) * (1 if (h >> 8) % 2 else -1)
    return {"color": _shade(colour, shade), "ls": ls, "marker": marker}


def y_range(values: Iterable[float], pad: float = 0.08, min_span: float = 10.0,
            bounds: tuple[float, float] = (0.0, 100.0)) -> tuple[float, float] | None:
    """A y range over ``values`` (the measured data: means ± std, seed points, published points),
    padded, at least ``min_span`` wide, inside ``bounds``; None when there is nothing."""
    vals = [float(v) for v in values if v == v]
    if not vals:
        return None
    lo, hi = min(vals), max(vals)
    span = max(hi - lo, min_span)
    mid = (lo + hi) / 2
    lo, hi = mid - span / 2 - pad * span, mid + span / 2 + pad * span
    if lo < bounds[0]:
        lo, hi = bounds[0], min(bounds[1], hi + (bounds[0] - lo))
    if hi > bounds[1]:
        lo, hi = max(bounds[0], lo - (hi - bounds[1])), bounds[1]
    return lo, hi


def parse_y_range(text: str | None) -> str | tuple[float, float]:
    """``shared`` (default), ``panel`` or ``LOW,HIGH`` (percent) as given to ``--y-range``; a
    :class:`ValueError` naming the choices otherwise."""
    t = (text or "shared").strip().lower()
    if t in Y_RANGES:
        return t
    lo, sep, hi = t.partition(",")
    try:
        if sep:
            a, b = float(lo), float(hi)
            if a < b:
                return a, b
    except ValueError:
        pass
    raise ValueError(f"--y-range {text!r}: give shared (one range over a figure's panels), panel (one per panel) "
                     f"or LOW,HIGH in percent, e.g. 0,60")


def reference_line(ax, y: float, label: str, kind: str, ylim: tuple[float, float], gid: str, slot: int = 0,
                   style: dict | None = None) -> bool:
    """Draw a horizontal reference line (``kind``: ceiling or chance; ``style`` overrides its colour
    and line style) that does not set the scale: inside ``ylim`` a line with its label; outside it,
    a note at the panel's edge with an arrow (``oracle* 100.0 ↑``). Returns whether the line itself
    is visible."""
    style = {**REFERENCE_STYLE[kind], **(style or {})}
    inside = ylim[0] <= y <= ylim[1]
    if inside:
        ax.axhline(y, color=style["color"], ls=style["ls"], lw=style["lw"], label=label, gid=gid, zorder=1)
    else:
        up = y > ylim[1]
        ax.annotate(f"{label} {y:.1f} {'↑' if up else '↓'}", xy=(0.99, 0.98 - 0.07 * slot if up else 0.02 + 0.07 * slot),
                    xycoords="axes fraction", ha="right", va="top" if up else "bottom", fontsize=7, color=style["color"],
                    gid=gid)
    return inside


def apply_y_range(axes: Sequence, per_panel: Sequence[tuple[float, float] | None], mode) -> list[tuple[float, float]]:
    """Set each panel's y limits: ``mode`` shared (the union of the panels' ranges), panel (each its
    own) or a fixed (low, high); returns the limits set."""
    known = [r for r in per_panel if r is not None]
    union = (min(r[0] for r in known), max(r[1] for r in known)) if known else (0.0, 100.0)
    out = []
    for ax, r in zip(axes, per_panel):
        lim = mode if isinstance(mode, tuple) else union if mode == "shared" or r is None else r
        ax.set_ylim(*lim)
        out.append(tuple(lim))
    return out


def save(fig, stem: Path, formats: Sequence[str] = ("png", "pdf", "svg")) -> list[Path]:
    """Write ``stem.<fmt>`` for each format: PNG at :data:`PNG_DPI`, vector PDF and SVG (text kept
    as text, no date, a fixed hash salt: the same figure gives the same bytes); returns the paths."""
    import matplotlib

    out = []
    stem.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cptbench", "pdf.fonttype": 42}):
        for fmt in formats:
            path = stem.with_suffix(f".{fmt}")
            meta = {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else None
            fig.savefig(path, format=fmt, dpi=PNG_DPI if fmt == "png" else None, metadata=meta)
            out.append(path)
    return out


def png_bytes(fig, dpi: int = 150) -> bytes:
    """``fig`` as PNG bytes (the report embeds these)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
