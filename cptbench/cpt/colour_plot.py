"""A picture of a colour search (``cptbench prompt-search --plot FILE``): per colour word, its
probability over the RGB grid, seen along each axis.

The grid is three-dimensional; each word gets one row of three heat maps, the largest probability
over the hidden channel (red x green over blue, red x blue over green, green x blue over red), with
the word's best colour marked and shown as a swatch in the row's title. matplotlib is imported
here, inside the function (``pip install 'cptbench[plot]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cptbench.cpt.colour_search import probabilities_of

#: the hidden channel of each of a word's three panels (the other two are the axes: x first)
PANELS = (2, 1, 0)


def probability_cube(result: Any, word_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(the grid's channel values, the probabilities of word ``word_index`` as a cube indexed
    [red, green, blue]) of a :class:`~cptbench.cpt.colour_search.SearchResult`."""
    values = np.unique(result.grid[:, 0])
    n = len(values)
    return values, probabilities_of(result.log_odds[:, word_index]).reshape(n, n, n)


def plot_search(result: Any, path: str | Path, title: str = "") -> Path:
    """Draw ``result`` (module doc) to ``path`` (any matplotlib format: .png, .svg, .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words = list(result.words)
    by_word = {c.word: c for c in result.choices}
    fig, axes = plt.subplots(len(words), 3, figsize=(10, 3.1 * len(words)), squeeze=False)
    fig.subplots_adjust(left=0.08, right=0.84, top=1.0 - 0.45 / len(words), hspace=0.75, wspace=0.5)
    for row, word in enumerate(words):
        values, cube = probability_cube(result, row)
        half = (values[1] - values[0]) / 2 if len(values) > 1 else 0.5
        extent = (values[0] - half, values[-1] + half, values[0] - half, values[-1] + half)
        choice = by_word[word]
        for col, hidden in enumerate(PANELS):
            ax = axes[row][col]
            x_axis, y_axis = (a for a in range(3) if a != hidden)
            plane = cube.max(axis=hidden)  # indexed [x, y]
            image = ax.imshow(plane.T, origin="lower", vmin=0.0, vmax=1.0, cmap="viridis", aspect="equal",
                              extent=extent)
            ax.plot([choice.rgb[x_axis]], [choice.rgb[y_axis]], marker="o", mfc="none", mec="white", ms=9)
            ax.set_xlabel("RGB"[x_axis])
            ax.set_ylabel("RGB"[y_axis])
            ax.set_title(f"max over {'RGB'[hidden]}", fontsize=8)
        state = "kept" if choice.kept else "not kept"
        axes[row][0].annotate(f"{word}: {list(choice.rgb)}  p={choice.probability:.3f}  margin={choice.margin:+.3f} "
                              f"({state})", xy=(0, 1.2), xycoords="axes fraction", fontsize=10, fontweight="bold")
        swatch = axes[row][2].inset_axes([1.1, 0.2, 0.15, 0.6])
        swatch.imshow(np.asarray(choice.rgb, dtype=np.uint8).reshape(1, 1, 3))
        swatch.set_axis_off()
    fig.colorbar(image, cax=fig.add_axes([0.93, 0.3, 0.015, 0.4]), label="probability")
    if title:
        fig.suptitle(title, y=1.0 - 0.1 / len(words))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return out
