"""``cptbench bench``: throughput of CPT evaluation on a RefCOCO-shaped workload built on the fly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cptbench.cli.run_cmd import BATCH_SIZE
from cptbench.cli.options import threads_option
from cptbench.cli.state import pass_state


@click.command()
@click.option("--model", "model", type=click.Choice(["real", "tiny"]), default="real", show_default=True,
              help="real: dandelin/vilt-b32-mlm's shape (112 M parameters); tiny: 2 layers of 32 (the harness's "
                   "cost with a forward that costs nearly nothing). Random weights, nothing is downloaded.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N].")
@click.option("--pipeline", type=click.Choice(["device", "reference"]), default="device", show_default=True,
              help="How painted copies are built (CPT's pipeline option).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="The forward's numerics (auto: bf16 on CUDA, fp32 elsewhere).")
@click.option("--batch-size", type=BATCH_SIZE, default="32", show_default=True, help="Passes per forward, or 'auto'.")
@click.option("--images", type=click.IntRange(min=1), default=100, show_default=True,
              help="Images of the workload (about 10 candidates and 7 expressions each).")
@click.option("--forward-images", type=click.IntRange(min=1), default=None,
              help="Images for the run with the model's forward (default: all on CUDA or with --model tiny, "
                   "2 otherwise: a real-size ViLT takes ~0.25 s per pass on a small CPU).")
@click.option("--image-size", nargs=2, type=click.IntRange(min=8), default=(640, 480), show_default=True,
              metavar="W H", help="Size of the JPEG images.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Expressions per predict call, as `run --chunk-size` (batches overlap within a call).")
@click.option("--no-null", is_flag=True, help="Skip the run with the forward replaced by zeros.")
@click.option("--no-forward", is_flag=True, help="Skip the run with the model's forward.")
@threads_option(several=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the figures here (default: cptbench-results/bench-<model>-<device>-<pipeline>.json).")
@pass_state
def bench(state, model, device, pipeline, precision, batch_size, images, forward_images, image_size, chunk_size,
          no_null, no_forward, threads, json_path) -> None:
    """Measure CPT evaluation: passes/s end to end, host ms per pass with the forward removed, the
    share of wall time in the forward, decodes and painted copies per image, bytes sent to the
    device per pass, peak host and device memory. Prints the figures and writes them as JSON.

    \b
    Examples:
      cptbench bench --model tiny                      # the harness's own cost on this machine
      cptbench bench --model real --forward-images 2   # real-size ViLT on a CPU
      cptbench bench --model real --device cuda --batch-size auto
      cptbench bench --model tiny --threads 1,2        # one set of figures per thread count
    """
    from cptbench.methods.numerics import apply_threads
    from cptbench.run.bench import run_benchmark, summary_lines, threads_table
    from cptbench.run.device import check_device

    check_device(device)
    results = []
    for n in threads:
        used = apply_threads(n)
        if len(threads) > 1:
            state.log(f"[bold]threads = {used}[/] ({len(results) + 1} of {len(threads)})")
        result = run_benchmark(model=model, device=device, pipeline=pipeline, precision=precision, batch_size=batch_size,
                               images=images, forward_images=forward_images, image_size=tuple(image_size),
                               null=not no_null, forward=not no_forward, chunk=chunk_size,
                               progress=lambda m: state.log(f"[dim]{m}[/]"))
        result["threads"] = used
        result["command"] = "cptbench " + " ".join(sys.argv[1:])
        for line in summary_lines(result):
            click.echo(line)
        results.append(result)
    if len(results) > 1:
        for line in threads_table(results):
            click.echo(line)
    path = Path(json_path or Path("cptbench-results") / f"bench-{model}-{device.replace(':', '')}-{pipeline}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = results[0] if len(results) == 1 else results  # one thread count: the one object, as before
    path.write_text(json.dumps(doc, indent=1) + "\n")
    state.log(f"figures written to {path}" + (" (a list: one entry per thread count)" if len(results) > 1 else ""))
