"""``cptbench prompt-search``: find the colours a backbone names (cross-modal prompt search), write
them as a palette file, and pick between palettes on validation data (``--evaluate``).

Library calls: :mod:`cptbench.run.prompt_search` (both stages), :mod:`cptbench.cpt.colour_search`
(the search), :mod:`cptbench.cpt.palettes` (the file and its identity), :mod:`cptbench.cpt.colour_plot`.
"""

from __future__ import annotations

from pathlib import Path

import click

from cptbench.cli.common import parse_sets
from cptbench.cli.options import data_options, threads_option
from cptbench.cli.state import parse_int_list, pass_state

DEFAULT_ALPHA = 127 / 255


def _swatch(rgb, width: int = 6):
    """A rich block of ``width`` spaces on the colour ``rgb``."""
    from rich.text import Text

    r, g, b = (int(v) for v in rgb)
    return Text(" " * width, style=f"on rgb({r},{g},{b})")


@click.command()
@click.argument("palettes", nargs=-1)
@click.option("--evaluate", is_flag=True,
              help="Stage 2: CPT (zero-shot, or -k shots per --seeds) with each PALETTE (a palette file, a name such as red, or an inline "
                   "spec) on the first -n expressions of --split of -t, one accuracy per palette. Test splits are refused.")
@click.option("--model", default=None, help="Hub id, folder or bundled:<name>; default: the task card's (-t).")
@click.option("--words", default=None,
              help="Comma list of colour words; default: the release's red,purple,green,yellow,blue,pink,black, "
                   "keeping those that are single tokens of the model (the others are named).")
@click.option("--step", type=click.IntRange(1, 255), default=5, show_default=True,
              help="Grid step per channel: 0, step, ... 255 (5: the release's 140,608 colours; 32: 512).")
@click.option("--image-size", type=click.IntRange(8, 4096), default=128, show_default=True,
              help="Side of the solid-colour image before the model's processor (the release's 128).")
@click.option("--template", default="neutral", show_default=True,
              help="The text decoded: neutral ('the color is [MASK] .'), a CPT template 1, 2, 3 with --subject as "
                   "the expression, or your own text holding [MASK].")
@click.option("--subject", default="it", show_default=True, help="The expression of a CPT --template 1/2/3.")
@click.option("--normalise", type=click.Choice(["words", "vocab"]), default="words", show_default=True,
              help="Probability: softmax over the searched words (the release's decision) or over the vocabulary.")
@click.option("--min-margin", type=float, default=0.0, show_default=True,
              help="A word is kept when, at its best colour, it leads every other word by more than this.")
@click.option("--keep", type=click.IntRange(min=1), default=None, help="Write only the N best words (--keep 1: one colour).")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0, min_open=True), default=DEFAULT_ALPHA,
              help="The painting alpha the palette file records (default CPT's 127/255; runs must use the same).")
@click.option("--name", default=None, help="The palette's name (in run ids and records); default <model>-step<step>.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the palette file (.json, .yaml or .yml); use it with `cptbench run --set palette=FILE`.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Draw the probability over the grid per word (.png, .svg, .pdf; needs matplotlib).")
@click.option("-t", "--task", default="synthref", show_default=True, help="Task card (--evaluate; and the default model).")
@click.option("--split", default="val", show_default=True, help="Split for --evaluate (test* splits are refused).")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, help="--evaluate on the first N expressions (default: all).")
@click.option("-m", "--method", default="cpt", show_default=True, help="CPT method for --evaluate: cpt, cpt-blk or cpt-seg.")
@click.option("-k", "--shots", type=click.IntRange(min=0), default=0, show_default=True,
              help="--evaluate: prompt-tune on k training expressions per seed first (as `run -k`), from the "
                   "pre-trained weights for every palette and seed.")
@click.option("--seeds", default="0", show_default=True, help="--evaluate with -k > 0: comma list of seeds (k-shot draws).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Method option for --evaluate, as in `run`.")
@data_options
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Colours (search) or passes (--evaluate) per forward; halved on out-of-memory.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Search numerics: auto = bf16 autocast on CUDA, fp32 elsewhere.")
@threads_option
@pass_state
def prompt_search(state, palettes, evaluate, model, words, step, image_size, template, subject, normalise, min_margin,
                  keep, alpha, name, output, plot, task, split, limit, method, shots, seeds, sets, data_root, images, device,
                  batch_size, precision, threads) -> None:
    """Cross-modal prompt search: render solid colours over an RGB grid (as tensors), decode the colour
    words at [MASK], keep per word the colour the model names best, and write a palette file.

    \b
    Examples:
      cptbench prompt-search --step 32 -o found.json --plot found.png
      cptbench prompt-search --model dandelin/vilt-b32-mlm --device cuda -o vilt.yaml
      cptbench prompt-search --evaluate found.json red release5 -t synthref --split val -n 64
      cptbench prompt-search --evaluate found.json red -k 1 --seeds 0,1,2 --split val
      cptbench run -m cpt -k 0,1 --set palette=found.json
    """
    from cptbench.tasks import get_task

    spec = get_task(task)
    if evaluate:
        _evaluate(state, palettes, spec, split, limit, method, parse_sets(sets), model, device, batch_size,
                  data_root, images, threads, shots, parse_int_list(seeds, "--seeds"))
        return
    if palettes:
        raise click.UsageError(f"palettes given ({', '.join(palettes)}) without --evaluate; a search takes none")
    _search(state, model or spec.default_model, words, step, image_size, template, subject, normalise, min_margin,
            keep, alpha, name, output, plot, device, batch_size, precision, threads)


