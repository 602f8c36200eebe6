"""``cptbench bench``: how fast CPT evaluation runs, on a RefCOCO-shaped workload it builds itself.

The workload: ``n_images`` JPEG images (640x480 by default) in a temporary folder, each with about
ten candidate boxes and seven referring expressions (what RefCOCO's val split looks like: ~790
expressions and ~7,800 one-colour passes per 100 images), read through one
:class:`~cptbench.data.images.ImageSource` as the harness reads a dataset. The model: a ViLT with the
``dandelin/vilt-b32-mlm`` shape (``real``: 768 hidden, 12 layers, 384/32 image processor, 30,522
words) or a tiny one with the same image processor (``tiny``), both from a config with random
weights: nothing is downloaded.

Every figure comes from the CPT method's own predict path (``CptBlockMethod.predict`` in chunks
of 64 expressions with the next chunk prefetched, as the runner does):

* ``null``: the forward replaced by zeros of the right shape, so the wall time is the harness's
  cost alone (on a CPU device this includes the pixel work, which a GPU would do);
* ``forward``: the model's forward (``passes_per_s``, ``forward_share`` of the wall time).

Both report decodes and painted copies per image, bytes sent to the device per pass and peak device
memory (CUDA, reset before each run). Host memory has no per-run peak (``ru_maxrss`` is the
process's high-water mark): it is reported once, ``peak_host_mib_process``, the peak of the whole
benchmark (model build, warm-up and every run). Library code: :func:`run_benchmark` returns a dict;
the CLI prints and saves it.
"""

from __future__ import annotations

import platform
import resource
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cptbench.data.examples import Example
from cptbench.data.images import ImageSource
from cptbench.run.execute import clock

#: a measured run says how far it is at least this often (seconds)
PROGRESS_EVERY_S = 2.0
WORDS = ("man", "woman", "person", "dog", "cat", "car", "shirt", "table", "chair", "left", "right", "middle",
         "big", "small", "white", "black", "front", "back", "near", "far")
#: the image processor of dandelin/vilt-b32-mlm
VILT_PROCESSOR = {"size": {"shortest_edge": 384}, "size_divisor": 32}
#: dandelin/vilt-b32-mlm's vocabulary size
VILT_VOCAB = 30522


@dataclass
class Fixture:
    """A benchmark's synthetic data: the examples, the image source holding their ``n_images`` JPEGs,
    and the folder the JPEGs were written to."""

    examples: list[Example]
    source: ImageSource
    n_images: int
    folder: Path


