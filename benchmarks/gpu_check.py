"""The GPU check: the figures cptbench claims on a GPU, measured in one go (about 8 minutes at most).

Steps (each timed; each writes its figures into one JSON, even when a later step fails):

1. ``bench`` with a real-size ViLT (dandelin/vilt-b32-mlm's shape, random weights) in bf16 and in
   fp32: passes/s end to end and the host's share (the forward replaced by zeros);
2. the main job (``cptbench run --method cpt --shots 1`` on synthref with the bundled model);
3. a 16-shot CPT and ft fit (the bundled model on synthref, one seed): fit seconds of each;
4. bf16 against fp32: zero-shot CPT on synthref under both, the share of identical picks and the
   largest score difference;
5. the cross-modal colour search (issue 23, ``benchmarks/prompt_search_cost.py``) with the
   real-size ViLT in bf16: seconds per colour on the step-32 grid (512 colours, batch 256) and the
   release's step-5 grid (140,608 colours) in minutes, extrapolated from it.

    bash benchmarks/gpu_check.sh                 # on a GPU machine: writes $OUT/gpu_check.json
    python benchmarks/gpu_check.py --dry-run     # the same steps on the CPU, tiny and short (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path


def _cli(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cptbench", *args], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"cptbench {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-800:]}")
    return time.perf_counter() - start, out.stdout


def _records(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines() if line.strip()]


def step_bench(report: dict, device: str, dry: bool) -> None:
    from cptbench.run.bench import run_benchmark

    model = "tiny" if dry else "real"
    for precision in ("bf16", "fp32"):
        r = run_benchmark(model=model, device=device, precision=precision, batch_size=32 if dry else "auto",
                          images=4 if dry else 200, forward_images=2 if dry else None, image_size=(640, 480))
        report["bench"][precision] = {k: r[k] for k in ("null", "forward", "machine") if k in r}


def step_main_job(report: dict, device: str, env: dict, work: Path, dry: bool) -> None:
    seconds, _ = _cli(["-q", "run", "--method", "cpt", "--shots", "1", "--device", device, "--results",
                       str(work / "main"), "--no-leaderboard", *(["--seeds", "0", "--limit", "8"] if dry else [])], env)
    recs = _records(work / "main")
    report["main_job"] = {"wall_s": round(seconds, 2), "runs": len(recs),
                          "accuracy": {f"{r['split']}/s{r['seed']}": r["accuracy"] for r in recs}}


def step_16_shot(report: dict, device: str, env: dict, work: Path, dry: bool) -> None:
    seconds, _ = _cli(["-q", "run", "-m", "cpt,ft", "-k", "16", "--seeds", "0", "--device", device, "--results",
                       str(work / "k16"), "--no-leaderboard", *(["--limit", "4", "--set", "steps=2"] if dry else [])], env)
    recs = _records(work / "k16")
    report["sixteen_shot"] = {"wall_s": round(seconds, 2), **{
        r["method"]: {"fit_seconds": r["fit_seconds"], "load_seconds": r.get("load_seconds"),
                      "precision": r.get("precision")} for r in recs if r["fit_seconds"] > 0}}


def step_agreement(report: dict, device: str, env: dict, work: Path, dry: bool) -> None:
    preds = {}
    for precision in ("bf16", "fp32"):
        res = work / f"agree-{precision}"
        _cli(["-q", "run", "-m", "cpt", "-k", "0", "--device", device, "--precision", precision, "--results", str(res),
              "--no-leaderboard", *(["--limit", "8"] if dry else [])], env)
        rows = {}
        for rec in _records(res):
            for line in (res / rec["predictions_path"]).read_text().splitlines():
                row = json.loads(line)
                rows[(rec["split"], row["example_id"])] = row
        preds[precision] = rows
    same = [preds["bf16"][k]["pred"] == preds["fp32"][k]["pred"] for k in preds["fp32"]]
    diffs = [abs(a - b) for k in preds["fp32"] for a, b in zip(preds["bf16"][k]["scores"], preds["fp32"][k]["scores"])
             if a is not None and b is not None]
    report["bf16_vs_fp32"] = {"expressions": len(same), "same_pick": round(sum(same) / max(1, len(same)), 4),
                              "max_score_diff": round(max(diffs, default=0.0), 5)}


def step_prompt_search(report: dict, device: str, dry: bool) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("prompt_search_cost", Path(__file__).with_name("prompt_search_cost.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report["prompt_search"] = module.measure("tiny" if dry else "real", step=128 if dry else 32,
                                             batch_size=8 if dry else 256, device=device,
                                             precision="fp32" if dry else "bf16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder of gpu_check.json")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, a few examples: the script's own test")
    ap.add_argument("--steps", default="bench,main_job,sixteen_shot,bf16_vs_fp32,prompt_search",
                    help="comma-separated subset of the steps, in the order given")
    args = ap.parse_args()
    device = "cpu" if args.dry_run else args.device
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": device, "dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "bench": {}, "errors": {}}
    try:
        import torch

        report["torch"] = torch.__version__
        if device.startswith("cuda"):
            report["gpu"] = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001 - recorded, the steps say the rest
        report["errors"]["setup"] = repr(exc)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="cptbench-gpu-check-") as tmp:
        work = Path(tmp)
        env.setdefault("CPTBENCH_CACHE", str(work / "cache"))
        table = {"bench": lambda: step_bench(report, device, args.dry_run),
                 "main_job": lambda: step_main_job(report, device, env, work, args.dry_run),
                 "sixteen_shot": lambda: step_16_shot(report, device, env, work, args.dry_run),
                 "bf16_vs_fp32": lambda: step_agreement(report, device, env, work, args.dry_run),
                 "prompt_search": lambda: step_prompt_search(report, device, args.dry_run)}
        wanted = [name.strip() for name in args.steps.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in table]
        if unknown:
            ap.error(f"unknown step(s) {', '.join(unknown)}; the steps are {', '.join(table)}")
        steps = [(name, table[name]) for name in wanted]
        for name, step in steps:
            start = time.perf_counter()
            try:
                step()
            except Exception:  # noqa: BLE001 - one step's failure does not lose the others' figures
                report["errors"][name] = traceback.format_exc()[-2000:]
            report.setdefault("step_seconds", {})[name] = round(time.perf_counter() - start, 2)
            (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("device", "step_seconds", "errors")}, indent=1))


if __name__ == "__main__":
    main()