def _search(state, model, words, step, image_size, template, subject, normalise, min_margin, keep, alpha, name,
            output, plot, device, batch_size, precision, threads) -> None:
    from rich.console import Console
    from rich.table import Table

    from cptbench.cli.common import ProgressBars
    from cptbench.cpt.palettes import dump_palette_document
    from cptbench.run.prompt_search import run_search, search_document

    word_list = None if words is None else [w for w in words.split(",")]
    with ProgressBars(state) as bars:
        run = run_search(model, words=word_list, step=step, image_size=image_size, template=template,
                         subject=subject, normalise=normalise, min_margin=min_margin, device=device,
                         batch_size=batch_size, precision=precision, threads=threads,
                         progress=lambda done, total: bars("colours", done, total))
    result = run.result
    if run.dropped:
        state.log("[yellow]words left out:[/] " + "; ".join(f"{w} ({why})" for w, why in run.dropped.items()))
    if run.unknown_tokens:
        state.log(f"[yellow]the text {run.text!r} has words the model does not know:[/] {', '.join(run.unknown_tokens)}")
    table = Table("", "word", "RGB", "probability", "margin", "", title=(
        f"{model}: {len(result.grid):,} colours (step {step}), text {run.text!r}, softmax over {normalise}"))
    for c in result.choices:
        status = "kept" if c.kept else (f"not kept: {c.rival!r} leads" if c.rival else "not kept")
        table.add_row(_swatch(c.rgb), c.word, "({}, {}, {})".format(*c.rgb), f"{c.probability:.3f}",
                      f"{c.margin:+.3f}", status)
    Console().print(table)
    state.log(f"{len(result.grid):,} colours in {result.seconds:.1f} s ({1000 * result.seconds_per_colour:.2f} ms per "
              f"colour, batch {result.batch_size}, {run.settings.precision}, {device}, {run.threads} threads)")
    if output:
        doc = search_document(run, name=name, alpha=alpha, keep=keep)
        data = dump_palette_document(doc, output)
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_bytes(data)
        state.log(f"wrote {output} (palette {doc['name']!r}: {', '.join(e['word'] for e in doc['colors'])}); "
                  f"use it with `cptbench run --set palette={output}`")
    if plot:
        from cptbench.cpt.colour_plot import plot_search

        plot_search(result, plot, title=f"{model}: step {step}, {run.text!r}")
        state.log(f"wrote {plot}")


def _evaluate(state, palettes, spec, split, limit, method, options, model, device, batch_size, data_root, images,
              threads, shots, seeds) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from cptbench.cli.common import ProgressBars
    from cptbench.cpt.palettes import is_palette_file
    from cptbench.run.prompt_search import evaluate_palettes

    with ProgressBars(state) as bars:
        scores = evaluate_palettes(list(palettes), spec, split=split, limit=limit, method=method, options=options,
                                   model=model, device=device, batch_size=batch_size, data_root=data_root,
                                   images=images, progress=bars, threads=threads,
                                   shots=shots, seeds=seeds)
    best = max(s.accuracy for s in scores)
    n = scores[0].n if scores else 0
    how = "zero-shot" if not shots else f"{shots}-shot (seeds {', '.join(map(str, scores[0].seeds))})"
    table = Table("palette", "name", "colours", "passes", "accuracy", title=(
        f"{how} {method} on {spec.name} {split}, first {n} expressions (model {model or spec.default_model})"))
    for s in scores:
        colours = Text()
        for word, rgb in s.colours:
            colours.append_text(_swatch(rgb, 2))
            colours.append(f" {word} ")
        mark = " *" if s.accuracy == best else ""
        label = Path(s.label).name if is_palette_file(s.label) else s.label
        acc = (f"{s.accuracy:.2f} ({s.n_correct}/{s.n})" if len(s.correct) == 1
               else f"{s.accuracy:.2f} ± {s.std:.2f} (per seed {', '.join(f'{a:.1f}' for a in s.accuracies)})")
        table.add_row(label, s.palette, colours, str(s.passes), acc + mark)
    Console().print(table)
    state.log(f"* = best on {split}; run it with `cptbench run -m {method} -k {shots or '0,1'} --set palette=<palette>`. "
              f"Chosen on {split} only: test splits were not touched.")