def build_fixture(folder: Path, n_images: int = 100, size: tuple[int, int] = (640, 480), candidates: int = 10,
                  expressions: int = 7, seed: int = 0, prefix: str = "img") -> Fixture:
    """JPEG images of ``size`` (W, H) with about ``candidates`` boxes and ``expressions`` referring
    expressions each (+-2, seeded), registered in one image source."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = ImageSource(capacity=64)
    examples: list[Example] = []
    for i in range(n_images):
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"{prefix}{i:04d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        key = f"{prefix}{i:04d}"
        source.add(key, path)
        handle = source.handle(key, (width, height))
        n = max(1, int(rng.integers(candidates - 2, candidates + 3)))
        x0 = rng.uniform(0, width * 0.75, n)
        y0 = rng.uniform(0, height * 0.75, n)
        boxes = np.stack([x0, y0, np.minimum(x0 + rng.uniform(16, width * 0.45, n), width),
                          np.minimum(y0 + rng.uniform(16, height * 0.6, n), height)], axis=1)
        for j in range(max(1, int(rng.integers(expressions - 1, expressions + 3)))):
            words = rng.choice(WORDS, size=int(rng.integers(3, 9)))
            examples.append(Example(
                example_id=f"{i}:{j}", ref_id=i, sent_id=j, image_id=i, image_handle=handle, image_size=(width, height),
                expression="the " + " ".join(words), boxes=boxes, categories=("person",) * n, split="bench",
                candidate_key=f"gt:{i}"))
    return Fixture(examples, source, n_images, folder)


def build_adapter(kind: str, folder: Path, device: str = "cpu"):
    """A ViLT adapter with random weights: ``real`` (dandelin/vilt-b32-mlm's shape) or ``tiny``
    (hidden 32, 2 layers), both with ViLT's 384/32 image processor."""
    import torch
    from transformers import AutoTokenizer, ViltConfig, ViltForMaskedLM

    from cptbench.models.tiny import build_tiny_model
    from cptbench.models.vilt import ViltAdapter, image_processor_class

    if kind not in ("real", "tiny"):
        raise ValueError(f"model kind must be real or tiny, got {kind!r}")
    build_tiny_model("vilt", folder, WORDS)  # the tokenizer files
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if kind == "real":
        config = ViltConfig(vocab_size=VILT_VOCAB, max_position_embeddings=40)
    else:
        config = ViltConfig(vocab_size=max(len(tokenizer), 64), hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=40)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ViltForMaskedLM(config).eval().to(device)
    processor = image_processor_class()(**VILT_PROCESSOR)
    return ViltAdapter(model, tokenizer, processor, f"bench:vilt-{kind}")


class _Timer:
    """Time spent inside the forward: host clock on CPU, CUDA events (read at the end) on CUDA."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.seconds = 0.0
        self.events: list = []

    def wrap(self, fn: Callable) -> Callable:
        import torch

        def timed(*args, **kwargs):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = fn(*args, **kwargs)
                end.record()
                self.events.append((start, end))
                return out
            t = clock()
            out = fn(*args, **kwargs)
            self.seconds += clock() - t
            return out

        return timed

    def total(self) -> float:
        if self.cuda:
            return sum(s.elapsed_time(e) for s, e in self.events) / 1000.0
        return self.seconds


def _null_forward(method) -> None:
    """Replace the model's forward by zeros of the right shape (the harness's cost alone)."""
    import torch

    pipe = method._pipeline
    if pipe is not None:
        device = pipe.device

        def zeros(images, text, columns=None):
            rows = text["mask_col"].shape[0]
            cols = len(columns) if columns is not None else method.adapter.model.config.vocab_size
            return torch.zeros(rows, cols, device=device)

        pipe.forward = zeros
    else:
        adapter = method.adapter

        def zeros_ref(images, texts):
            return torch.zeros(len(texts), adapter.model.config.vocab_size)

        adapter.mask_logits = zeros_ref


def measure(fixture: Fixture, adapter: Any, *, device: str, pipeline: str, precision: str = "auto",
            batch_size: int | str = 32, null: bool = False, chunk: int = 64,
            tick: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One timed pass over ``fixture`` through ``CptBlockMethod.predict`` (module doc); ``tick``
    gets progress text (throttled by the caller) between and within predict calls."""
    from cptbench.cpt.config import CptConfig
    from cptbench.cpt.method import CptBlockMethod
    from cptbench.run.context import build_context

    config = CptConfig(pipeline=pipeline, precision=precision)
    inner = (lambda stage, done, total: tick(f"    {stage}: {done}/{total} passes of this call")) if tick else None
    ctx = build_context(None, CptBlockMethod, config, device=device, eval_batch_size=batch_size,
                        **({"progress": inner} if inner else {}))
    method = CptBlockMethod.with_adapter(adapter, config, ctx)
    method.setup()
    cuda = str(device).startswith("cuda")
    timer = _Timer(cuda)
    try:
        if null:
            _null_forward(method)
        elif method._pipeline is not None:
            method._pipeline.forward = timer.wrap(method._pipeline.forward)
        else:
            adapter.mask_logits = timer.wrap(adapter.mask_logits)
        return _timed(fixture, method, timer, null=null, cuda=cuda, chunk=chunk, tick=tick)
    finally:
        adapter.__dict__.pop("mask_logits", None)  # the adapter's own forward again


