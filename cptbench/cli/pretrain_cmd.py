"""``cptbench pretrain-mini``: pretrain the bundled miniature ViLT from scratch, deterministically."""

from __future__ import annotations

import click

from cptbench.cli.state import pass_state


@click.command("pretrain-mini")
@click.option("--out", type=click.Path(file_okay=False), default="mini-vilt", show_default=True,
              help="Output folder (the committed model lives in cptbench/assets/mini-vilt).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimizer steps (default: the recipe's).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--corpus-size", type=click.IntRange(min=64), default=None,
              help="Captioned images generated (default: the recipe's).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads (default: the recipe's, 2; results depend on the thread count; "
                   "use 1 when another job shares a 2-core machine).")
@click.option("--validate/--no-validate", default=True, show_default=True,
              help="Measure zero-shot CPT and colour binding on the model's own validation scenes after "
                   "training (never synthref's); the numbers go to the log and the summary.")
@pass_state
def pretrain_mini(state, out, steps, seed, corpus_size, threads, validate) -> None:
    """Generate the captioned pretraining corpus (its own scene stream, disjoint from synthref) and
    train a small ViltForMaskedLM on it with masked-language modelling; writes a from_pretrained-ready
    folder with the vocabulary, image processor, pretrain_log.jsonl and pretrain_summary.json."""
    from cptbench.mini.pretrain import PretrainSettings, pretrain
    from cptbench.cli.ui import RunReporter

    overrides = {"seed": seed}
    if steps:
        overrides["steps"] = steps
    if corpus_size:
        overrides["corpus_size"] = corpus_size
    if threads:
        overrides["threads"] = threads
    settings = PretrainSettings().with_overrides(**overrides)
    validation = _validation(settings) if validate else None

    state.log(f"pretraining mini-vilt: {settings.steps} steps, batch {settings.batch_size}, "
              f"{settings.corpus_size} captioned images, seed {settings.seed}, {settings.threads} thread(s) -> {out}")
    with RunReporter(state) as reporter:
        summary = pretrain(out, settings, progress=reporter.on_progress, validation=validation)
    state.log(f"pretrained {summary['parameters'] / 1e6:.2f} M parameters for {summary['steps']} steps in "
              f"{summary['seconds']:.0f} s; final loss (EMA) {summary['final_loss_ema']:.3f} -> {out}")
    v = summary.get("validation")
    if v:
        from cptbench.mini.validate import summary_line

        state.log(f"validation ({v['examples']} scenes of the model's own stream): {summary_line(v)}")


def _validation(settings):
    """The validation callback of a pretraining run: the model's own held-out scenes."""
    from cptbench.mini.validate import evaluate, validation_set

    examples = validation_set(settings.val_examples)

    def validation(adapter, step):
        return evaluate(adapter, examples)

    return validation
