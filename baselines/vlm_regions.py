"""What the generative prompting methods draw on an image: translucent colours (``vlm-colour``, CPT's
visual prompt) or numbered marks (``vlm-mark``, Set-of-Mark's).

Colours follow CPT's rules (facts of the CPT release, the same as ``cpt-blk`` paints): a palette of
colour words with RGB values (``red`` = (240, 0, 30) alone, or ``release5`` = blue, red, yellow,
purple, green), candidates chunked in order into groups of ``len(palette)``, candidate ``j`` of a
group painted with colour ``j``; per covered pixel ``out = rint((1 - a) * orig + a * rgb)`` with
``a = 127/255`` by default, the later candidate winning where boxes overlap, pixels outside every
box unchanged. A box covers the release's pixels: columns ``int(x1) .. int(x2 - 1) - 1`` and rows
likewise, clipped to the image (:func:`box_spans`); a zero-area box covers nothing.

Marks follow Set-of-Mark's idea (Yang et al. 2023): every candidate of a group gets a number, drawn
as white or black digits (whichever contrasts more) on a filled label of the mark's colour, at the
centre of its box (``center``) or at its top-left corner (``corner``), the label kept inside the
image; with ``outline`` the box's border is drawn in the same colour. Digits are cptbench's own 5 x
7 pixel font scaled by an integer ``scale`` (one digit is ``5 scale`` wide and ``7 scale`` high, a
gap of ``scale`` between digits and a margin of ``scale`` around them), so the drawing is exact and
needs no font file. Mark colours cycle through :data:`MARK_COLOURS`; numbers start at 1 in every
group. Marks are drawn in candidate order (a later label covers an earlier one where they meet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_ALPHA = 127 / 255
MARK_POSITIONS = ("center", "corner")


@dataclass(frozen=True)
class Palette:
    """An ordered set of colour words with their RGB values."""

    name: str
    words: tuple[str, ...]
    rgb: tuple[tuple[int, int, int], ...]

    def __len__(self) -> int:
        return len(self.words)

    def describe(self) -> dict:
        """The palette for records: its name and each colour word's RGB."""
        return {"name": self.name, "colors": {w: list(c) for w, c in zip(self.words, self.rgb)}}


PALETTES = {
    "red": Palette("red", ("red",), ((240, 0, 30),)),
    "release5": Palette("release5", ("blue", "red", "yellow", "purple", "green"),
                        ((0, 10, 255), (240, 0, 30), (255, 255, 25), (155, 50, 210), (0, 255, 0))),
}

#: label colours of the marks, in order (20 distinct colours' first 12; cycled past 12)
MARK_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
                (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0))

#: cptbench's 5 x 7 digit font: 7 rows of 5 columns, ``#`` = ink
GLYPHS = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": (".###.", "#....", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "....#", ".###."),
}


def parse_palette(spec: str) -> Palette:
    """A named palette (``red``, ``release5``) or a custom one, ``"word:r,g,b;word:r,g,b"``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"palette must be a name ({', '.join(PALETTES)}) or 'word:r,g,b;...', got {spec!r}")
    spec = spec.strip()
    if spec in PALETTES:
        return PALETTES[spec]
    if ":" not in spec:
        raise ValueError(f"unknown palette {spec!r}; choose one of {', '.join(PALETTES)} or give a custom one as "
                         f"'word:r,g,b;word:r,g,b' (e.g. 'red:240,0,30;blue:0,10,255')")
    words, rgbs = [], []
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        word, _, values = part.partition(":")
        try:
            rgb = tuple(int(v) for v in values.split(","))
        except ValueError:
            rgb = ()
        if not word.strip() or len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError(f"palette entry {part!r}: expected 'word:r,g,b' with r, g, b in 0..255")
        if word.strip() in words:
            raise ValueError(f"palette: colour word {word.strip()!r} appears twice")
        words.append(word.strip())
        rgbs.append(rgb)
    if not words:
        raise ValueError(f"palette {spec!r} has no colours")
    return Palette("custom", tuple(words), tuple(rgbs))


def candidate_groups(n_candidates: int, group_size: int) -> list[range]:
    """Candidate index ranges, one per drawn copy: ``[0, G), [G, 2G), ...`` (``group_size`` 0 = all)."""
    size = group_size if group_size > 0 else max(n_candidates, 1)
    return [range(s, min(s + size, n_candidates)) for s in range(0, n_candidates, size)]


def box_spans(boxes, height: int, width: int) -> np.ndarray:
    """Integer ``(n, 4)`` ``[c0, r0, c1, r1]`` (end exclusive, clipped) of the pixels each ``xyxy``
    box covers under the release's rule (module doc); a zero-area box covers nothing."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        empty = ~((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
    b = np.where(np.isfinite(b), b, 0.0)
    limit = np.array([width, height], dtype=np.float64)
    lo = np.clip(np.trunc(b[:, :2]), 0, limit)
    hi = np.clip(np.trunc(b[:, 2:] - 1.0), 0, limit)
    hi[empty] = lo[empty]
    return np.concatenate([lo, hi], axis=1).astype(np.int64)


