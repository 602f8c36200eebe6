"""Throughput of CPT evaluation: the same benchmark as ``cptbench bench`` (cptbench/run/bench.py), for
checkouts without the console script. It builds a RefCOCO-shaped workload (JPEG images with ~10
candidates and ~7 expressions each) and a ViLT from its config (random weights: ``real`` is the
dandelin/vilt-b32-mlm shape, ``tiny`` a 2-layer model with the same image processor), runs the CPT
method's predict path with the forward replaced by zeros (the harness's cost) and with the model,
and prints and writes the figures (docs/performance.md explains them).

    python benchmarks/throughput.py --model tiny
    python benchmarks/throughput.py --model real --forward-images 2 --pipeline reference
    python benchmarks/throughput.py --model real --device cuda --batch-size auto
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["real", "tiny"], default="real")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pipeline", choices=["device", "reference"], default="device")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    ap.add_argument("--batch-size", default="32", help="passes per forward, or auto")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--forward-images", type=int, default=None)
    ap.add_argument("--image-size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--json", default=None, help="where to write the figures")
    args = ap.parse_args()

    import torch

    from cptbench.run.bench import run_benchmark, summary_lines

    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    result = run_benchmark(model=args.model, device=args.device, pipeline=args.pipeline, precision=args.precision,
                           batch_size=batch, images=args.images, forward_images=args.forward_images,
                           image_size=tuple(args.image_size), progress=print)
    for line in summary_lines(result):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
