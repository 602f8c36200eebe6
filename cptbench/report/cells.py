"""One leaderboard cell as text: what a table prints for a row's accuracy over its seeds.

The rules that keep a cell honest (docs/results.md "Tables"):

* a cell over 3+ seeds: mean ± population std (ddof 0, as the CPT paper), RSD = std / mean, and the
  95% t-interval of the mean clipped to 0-100 (:func:`cptbench.report.aggregate.seed_stats`);
* a cell over 2 seeds says ``n=2`` instead of an RSD and an interval (two seeds give a t quantile of
  12.7: intervals such as [-42.5, 81.5]);
* every seed equal: ``± 0.00`` and "all seeds equal", no zero-width interval;
* a zero-shot cell has no RSD (the paper's RSD is the spread over k-shot draws; zero-shot draws
  nothing); one run is one number.

Two forms: :func:`cell` (the ``full`` layout, Markdown, CSV of the wide table) and
:func:`compact_cell` (the default terminal layout: one short line, 16-18 characters).
"""

from __future__ import annotations

from cptbench.report.aggregate import MIN_SEEDS_FOR_INTERVAL, LeaderboardRow, is_missing

#: legend printed under every measured table in the full layouts
LEGEND = ("Accuracy % (IoU rule per task card). Cells: mean ± population std (ddof 0) over seeds, RSD = std / mean, "
          f"[95% t-interval of the mean, clipped to 0-100; {MIN_SEEDS_FOR_INTERVAL}+ seeds]; n=2: two seeds, too few "
          "for an RSD or an interval; one number = one run. zs = zero-shot (k = 0: no RSD). "
          "* = reads evaluation labels (an upper bound, not a method).")
#: legend printed under the compact (one line per row) terminal table
COMPACT_LEGEND = ("Accuracy %: mean±std over seeds (population std), RSD = std/mean (3+ seeds, k > 0); n=2: two "
                  "seeds; one number = one run; zs = zero-shot; * reads eval labels; intervals: --layout full.")


def _has_mean(row: LeaderboardRow) -> bool:
    return bool(row.n_seeds) and not is_missing(row.acc_mean)


def shows_rsd(row: LeaderboardRow) -> bool:
    """Whether the cell of ``row`` shows an RSD: 3+ seeds and k > 0."""
    return _has_mean(row) and row.n_seeds >= MIN_SEEDS_FOR_INTERVAL and row.shots != 0


def mean_std_text(row: LeaderboardRow, digits: int = 2, sep: str = " ± ") -> str:
    """``31.27 ± 1.19`` (2+ seeds), ``31.27`` (one run), ``n/a`` (no accuracy)."""
    if not _has_mean(row):
        return "n/a"
    if row.n_seeds > 1:
        return f"{row.acc_mean:.{digits}f}{sep}{row.acc_std:.{digits}f}"
    return f"{row.acc_mean:.{digits}f}"


def rsd_text(row: LeaderboardRow) -> str:
    """``RSD 3.8%``; ``RSD n/a (mean 0)`` where the mean is 0; empty where no RSD is shown
    (:func:`shows_rsd`)."""
    if not shows_rsd(row):
        return ""
    if is_missing(row.rsd):
        return "RSD n/a (mean 0)" if row.acc_mean == 0 else "RSD n/a"
    return f"RSD {100 * row.rsd:.1f}%"


def ci_text(row: LeaderboardRow, digits: int = 2) -> str:
    """``[29.79, 32.75]`` (95% t-interval, 3+ seeds with some spread); empty otherwise."""
    if row.n_seeds < MIN_SEEDS_FOR_INTERVAL or is_missing(row.ci95_low) or is_missing(row.ci95_high):
        return ""
    return f"[{row.ci95_low:.{digits}f}, {row.ci95_high:.{digits}f}]"


def _why_short(row: LeaderboardRow) -> str:
    if row.n_seeds == 2:
        return "n=2"
    if row.n_seeds >= MIN_SEEDS_FOR_INTERVAL and row.acc_std == 0:
        return "all seeds equal"
    return ""


def cell(row: LeaderboardRow) -> str:
    """The full one-line cell: ``31.27 ± 1.19 (RSD 3.8%) [29.79, 32.75]``; ``31.27 ± 1.19 (n=2)``;
    ``26.83 ± 0.00 (RSD 0.0%, all seeds equal)``; zero-shot ``18.91 ± 1.51 [16.8, 21.0]``; one run
    ``31.27``."""
    text = mean_std_text(row)
    if not _has_mean(row) or row.n_seeds < 2:
        return text
    inner = [x for x in (rsd_text(row), _why_short(row)) if x]
    if inner:
        text += f" ({', '.join(inner)})"
    ci = ci_text(row)
    return f"{text} {ci}" if ci else text


def compact_cell(row: LeaderboardRow, digits: int = 2) -> str:
    """One short line: ``29.53±1.81 6.1%`` (3+ seeds), ``29.53±1.81 n=2``, zero-shot ``18.91±1.51``,
    one run ``31.27``; ``digits`` 1 (:func:`narrow_cell`): ``29.5±1.8 6%``."""
    text = mean_std_text(row, digits=digits, sep="±")
    if not _has_mean(row) or row.n_seeds < 2:
        return text
    if row.n_seeds == 2:
        return f"{text} n=2"
    if shows_rsd(row):
        return f"{text} {'n/a' if is_missing(row.rsd) else f'{100 * row.rsd:.{digits - 1}f}%'}"
    return text


def narrow_cell(row: LeaderboardRow) -> str:
    """:func:`compact_cell` with one decimal (RSD in whole percent), for tables that would not fit
    their terminal otherwise: ``29.5±1.8 6%``."""
    return compact_cell(row, digits=1)


def cell_lines(row: LeaderboardRow) -> list[str]:
    """The cell as separate lines (mean ± std, RSD, interval), leaving out the empty ones."""
    lines = [mean_std_text(row)]
    if _has_mean(row) and row.n_seeds > 1:
        lines += [x for x in (rsd_text(row) or _why_short(row), ci_text(row, 1)) if x]
    return lines


def shots_text(shots, compact: bool = False) -> str:
    """k as a table prints it: zero-shot marked (``0 (zero-shot)``, compact ``0 zs``)."""
    if shots == 0:
        return "0 zs" if compact else "0 (zero-shot)"
    return str(shots)