def _check_image(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image (H, W, 3), got {arr.dtype} {arr.shape}")
    return arr


def blend_rgb(orig, rgb, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """The value :func:`paint_colours` writes over original pixel(s) ``orig`` with colour ``rgb``."""
    blended = (1.0 - alpha) * np.asarray(orig, dtype=np.float64) + alpha * np.asarray(rgb, dtype=np.float64)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def paint_colours(image, boxes, colours: Sequence[Sequence[int]], alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """A copy of ``image`` with box ``j`` blended with ``colours[j]`` (module doc)."""
    img = _check_image(image)
    h, w = img.shape[:2]
    owner = np.full((h, w), -1, dtype=np.int64)
    for j, (c0, r0, c1, r1) in enumerate(box_spans(boxes, h, w)):
        owner[r0:r1, c0:c1] = j  # the later candidate wins
    out = img.copy()
    covered = owner >= 0
    if covered.any():
        rgb = np.asarray(colours, dtype=np.float64).reshape(-1, 3)
        out[covered] = blend_rgb(img[covered], rgb[owner[covered]], alpha)
    return out


def auto_scale(height: int, width: int) -> int:
    """The digit scale for an image: ``max(1, min(H, W) // 160)`` (1 up to 319 px, 3 at 480 px)."""
    return max(1, min(int(height), int(width)) // 160)


def text_colour(rgb: Sequence[int]) -> tuple[int, int, int]:
    """White or black, whichever contrasts more with ``rgb`` (Rec. 601 luma below 140: white)."""
    r, g, b = (float(v) for v in rgb)
    return (255, 255, 255) if 0.299 * r + 0.587 * g + 0.114 * b < 140 else (0, 0, 0)


def label_size(text: str, scale: int) -> tuple[int, int]:
    """(width, height) of the label of ``text`` at ``scale``."""
    return len(text) * 6 * scale + scale, 9 * scale


def label_origin(span: Sequence[int], size: tuple[int, int], height: int, width: int, position: str) -> tuple[int, int]:
    """(x, y) of a label's top-left pixel for a box ``span`` ``[c0, r0, c1, r1]``, kept inside the image."""
    lw, lh = size
    c0, r0, c1, r1 = (int(v) for v in span)
    if position == "center":
        x, y = (c0 + c1) // 2 - lw // 2, (r0 + r1) // 2 - lh // 2
    elif position == "corner":
        x, y = c0, r0
    else:
        raise ValueError(f"mark position must be one of {', '.join(MARK_POSITIONS)}, got {position!r}")
    return max(0, min(x, width - lw)), max(0, min(y, height - lh))


def draw_label(out: np.ndarray, text: str, x: int, y: int, scale: int, rgb: Sequence[int]) -> None:
    """Draw ``text`` (digits) at ``(x, y)`` in place: a filled label of ``rgb`` with the digits in
    :func:`text_colour` (pixels past the image edge are dropped)."""
    lw, lh = label_size(text, scale)
    h, w = out.shape[:2]
    out[max(y, 0):min(y + lh, h), max(x, 0):min(x + lw, w)] = rgb
    ink = np.asarray(text_colour(rgb), dtype=np.uint8)
    for d, ch in enumerate(text):
        rows = GLYPHS[ch]
        gx, gy = x + scale + d * 6 * scale, y + scale
        for r, line in enumerate(rows):
            for c, cell in enumerate(line):
                if cell == "#":
                    ys, xs = gy + r * scale, gx + c * scale
                    out[max(ys, 0):min(ys + scale, h), max(xs, 0):min(xs + scale, w)] = ink


def draw_marks(image, boxes, numbers: Sequence[int], *, position: str = "center", outline: bool = True,
               scale: int = 0) -> np.ndarray:
    """A copy of ``image`` with mark ``numbers[j]`` on box ``j`` (module doc); ``scale`` 0 = :func:`auto_scale`."""
    img = _check_image(image)
    h, w = img.shape[:2]
    k = int(scale) if scale else auto_scale(h, w)
    spans = box_spans(boxes, h, w)
    out = img.copy()
    for j, (span, number) in enumerate(zip(spans, numbers)):
        rgb = MARK_COLOURS[j % len(MARK_COLOURS)]
        c0, r0, c1, r1 = (int(v) for v in span)
        if outline and c1 > c0 and r1 > r0:
            t = min(k, c1 - c0, r1 - r0)
            out[r0:r0 + t, c0:c1] = rgb
            out[r1 - t:r1, c0:c1] = rgb
            out[r0:r1, c0:c0 + t] = rgb
            out[r0:r1, c1 - t:c1] = rgb
        text = str(int(number))
        x, y = label_origin(span, label_size(text, k), h, w, position)
        draw_label(out, text, x, y, k, rgb)
    return out
