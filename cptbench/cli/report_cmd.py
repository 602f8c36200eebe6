"""``cptbench report``: one self-contained HTML page (or Markdown) from a results folder."""

from __future__ import annotations

from pathlib import Path

import click

from cptbench.cli.options import data_options, figure_filter_options, results_option
from cptbench.cli.state import pass_state


@click.command()
@results_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="report.html (self-contained: images as data URIs) or report.md (images under report_files/); "
                   "default: <results>/report.html.")
@figure_filter_options
@click.option("--compare", "pairs", multiple=True, metavar="A:B",
              help="Compare method A against B (repeatable); default: every trained method against ft.")
@click.option("--gallery", "n_gallery", type=click.IntRange(min=0), default=3, show_default=True,
              help="Right and wrong painted prompts to show (each); 0 = no gallery.")
@data_options
@click.option("--proposals", "proposals_file", default=None, help="The detections file of runs with det: proposals (gallery).")
@pass_state
def report(state, results, output, tasks, methods, shots, y_range, pairs, n_gallery, data_root, images, proposals_file) -> None:
    """Write a report of a results folder: setting, paper-style tables with seed counts and the
    command behind each row, published numbers (marked), plots, comparisons, a gallery of painted
    prompts (right and wrong), and the versions behind every number.

    \b
    Examples:
      cptbench report -o report.html
      cptbench report -o report.md --compare cpt-blk:ft
      cptbench report -m cpt-blk,cpt-seg,ft,random -k 1-16   (leaves the oracle out)
    """
    from cptbench.core.errors import UsageError
    from cptbench.report.document import build_report, to_html, to_markdown
    from cptbench.results.store import ResultsStore

    store = ResultsStore(results)
    out = Path(output) if output else store.layout.report
    if out.suffix.lower() not in (".html", ".htm", ".md"):
        raise UsageError(f"-o {out}: the report is .html (self-contained) or .md (Markdown); pick one of those suffixes.")
    parsed = []
    for p in pairs:
        a, sep, b = p.partition(":")
        if not sep or not a.strip() or not b.strip():
            raise UsageError(f"--compare expects A:B (two method labels), got {p!r}")
        parsed.append((a.strip(), b.strip()))
    rep = build_report(store, tasks=tasks, methods=methods, shots=shots, y_mode=y_range, pairs=parsed or None, data_root=data_root, images=images,
                       proposals_file=proposals_file, gallery=n_gallery > 0, n_gallery=max(n_gallery, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".md":
        assets = out.with_name(out.stem + "_files")
        out.write_text(to_markdown(rep, assets, assets.name), encoding="utf-8")
        extra = f" (images in {assets}/)"
    else:
        out.write_text(to_html(rep), encoding="utf-8")
        extra = f" ({out.stat().st_size / 1e6:.1f} MB, self-contained)"
    from rich.markup import escape

    for n in [*rep.notes, *rep.gallery_notes]:
        state.log(f"[yellow]note:[/] {escape(n)}")
    state.log(f"wrote {out}{extra}: {sum(len(t.entries) for t in rep.tables)} rows, {len(rep.figures)} plots, "
              f"{len(rep.comparisons)} comparisons, {sum(len(g.items) for g in rep.galleries)} painted prompts")
