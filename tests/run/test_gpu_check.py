"""The GPU check script (benchmarks/gpu_check.py) runs its steps on the CPU in --dry-run, so a lent
GPU session spends its minutes measuring, not debugging the script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check(tmp_path: Path, steps: str) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CPTBENCH_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--out",
                          str(tmp_path / "out"), "--steps", steps], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    path = tmp_path / "out" / "gpu_check.json"
    return out, (json.loads(path.read_text()) if path.exists() else {})


def test_unknown_step_is_named(tmp_path):
    out, _ = _check(tmp_path, "bench,warp")
    assert out.returncode == 2 and "warp" in out.stderr and "sixteen_shot" in out.stderr


@pytest.mark.slow
def test_dry_run_fills_every_figure(tmp_path):
    out, report = _check(tmp_path, "sixteen_shot,bf16_vs_fp32")
    assert out.returncode == 0, out.stderr
    assert report["errors"] == {}, report["errors"]
    assert set(report["step_seconds"]) == {"sixteen_shot", "bf16_vs_fp32"}
    fits = report["sixteen_shot"]
    assert {"cpt-blk", "ft"} <= set(fits) and all(fits[m]["fit_seconds"] > 0 for m in ("cpt-blk", "ft"))
    agree = report["bf16_vs_fp32"]
    assert agree["expressions"] > 0 and 0.0 <= agree["same_pick"] <= 1.0 and agree["max_score_diff"] >= 0.0


def test_dry_run_measures_the_colour_search(tmp_path):
    """The prompt-search step (issue 23's GPU figure) runs on the CPU with the tiny model, and its
    extrapolations are the measured seconds per colour times the grids' sizes."""
    out, report = _check(tmp_path, "prompt_search")
    assert out.returncode == 0, out.stderr
    assert report["errors"] == {}, report["errors"]
    cost = report["prompt_search"]
    assert cost["measured_colours"] == 8 and cost["step5_colours"] == 52 ** 3 and cost["step32_colours"] == 512
    per = cost["seconds_per_colour"]
    assert 0 < per < 10 and cost["step5_minutes"] == pytest.approx(per * 52 ** 3 / 60, rel=1e-3, abs=0.01)
    assert cost["device"] == "cpu" and cost["gpu"] is None


def test_a_failing_step_keeps_the_others(tmp_path, monkeypatch):
    """One step's failure is written into errors while the next step's figures still arrive."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def broken(report, device, dry):
        raise RuntimeError("no such kernel")

    def fine(report, device, env, work, dry):
        report["main_job"] = {"wall_s": 1.0, "runs": 3}

    monkeypatch.setattr(module, "step_bench", broken)
    monkeypatch.setattr(module, "step_main_job", fine)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--dry-run", "--out", str(tmp_path), "--steps", "bench,main_job"])
    module.main()
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "no such kernel" in report["errors"]["bench"]
    assert report["main_job"] == {"wall_s": 1.0, "runs": 3}
    assert set(report["step_seconds"]) == {"bench", "main_job"}