def _timed(fixture: Fixture, method, timer: _Timer, *, null: bool, cuda: bool, chunk: int,
           tick: Callable[[str], None] | None = None) -> dict[str, Any]:
    import torch

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    examples = fixture.examples
    start = clock()
    for i in range(0, len(examples), chunk):
        nxt = examples[i + chunk:i + 2 * chunk]
        if nxt:
            fixture.source.prefetch([ex.image_key for ex in nxt])
        method.predict(examples[i:i + chunk])
        if tick is not None:  # after the predict call: no device wait is added inside one
            tick(f"  {min(i + chunk, len(examples))}/{len(examples)} expressions")
    if cuda:
        torch.cuda.synchronize()
    wall = clock() - start
    counters = method.take_counters()
    perf = method.perf_info()
    passes = int(counters["passes"])
    images = fixture.source.stats()
    out: dict[str, Any] = {
        "forward": "null" if null else "model",
        "pipeline": perf.get("pipeline"), "precision": perf.get("precision"), "batch_size": perf.get("eval_batch_size"),
        "expressions": int(counters["expressions"]), "passes": passes, "wall_s": round(wall, 3),
        "passes_per_s": round(passes / wall, 1) if wall else None,
        "ms_per_pass": round(1000 * wall / passes, 4) if passes else None,
        "decodes_per_image": round(images["decodes"] / fixture.n_images, 3),
        "painted_copies_per_image": round(perf.get("painted_copies", 0) / fixture.n_images, 3),
        "bytes_to_device_per_pass": round(perf["bytes_to_device"] / passes, 1) if passes and "bytes_to_device" in perf else None,
    }
    if not null:
        fwd = timer.total()
        out["forward_s"] = round(fwd, 3)
        out["forward_share"] = round(fwd / wall, 4) if wall else None
    if cuda:
        out["peak_device_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return out


def reference_bytes_per_pass(fixture: Fixture, adapter: Any, sample: int = 64) -> float:
    """What the reference path sends to the device per pass: its collated batch (pixel values,
    int64 pixel mask, token ids) for ``sample`` passes, divided by the passes."""
    from cptbench.cpt.config import CptConfig
    from cptbench.cpt.method import CptBlockMethod
    from cptbench.run.context import build_context

    config = CptConfig(pipeline="reference")
    method = CptBlockMethod.with_adapter(adapter, config, build_context(None, CptBlockMethod, config))
    method.setup()
    pairs = [(ex, g) for ex in fixture.examples[:8] for g in range(ex.n_candidates)][:sample]
    batch = adapter.collate([method.painter.prepared(ex, g) for ex, g in pairs])
    enc = adapter.tokenizer([method._text(ex, g) for ex, g in pairs], padding=True, return_tensors="pt")
    total = sum(t.numel() * t.element_size() for t in batch.values()) + sum(t.numel() * t.element_size() for t in enc.values())
    return total / len(pairs)


def peak_host_mib() -> float:
    """The process's peak resident memory so far, in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 1024), 1)


def machine() -> dict[str, Any]:
    """Where the benchmark ran: platform, Python, torch, torch's CPU threads, usable CPUs and the
    CUDA device's name when there is one."""
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(), "cpus": _cpus()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def _cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_benchmark(*, model: str = "real", device: str = "cpu", pipeline: str = "device", precision: str = "auto",
                  batch_size: int | str = 32, images: int = 100, forward_images: int | None = None,
                  image_size: tuple[int, int] = (640, 480), null: bool = True, forward: bool = True,
                  chunk: int = 64, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole benchmark (module doc): the null-forward run over ``images`` images and the
    model-forward run over ``forward_images`` (default: all on CUDA, 2 elsewhere: a real-size ViLT
    takes ~0.25 s per pass on a 2-core CPU)."""
    say = progress or (lambda _: None)
    last = [clock()]

    def tick(text: str) -> None:
        """A progress line at most every PROGRESS_EVERY_S seconds of a measured run."""
        if progress is not None and clock() - last[0] >= PROGRESS_EVERY_S:
            last[0] = clock()
            say(text)

    if forward_images is None:
        forward_images = images if str(device).startswith("cuda") or model == "tiny" else min(images, 2)
    result: dict[str, Any] = {
        "workload": {"images": images, "image_size": list(image_size), "candidates_per_image": "10 +-2",
                     "expressions_per_image": "7 +2/-1"},
        "model": model, "device": device, "pipeline": pipeline, "chunk_expressions": chunk, "machine": machine(),
    }
    with tempfile.TemporaryDirectory(prefix="cptbench-bench-") as tmp:
        tmp = Path(tmp)
        say(f"building the {model} ViLT (random weights) and {image_size[0]}x{image_size[1]} JPEG images")
        adapter = build_adapter(model, tmp / "model", device)
        warm = build_fixture(tmp / "warm", 2, image_size, seed=99, prefix="warm")
        measure(warm, adapter, device=device, pipeline=pipeline, precision=precision, batch_size=batch_size)
        if null:
            fx = build_fixture(tmp / "null", images, image_size)
            result["workload"].update(expressions=len(fx.examples))
            say("null forward: the harness alone")
            result["null"] = measure(fx, adapter, device=device, pipeline=pipeline, precision=precision,
                                     batch_size=batch_size, null=True, chunk=chunk, tick=tick)
            if pipeline == "reference":
                result["null"]["bytes_to_device_per_pass"] = round(reference_bytes_per_pass(fx, adapter), 1)
        if forward:
            fx = build_fixture(tmp / "fwd", forward_images, image_size, seed=1)
            say(f"{model} forward over {forward_images} images ({len(fx.examples)} expressions)")
            result["forward"] = measure(fx, adapter, device=device, pipeline=pipeline, precision=precision,
                                        batch_size=batch_size, chunk=chunk, tick=tick)
            if pipeline == "reference":
                result["forward"]["bytes_to_device_per_pass"] = round(reference_bytes_per_pass(fx, adapter), 1)
    result["peak_host_mib_process"] = peak_host_mib()  # one figure: the process's peak covers every run
    return result


def summary_lines(result: dict[str, Any]) -> Sequence[str]:
    """The figures as short lines for the terminal."""
    threads = f", {result['threads']} torch threads" if result.get("threads") else ""
    lines = [f"model={result['model']} device={result['device']} pipeline={result['pipeline']} "
             f"({result['machine']['cpus']} CPUs{threads}, torch {result['machine']['torch']})"]
    for name in ("null", "forward"):
        r = result.get(name)
        if not r:
            continue
        line = (f"{name:7s} {r['passes']} passes in {r['wall_s']:.2f} s: {r['passes_per_s']:.1f} passes/s, "
                f"{r['ms_per_pass']:.3f} ms/pass")
        if "forward_share" in r:
            line += f", {100 * r['forward_share']:.1f}% in the forward"
        line += (f"; decodes/image {r['decodes_per_image']}, painted copies/image {r['painted_copies_per_image']}, "
                 f"bytes to device/pass {r['bytes_to_device_per_pass']}")
        if "peak_device_mib" in r:
            line += f", peak device {r['peak_device_mib']} MiB"
        lines.append(line)
    if "peak_host_mib_process" in result:
        lines.append(f"peak host memory of the process (model build, warm-up and every run): "
                     f"{result['peak_host_mib_process']} MiB")
    return lines


def threads_table(results: Sequence[dict[str, Any]]) -> Sequence[str]:
    """One line per thread count of a ``bench --threads 1,2,...`` run: passes/s and ms/pass of
    the null and forward runs side by side."""
    lines = [f"{'threads':>7s}  {'null passes/s':>13s}  {'null ms/pass':>12s}  {'fwd passes/s':>12s}  {'fwd ms/pass':>11s}"]
    for r in results:
        cells = []
        for name in ("null", "forward"):
            run = r.get(name) or {}
            cells += [f"{run['passes_per_s']:.1f}" if run else "-", f"{run['ms_per_pass']:.3f}" if run else "-"]
        lines.append(f"{r.get('threads', '-')!s:>7s}  {cells[0]:>13s}  {cells[1]:>12s}  {cells[2]:>12s}  {cells[3]:>11s}")
    return lines
