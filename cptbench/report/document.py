"""The report: one self-contained HTML page (images as data URIs) and its Markdown twin.

Sections: setting (proposals, model and data fingerprints, metric, limit), the paper-style tables
(every row with its seed count, zero-shot marked, and the command behind it), published reference
rows (separate tables, marked on every row), plots, comparisons, a gallery of painted prompts, and
the provenance of every number (rebuilt command, versions, git revision, dates, run ids).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from cptbench.core.errors import CptbenchError
from cptbench.report.blind import BlindCeilings, blind_ceilings, blind_html, blind_markdown
from cptbench.report.aggregate import LeaderboardRow
from cptbench.report.compare import (EXPRESSION_HEADER, SEED_HEADER, Comparison, compare, expression_rows, headline_lines,
                                     note_lines, seed_counts, seed_rows)
from cptbench.report.gallery import Gallery, build_gallery
from cptbench.report.figure_style import png_bytes, save
from cptbench.report.plots import all_figures, figure_title, file_stem, method_trains
from cptbench.report.provenance import Command, build_commands
from cptbench.report.tables import LEGEND, WideTable, cell, shots_text, table_title, wide_tables
from cptbench.results.records import RunRecord
from cptbench.report.selection import group_key, predictions_cache, select_runs
from cptbench.results.store import ResultsStore

#: the columns of the setting table, in order (the keys of each :func:`_settings` entry)
SETTING_KEYS = ("table", "task", "task version", "proposals", "models", "data content", "metric", "limit", "data policy")


@dataclass
class Figure:
    """One plot of the report: its kind and table key, the PNG, caption, plotted series, file stem
    and the matplotlib figure (for the Markdown twin's PNG and SVG files)."""

    kind: str
    key: tuple
    png: bytes
    caption: str
    series: list[dict]
    stem: str
    fig: Any = None


@dataclass
class Report:
    """Everything the report shows, built once by :func:`build_report` and written by
    :func:`to_html` or :func:`to_markdown`."""

    title: str
    generated_at: str
    results: str
    n_runs: int
    version: str
    tables: list[WideTable]
    published: list[WideTable]
    settings: list[dict[str, str]]
    figures: list[Figure]
    comparisons: list[Comparison]
    comparison_notes: list[str]
    galleries: list[Gallery]
    gallery_notes: list[str]
    commands: list[Command]
    row_commands: dict[tuple, list[str]]  # (table title, label, shots, model) -> command ids
    notes: list[str] = field(default_factory=list)
    blind: BlindCeilings = field(default_factory=lambda: BlindCeilings((), ()))


CAPTIONS = {
    "shots": "Accuracy against k per split: line = mean over seeds, band = ±1 population std, points = seeds; "
             "dashed = a method that does not train (one level at every k).",
    "rsd": "RSD (population std / mean over seeds, %) against k, for the k with 2 or more seeds.",
    "candidates": "Accuracy against the number of candidates per expression, pooled over splits and seeds, at one k; "
                  "dotted = 1/n (a uniform pick with one right candidate).",
}


def _trained_labels(rows: Sequence[LeaderboardRow]) -> list[str]:
    return sorted({r.label for r in rows if method_trains(r.method) and not r.uses_eval_labels})


def default_pairs(rows: Sequence[LeaderboardRow]) -> tuple[list[tuple[str, str]], str]:
    """The paper's question by default: every trained method against ``ft`` where ``ft`` ran,
    else the first two trained methods."""
    labels = _trained_labels(rows)
    if "ft" in labels:
        return [(a, "ft") for a in labels if a != "ft"], "each trained method against the fine-tuning baseline `ft`"
    if len(labels) >= 2:
        return [(labels[0], labels[1])], f"the first two trained methods ({labels[0]} vs {labels[1]})"
    return [], "fewer than two trained methods: nothing to compare"


def _settings(rows: Sequence[LeaderboardRow], records: Sequence[RunRecord]) -> list[dict[str, str]]:
    groups: dict[tuple, list[LeaderboardRow]] = {}
    for r in rows:
        groups.setdefault((r.task, r.proposals, r.limit), []).append(r)
    out = []
    for (task, proposals, limit), here in sorted(groups.items(), key=lambda x: tuple(str(v) for v in x[0])):
        models = sorted({f"{r.model} (content {str(r.model_fingerprint)[:12]})" for r in here if r.model != "none"})
        keys = {group_key(r) for r in here}
        metric = sorted({", ".join(f"{k} {v}" for k, v in sorted(dict(rec.metric).items()))
                         for rec in records if group_key(rec) in keys})
        out.append({"table": table_title(task, proposals, limit), "task": task,
                    "task version": ", ".join(sorted({str(r.task_version) for r in here})),
                    "proposals": proposals, "models": "; ".join(models) or "none",
                    "data content": ", ".join(sorted({str(r.data_fingerprint)[:12] for r in here})),
                    "metric": "; ".join(metric), "limit": str(limit or "none (full splits)"),
                    "data policy": ("skip bad data" if any(r.skip_bad for r in here) else "refuse bad data")
                    + ("; --strict-data" if any(r.strict_data for r in here) else "")})
    return out


@predictions_cache()  # the plots, every comparison and the gallery read each predictions file once
def build_report(store: ResultsStore, *, tasks: Sequence[str] | None = None, pairs: Sequence[tuple[str, str]] | None = None,
                 data_root=None, images=None, proposals_file=None, gallery: bool = True, n_gallery: int = 3,
                 kinds: Sequence[str] = ("shots", "rsd", "candidates"), title: str | None = None,
                 methods: Sequence[str] | None = None, shots: Sequence[int] | None = None, y_mode="shared") -> Report:
    """The report of ``store`` (under the ``tasks`` / ``methods`` / ``shots`` filters of
    :func:`~cptbench.report.selection.select_runs`; ``y_mode`` of the figures): tables, published rows, the plots
    of ``kinds``, comparisons of ``pairs`` (default: :func:`default_pairs`), galleries and
    provenance. What cannot be built (a missing predictions file, data not available here) becomes
    a note, not an error."""
    from cptbench import __version__

    records, rows = select_runs(store, tasks, methods, shots)
    tables = wide_tables(rows)
    present = sorted({r.task for r in rows})
    from cptbench.report.references import published_tables

    published = published_tables(present)
    figures, notes = [], []
    for kind in kinds:
        try:
            drawn = all_figures(store, records, rows, [kind], y_mode=y_mode)
        except CptbenchError as exc:  # e.g. a missing predictions file: the other figures still come
            notes.append(f"no {kind} plot: {exc}")
            continue
        for _, key, fig, series in drawn:
            figures.append(Figure(kind, key, png_bytes(fig), f"{figure_title(key)}. {CAPTIONS[kind]}", series,
                                  file_stem(kind, key), fig))
    comparisons, cnotes = [], []
    chosen, how = (list(pairs), "as asked") if pairs else default_pairs(rows)
    cnotes.append(f"Pairs compared: {how}.")
    for a, b in chosen:
        for task in present:
            try:
                comparisons.append(compare(store, records, rows, a, b, task=task))
            except CptbenchError as exc:
                cnotes.append(f"{a} vs {b} on {task}: not compared ({exc})")
    galleries, gnotes = [], []
    if gallery:
        from cptbench.report.data import open_task

        for task in present:
            try:
                _, ds = open_task(task, data_root, images)
                g = build_gallery(store, records, [r for r in rows if r.task == task], ds, n_right=n_gallery,
                                  n_wrong=n_gallery, proposals_file=proposals_file)
            except CptbenchError as exc:
                gnotes.append(f"{task}: no gallery ({exc})")
                continue
            if g is None:
                gnotes.append(f"{task}: no gallery (no method that paints prompts ran)")
            else:
                galleries.append(g)
    commands, of_group = build_commands(records)
    row_commands: dict[tuple, list[str]] = {}
    for t in tables:
        for e in t.entries:
            ids = sorted({of_group[group_key(c)] for c in e.cells.values() if group_key(c) in of_group},
                         key=lambda x: int(x[1:]))
            row_commands[(t.title, e.label, e.shots, e.model)] = ids
    return Report(title or f"cptbench report: {', '.join(present)}",
                  datetime.now(timezone.utc).isoformat(timespec="seconds"), str(store.root), len(records), __version__,
                  tables, published, _settings(rows, records), figures, comparisons, cnotes, galleries, gnotes, commands,
                  row_commands, notes, blind_ceilings(store, rows))


# -- HTML ----------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;vertical-align:top}
th:first-child,td:first-child,td.label,th.label{text-align:left}
table.published{background:#fff8e1}table.published caption{color:#8a6d00;font-weight:bold}
span.pub{background:#ffe08a;color:#5c4600;border-radius:3px;padding:0 .3em;font-size:.8em}
caption{text-align:left;font-weight:bold;padding:.3em 0}
.note{color:#8a5a00}.differs{color:#b00020;font-weight:bold}.dim{color:#666}
code,pre{background:#f4f4f4;padding:.1em .3em;border-radius:3px}pre{padding:.5em;white-space:pre-wrap}
figure{margin:1em 0}figure img.plot{max-width:100%}
.gallery{display:flex;flex-wrap:wrap;gap:1em}.gallery figure{width:220px;margin:0}
.gallery figure.right figcaption b{color:#1b7f3a}.gallery figure.wrong figcaption b{color:#b00020}
.gallery img{border:1px solid #ccc;image-rendering:pixelated}
"""

_SCRIPT = """window.addEventListener("load",function(){for(const i of document.images){
i.dataset.rendered=(i.complete&&i.naturalWidth>0)?"yes":"no";}document.body.dataset.ready="yes";});"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _img(png: bytes, alt: str, cls: str, extra: str = "") -> str:
    return (f'<img class="{cls}" alt="{_e(alt)}" {extra} '
            f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')


def _measured_html(t: WideTable, report: Report) -> str:
    out = [f'<table class="measured" data-title="{_e(t.title)}"><caption>{_e(t.title)}</caption>',
           "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in ["model", "method", "k", "seeds", *t.splits, "command"]) + "</tr>"]
    for e in t.entries:
        cmds = report.row_commands.get((t.title, e.label, e.shots, e.model), [])
        links = " ".join(f'<a href="#{c}">{c}</a>' for c in cmds)
        cells = "".join(f"<td>{_e(cell(e.cells[s])) if s in e.cells else ''}</td>" for s in t.splits)
        zs = ' data-zero-shot="yes"' if e.shots == 0 else ""
        out.append(f'<tr class="row" data-method="{_e(e.label)}" data-shots="{e.shots}" data-seeds="{_e(e.seeds_text())}"{zs}>'
                   f'<td class="label">{_e(e.model)}</td><td class="label">{_e(e.label)}</td><td>{_e(shots_text(e.shots))}</td>'
                   f"<td>{_e(e.seeds_text())}</td>{cells}<td>{links}</td></tr>")
    out.append("</table>")
    out += [f'<p class="note">note: {_e(n)}</p>' for n in t.notes]
    return "\n".join(out)


def _published_html(t: WideTable) -> str:
    out = [f'<table class="published"><caption>{_e(t.title)}</caption>',
           "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in ["", *t.header]) + "</tr>"]
    for row in t.rows:
        out.append('<tr class="published-row"><td><span class="pub">published</span></td>'
                   + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _plain_table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str) -> str:
    return "\n".join([f'<table class="{cls}">', "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>",
                      *["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows], "</table>"])


def _comparison_html(c: Comparison) -> str:
    la, lb = c.splits[0].a.label, c.splits[0].b.label
    out = [f'<h3 class="comparison" data-a="{_e(la)}" data-b="{_e(lb)}">A = {_e(la)} vs B = {_e(lb)} '
           f'({_e(c.splits[0].task)}; A-B in accuracy points)</h3>']
    sr, er = seed_rows(c), expression_rows(c)
    if sr:
        out.append(f"<p>Paired over seeds ({_e(seed_counts(c))}; the same k-shot draw per seed): paired t-test, "
                   f"exact sign-flip permutation test, Wilcoxon signed-rank; d_z = mean difference / sample std of the "
                   f"differences.</p>")
        out.append(_plain_table(SEED_HEADER, sr, "compare-seeds"))
    if er:
        out.append("<p>Paired over expressions (one run each): McNemar's exact test; paired bootstrap 95% interval "
                   "of the difference (10,000 resamples, seed 0).</p>")
        out.append(_plain_table(EXPRESSION_HEADER, er, "compare-expressions"))
    out += [f"<p><b>headline</b> {_e(line)}</p>" if not line.startswith("  ") else f'<p class="dim">{_e(line.strip())}</p>'
            for line in headline_lines(c)]
    for n in note_lines(c):
        cls = "differs" if n.startswith("differs:") else "note"
        out.append(f'<p class="{cls}">{_e(n)}</p>')
    return "\n".join(out)


def _gallery_html(g: Gallery) -> str:
    out = [f'<h3>{_e(g.task)}: {_e(g.label)}, k={g.shots}, seed {g.seed}, split {_e(g.split)} '
           f'<span class="dim">(run {_e(g.run_id[:12])})</span></h3>', '<div class="gallery">']
    for it in g.items:
        verdict = "right" if it.correct else "wrong"
        out.append(f'<figure class="{verdict}" data-example="{_e(it.example_id)}">'
                   + _img(it.png, f"{it.expression} ({verdict})", "gallery-img")
                   + f"<figcaption><b>{verdict}</b> “{_e(it.expression)}”<br><code>{_e(it.prompt)}</code><br>"
                     f"picked #{it.pred} of {it.n_candidates} (painted {_e(it.colour)}), score {it.score:.3g}, "
                     f"IoU {it.iou:.2f} <span class='dim'>({_e(it.example_id)})</span></figcaption></figure>")
    out.append("</div>")
    out += [f'<p class="note">{_e(n)}</p>' for n in g.notes]
    return "\n".join(out)


def to_html(r: Report) -> str:
    """The report as one self-contained HTML page (images as data URIs)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(r.title)}</title>",
             f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body>",
             f"<h1>{_e(r.title)}</h1>",
             f"<p class='dim'>Generated {_e(r.generated_at)} by cptbench {_e(r.version)} from <code>{_e(r.results)}</code> "
             f"({r.n_runs} runs). Every number below is rebuilt from <code>runs.jsonl</code> and the predictions files.</p>",
             "<h2 id='setting'>Setting</h2>",
             _plain_table(SETTING_KEYS, [[s[k] for k in SETTING_KEYS] for s in r.settings], "settings"),
             "<h2 id='tables'>Results</h2>"]
    parts += [_measured_html(t, r) for t in r.tables]
    parts.append(f"<p class='dim'>{_e(LEGEND)} The command column links to the command behind each row.</p>")
    parts.append("<h2 id='published'>Published reference numbers (not measured here)</h2>")
    if r.published:
        parts.append("<p>Quoted from papers, with their proposal setting and source; never mixed with measured rows.</p>")
        parts += [_published_html(t) for t in r.published]
    else:
        parts.append("<p class='dim'>No published numbers for the tasks in these results.</p>")
    parts.append("<h2 id='blind'>Solvable without looking: each task's blind ceiling</h2>")
    parts.append(blind_html(r.blind))
    parts.append("<h2 id='plots'>Plots</h2>")
    parts += [f"<p class='note'>{_e(n)}</p>" for n in r.notes]
    for f in r.figures:
        parts.append(f'<figure class="plot" data-kind="{f.kind}">' + _img(f.png, f.caption, "plot", f'data-kind="{f.kind}"')
                     + f"<figcaption>{_e(f.caption)}</figcaption></figure>")
    parts.append("<h2 id='comparisons'>Comparisons</h2>")
    parts += [f"<p class='dim'>{_e(n)}</p>" for n in r.comparison_notes]
    parts += [_comparison_html(c) for c in r.comparisons]
    parts.append("<h2 id='gallery'>Painted prompts</h2>")
    parts.append("<p>What the model saw for its choice: the painted copy of the chosen candidate's group, re-painted from "
                 "the data with the run's palette and alpha; the green outline (added here, not seen by the model) is the "
                 "ground truth. Choices, scores and right/wrong are read from the run's predictions file.</p>")
    parts += [_gallery_html(g) for g in r.galleries]
    parts += [f"<p class='note'>{_e(n)}</p>" for n in r.gallery_notes]
    parts.append("<h2 id='provenance'>Commands and versions behind every number</h2>")
    parts.append("<p class='dim'>Commands are rebuilt from the records (the command line each run was launched with is "
                 "shown as 'as launched'); run in the same results folder they reproduce the same run ids.</p>")
    for c in r.commands:
        start, end = c.created
        vers = "; ".join(f"{v} ({n} runs)" for v, n in c.versions())
        ids = " ".join(rec.run_id[:12] for rec in c.records)
        parts.append(f"<div class='command' id='{c.id}'><p><b>{c.id}</b> <code>{_e(c.text)}</code></p>"
                     f"<p class='dim'>{len(c.records)} runs, {_e(start)} to {_e(end)}; versions: {_e(vers)}; git: "
                     f"{_e(', '.join(c.distinct('git_revision')))}; device: {_e(', '.join(c.distinct('device')))}</p>"
                     + "".join(f"<p class='note'>{_e(n)}</p>" for n in c.notes)
                     + f"<details><summary>run ids</summary><p class='dim'>{_e(ids)}</p></details></div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- Markdown ------------------------------------------------------------------------------------
def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(map(esc, header)) + " |", "|" + "|".join("---" for _ in header) + "|",
            *["| " + " | ".join(map(esc, row)) + " |" for row in rows], ""]


def to_markdown(r: Report, assets: Path, link_prefix: str) -> str:
    """Markdown with the images written under ``assets`` (PNG; plots also SVG), linked as
    ``link_prefix/<file>``."""
    assets.mkdir(parents=True, exist_ok=True)
    md = [f"# {r.title}", "", f"Generated {r.generated_at} by cptbench {r.version} from `{r.results}` ({r.n_runs} runs).", "",
          "## Setting", ""]
    md += _md_table(SETTING_KEYS, [[s[k] for k in SETTING_KEYS] for s in r.settings])
    md += ["## Results", ""]
    for t in r.tables:
        md += [f"### {t.title}", ""]
        # the table's text rows (model, method, k, seeds, splits), plus the command behind each
        body = [[*row, " ".join(r.row_commands.get((t.title, e.label, e.shots, e.model), []))]
                for row, e in zip(t.rows, t.entries)]
        md += _md_table(["model", "method", "k", "seeds", *t.splits, "command"], body)
        md += [f"- note: {n}" for n in t.notes] + ([""] if t.notes else [])
    md += [LEGEND, "", "## Published reference numbers (not measured here)", ""]
    for t in r.published:
        md += [f"### {t.title}", ""] + _md_table(["", *t.header], [["**published**", *row] for row in t.rows])
    if not r.published:
        md += ["No published numbers for the tasks in these results.", ""]
    md += ["## Solvable without looking: each task's blind ceiling", ""] + blind_markdown(r.blind) + [""]
    md += ["## Plots", ""] + [f"- note: {n}" for n in r.notes] + ([""] if r.notes else [])
    for f in r.figures:
        save(f.fig, assets / f.stem, ("png", "svg"))
        md += [f"![{f.caption}]({link_prefix}/{f.stem}.png)", "", f"*{f.caption}* ([SVG]({link_prefix}/{f.stem}.svg))", ""]
    md += ["## Comparisons", ""] + [f"{n}" for n in r.comparison_notes] + [""]
    for c in r.comparisons:
        la, lb = c.splits[0].a.label, c.splits[0].b.label
        md += [f"### A = {la} vs B = {lb} ({c.splits[0].task})", ""]
        sr, er = seed_rows(c), expression_rows(c)
        if sr:
            md += [f"Paired over seeds ({seed_counts(c)}):", ""] + _md_table(SEED_HEADER, sr)
        if er:
            md += ["Paired over expressions (McNemar exact; bootstrap 95% interval):", ""]
            md += _md_table(EXPRESSION_HEADER, er)
        md += [f"- **headline** {line}" if not line.startswith("  ") else f"  - {line.strip()}" for line in headline_lines(c)]
        md += [f"- {n}" for n in note_lines(c)] + [""]
    md += ["## Painted prompts", "", "The painted copy of the chosen candidate's group (re-painted from the data with the "
           "run's palette); green outline = ground truth (not seen by the model).", ""]
    for g in r.galleries:
        md += [f"### {g.task}: {g.label}, k={g.shots}, seed {g.seed}, split {g.split}", ""]
        cells = []
        for i, it in enumerate(g.items):
            name = f"gallery_{g.task}_{i}.png"
            (assets / name).write_bytes(it.png)
            verdict = "right" if it.correct else "wrong"
            cells.append(f"![{verdict}]({link_prefix}/{name})<br>**{verdict}** “{it.expression}”<br>`{it.prompt}`<br>"
                         f"#{it.pred}/{it.n_candidates}, IoU {it.iou:.2f}")
        md += _md_table([f"#{i + 1}" for i in range(len(cells))], [cells]) if cells else []
        md += [f"- {n}" for n in g.notes]
    md += [f"- {n}" for n in r.gallery_notes] + ["", "## Commands and versions", ""]
    for c in r.commands:
        start, end = c.created
        md += [f"- **{c.id}** `{c.text}`: {len(c.records)} runs, {start} to {end}; "
               + "; ".join(f"{v} ({n} runs)" for v, n in c.versions()) + f"; git {', '.join(c.distinct('git_revision'))}"]
    return "\n".join(md) + "\n"
