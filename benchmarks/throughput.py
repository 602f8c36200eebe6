"""Throughput of CPT evaluation: painted (image, prompt) pairs per second through a ViLT adapter.

Builds the model from a config (random weights, no download): `--size real` is the
dandelin/vilt-b32-mlm shape (ViltConfig defaults, 384 px images), `--size tiny` the test model.
Prints pairs/s, ms/pair and peak RSS; the numbers say what a full RefCOCO evaluation costs here.

    python benchmarks/throughput.py --size real --batch 8 --pairs 32
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def build(size: str, folder: Path) -> Path:
    from cptbench.models.tiny import build_tiny_model

    if size == "tiny":
        return build_tiny_model("vilt", folder, ("man", "dog"), image_size=64)
    from transformers import BertTokenizer, ViltConfig, ViltForMaskedLM, ViltImageProcessorPil

    build_tiny_model("vilt", folder, ("man", "dog"), image_size=64)  # vocabulary + processor files
    tok = BertTokenizer.from_pretrained(folder)
    cfg = ViltConfig(vocab_size=len(tok), max_position_embeddings=40)  # the hub model's shape otherwise
    ViltForMaskedLM(cfg).save_pretrained(folder)
    ViltImageProcessorPil(size={"shortest_edge": 384}, size_divisor=32).save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "real"], default="tiny")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--image", type=int, nargs=2, default=(480, 640), metavar=("H", "W"), help="source image size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()

    import torch

    from cptbench.cpt.painting import box_masks, paint
    from cptbench.models.loading import load_adapter

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        adapter = load_adapter(str(build(args.size, Path(tmp))), args.device)
    rng = np.random.default_rng(0)
    h, w = args.image
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    boxes = np.array([[w * 0.1, h * 0.1, w * 0.5, h * 0.6]])
    text = f"the man in the red shirt on the left is in {adapter.mask_token} color."

    def batch(n):
        t0 = time.perf_counter()
        painted = [paint(image, box_masks(boxes, h, w), [(240, 0, 30)]) for _ in range(n)]
        images = adapter.collate([adapter.prepare_image(p) for p in painted])
        t1 = time.perf_counter()
        with torch.no_grad():
            adapter.mask_logits(images, [text] * n)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return t1 - t0, time.perf_counter() - t1

    batch(min(2, args.batch))  # warm-up
    prep = fwd = 0.0
    done = 0
    while done < args.pairs:
        n = min(args.batch, args.pairs - done)
        a, b = batch(n)
        prep, fwd, done = prep + a, fwd + b, done + n
    total = prep + fwd
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    params = sum(p.numel() for p in adapter.model.parameters()) / 1e6
    print(f"model={args.size} ({params:.1f} M params) device={args.device} threads={torch.get_num_threads()} "
          f"image={h}x{w} batch={args.batch} pairs={done}")
    print(f"  {done / total:8.2f} pairs/s   {1000 * total / done:8.2f} ms/pair "
          f"(paint+preprocess {1000 * prep / done:.2f} ms, forward {1000 * fwd / done:.2f} ms)   peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
