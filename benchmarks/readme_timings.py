"""Re-measure the timings the README and docs/performance.md quote, on this machine, today.

Each command runs in a fresh results folder (nothing is reused from earlier runs), offline, and
its wall time is taken around the whole process (imports and model load included, as a user waits
for it). The machine's load average is read before and after each step, so a figure taken while
other jobs ran says so. Prints a Markdown table and writes every figure to a JSON file.

    python benchmarks/readme_timings.py                  # everything but the 8-minute study
    python benchmarks/readme_timings.py --study          # the miniature study too
    python benchmarks/readme_timings.py --only host,threads --json /tmp/t.json

Steps: ``main`` (the README's main job), ``audit`` (``data audit synthref``), ``blind`` (the blind
baselines as k-shot methods), ``sealed`` (sealed against in-process evaluation, median of 3 each),
``host`` (``bench --model tiny --no-forward``, min of 3), ``threads`` (the 40-image workload with
the tiny forward at 1 and 2 threads, alone and beside one busy process), ``prompt_search`` (the
step-32 colour search with the bundled model: the whole command, and the search's forwards as its
palette file records them), ``study`` (opt-in).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = ["-m", "cpt", "-m", "cpt-seg", "-m", "ft", "-m", "ft-head", "-m", "random", "-m", "oracle",
         "-k", "0,1,2,4,8,16", "--seeds", "0,1,2,3,4"]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _cli(args: list[str], results: Path | None = None, ok: tuple[int, ...] = (0,)) -> float:
    """Wall seconds of ``cptbench ARGS`` (with ``--results`` in a fresh folder when given); an exit
    status outside ``ok`` stops the script with the command's error."""
    cmd = [sys.executable, "-m", "cptbench", *args] + (["--results", str(results)] if results else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return round(wall, 1)


def _bench(tmp: Path, args: list[str]) -> dict:
    out = tmp / f"bench-{time.monotonic_ns()}.json"
    _cli(["bench", "--model", "tiny", *args, "--json", str(out)])
    return json.loads(out.read_text())


def step_main(tmp: Path) -> dict:
    return {"seconds": _cli(["run", "--method", "cpt", "--shots", "1"], tmp / "main")}


def step_study(tmp: Path) -> dict:
    return {"seconds": _cli(["run", *STUDY], tmp / "study")}


def step_audit(tmp: Path) -> dict:
    # exit status 1: the audit found a shortcut (it does on synthref, by design)
    return {"seconds": _cli(["data", "audit", "synthref"], ok=(0, 1))}


def step_blind(tmp: Path) -> dict:
    return {"seconds": _cli(["run", "-m", "blind-text", "-m", "blind-image", "-k", "0,1,4,16",
                             "--seeds", "0,1,2,3,4"], tmp / "blind")}


def step_sealed(tmp: Path) -> dict:
    walls = {"sealed": [], "no-sealed": []}
    for i in range(3):
        for mode in walls:
            walls[mode].append(_cli(["run", "-m", "cpt,random", "-k", "0,1", "--seeds", "0,1", f"--{mode}",
                                     "--no-leaderboard"], tmp / f"sealed-{mode}-{i}"))
    return {mode: {"median_s": statistics.median(v), "runs_s": v} for mode, v in walls.items()}


def step_host(tmp: Path) -> dict:
    runs = [_bench(tmp, ["--no-forward"])["null"]["ms_per_pass"] for _ in range(3)]
    return {"ms_per_pass_min": min(runs), "ms_per_pass_runs": runs}


def step_threads(tmp: Path) -> dict:
    """passes/s of the 40-image workload with the tiny forward, per thread count, alone and beside a
    process that keeps one core busy."""
    out = {}
    for busy in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for n in (1, 2):
                rates = [_bench(tmp, ["--images", "40", "--no-null", "--threads", str(n)])["forward"]["passes_per_s"]
                         for _ in range(2)]
                out[f"{'busy' if busy else 'quiet'}-threads{n}"] = {"passes_per_s": rates}
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    return out


def step_prompt_search(tmp: Path) -> dict:
    out = tmp / "prompt-search.json"
    wall = _cli(["prompt-search", "--step", "32", "-o", str(out)])
    search = json.loads(out.read_text())["search"]
    return {"seconds": wall, "search_seconds": search["seconds"], "threads": search.get("threads"),
            "palette": [c["word"] for c in json.loads(out.read_text())["colors"]]}


STEPS = {"main": step_main, "audit": step_audit, "blind": step_blind, "sealed": step_sealed, "host": step_host,
         "threads": step_threads, "prompt_search": step_prompt_search, "study": step_study}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", action="store_true", help="also time the miniature study (about 8 minutes)")
    ap.add_argument("--only", default=None, help=f"comma list of steps ({', '.join(STEPS)})")
    ap.add_argument("--json", default="cptbench-results/readme_timings.json")
    args = ap.parse_args()
    names = [s.strip() for s in args.only.split(",")] if args.only else [s for s in STEPS if s != "study" or args.study]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        ap.error(f"unknown step(s) {unknown}; choose from {', '.join(STEPS)}")
    figures = {"date": datetime.date.today().isoformat(), "cpus": os.cpu_count(), "steps": {}}
    path = Path(args.json).resolve()
    home = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # commands that keep caches in ./cptbench-results start from nothing
        for name in names:
            before = _load()
            result = STEPS[name](Path(tmp))
            result.update(load_before=before, load_after=_load())
            figures["steps"][name] = result
            print(f"| {name} | {json.dumps({k: v for k, v in result.items()})} |", flush=True)
        os.chdir(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"written to {path} ({figures['date']}, {figures['cpus']} CPUs)")


if __name__ == "__main__":
    main()
