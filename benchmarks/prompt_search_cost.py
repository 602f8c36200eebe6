"""What a cross-modal colour search costs: seconds per grid colour, measured, and the release's
step-5 grid (140,608 colours) and a coarse step-32 grid (512) extrapolated from it.

The model: a ViLT of dandelin/vilt-b32-mlm's shape (768 hidden, 12 layers, the 384/32 image
processor: a 128 px solid image becomes 384 x 384, 144 patches; 30,522 words) built from a config
with random weights (nothing is downloaded; the cost of a forward does not depend on the weights),
``--model tiny`` (the same tokenizer and processor, hidden 32, 2 layers: the GPU check's dry run), or
any model name (``--model bundled:mini-vilt``). The search is cptbench's own
(:func:`cptbench.cpt.colour_search.search_colours`) on a small grid; the first batch is a warm-up
and is not counted.

    python benchmarks/prompt_search_cost.py                       # ViLT-B/32 shape, CPU
    python benchmarks/prompt_search_cost.py --model bundled:mini-vilt --step 32
    python benchmarks/prompt_search_cost.py --device cuda --batch-size 256 --step 32
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date


def measure(model: str = "real", step: int = 64, batch_size: int = 16, device: str = "cpu", precision: str = "fp32",
            normalise: str = "words") -> dict:
    """Seconds per colour of the search on a grid of ``step`` after a warm-up, and the step-5 and
    step-32 grids extrapolated from it (a dict, written as JSON by :func:`main`)."""
    import torch

    from cptbench.cpt.colour_search import SearchSettings, colour_grid, search_colours

    with tempfile.TemporaryDirectory() as tmp:
        if model in ("real", "tiny"):
            from cptbench.run.bench import build_adapter

            adapter = build_adapter(model, tmp, device)
            words = ["red", "white", "black"]  # single tokens of the benchmark's tokenizer
        else:
            from cptbench.models.loading import load_adapter
            from cptbench.run.prompt_search import search_words

            adapter = load_adapter(model, device)
            words, _ = search_words(adapter, None)
        text = f"the color is {adapter.mask_token} ."
        warm = SearchSettings(text=text, step=255, batch_size=batch_size, precision=precision, normalise=normalise)
        search_colours(adapter, words, warm)  # 8 colours: warm-up
        settings = SearchSettings(text=text, step=step, batch_size=batch_size, precision=precision, normalise=normalise)
        start = time.perf_counter()
        result = search_colours(adapter, words, settings)
        wall = time.perf_counter() - start
    per = result.seconds / len(result.grid)
    names = {"real": "vilt-b32 shape, random weights", "tiny": "tiny vilt, random weights"}
    return {
        "date": date.today().isoformat(), "model": names.get(model, model),
        "device": device, "precision": precision, "normalise": normalise,
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if str(device).startswith("cuda") else None,
        "batch_size": result.batch_size, "processed_size": result.info["processed_size"],
        "measured_colours": len(result.grid), "measured_seconds": round(result.seconds, 3), "wall_seconds": round(wall, 3),
        "seconds_per_colour": round(per, 7),
        "step5_colours": len(colour_grid(5)), "step5_hours": round(per * len(colour_grid(5)) / 3600, 4),
        "step5_minutes": round(per * len(colour_grid(5)) / 60, 2),
        "step32_colours": len(colour_grid(32)), "step32_minutes": round(per * len(colour_grid(32)) / 60, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="real",
                    help="real (ViLT-B/32 shape, random weights), tiny (the same, 2 small layers) or a model name")
    ap.add_argument("--step", type=int, default=64, help="grid step of the measured search (64: 64 colours)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--normalise", default="words", choices=["words", "vocab"])
    args = ap.parse_args()
    out = measure(args.model, args.step, args.batch_size, args.device, args.precision, args.normalise)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
