"""``cptbench pretrain-mini``: pretrain the bundled miniature ViLT from scratch, deterministically."""

from __future__ import annotations

import click

from .state import friendly_errors, pass_state


@click.command("pretrain-mini")
@click.option("--out", type=click.Path(file_okay=False), default="mini-vilt", show_default=True,
              help="Output folder (the committed model lives in cptbench/assets/mini-vilt).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps (default: the recipe's).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--corpus-size", type=click.IntRange(min=64), default=None, help="Captioned images generated (default: the recipe's).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="torch threads (results depend on it slightly).")
@pass_state
@friendly_errors
def pretrain_mini(state, out, steps, seed, corpus_size, threads) -> None:
    """Generate the captioned pretraining corpus (its own scene stream, disjoint from synthref) and
    train a small ViltForMaskedLM on it with masked-language modelling; writes a from_pretrained-ready
    folder with the vocabulary, image processor, pretrain_log.jsonl and pretrain_summary.json."""
    import dataclasses

    from ..mini.pretrain import PretrainSettings, pretrain
    from .ui import RunReporter

    settings = PretrainSettings(seed=seed, threads=threads)
    if steps:
        settings = dataclasses.replace(settings, steps=steps)
    if corpus_size:
        settings = dataclasses.replace(settings, corpus_size=corpus_size)
    with RunReporter(state) as reporter:
        summary = pretrain(out, settings, progress=reporter.on_progress)
    state.log(f"pretrained {summary['parameters'] / 1e6:.2f} M parameters for {summary['steps']} steps in "
              f"{summary['seconds']:.0f} s; final loss (EMA) {summary['final_loss_ema']:.3f} -> {out}")
