"""The visual-prompt methods end to end through the CLI on synthref, with tiny random CLIP and BLIP
models written on the fly (configs and tokenizers; nothing downloaded), zero- and one-shot."""

import json

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli

METHODS = ("clip-crop", "clip-blur", "reclip", "clip-circle", "clip-cpt")


@pytest.fixture
def cache_env(synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    monkeypatch.delenv("CPTBENCH_TASKS_PATH", raising=False)


@pytest.mark.parametrize("kind", ["clip", "blip"])
def test_every_visual_prompt_method_zero_and_one_shot_through_the_cli(kind, tiny_dual_dir, tmp_path, cache_env):
    model = tiny_dual_dir(kind)
    res = tmp_path / "res"
    args = ["run", "-m", ",".join(METHODS), "-k", "0,1", "--seeds", "0", "--model", str(model), "--limit", "5",
            "--results", str(res), "--batch-size", "8"]
    if kind == "blip":
        args += ["--set", "clip-cpt.score=itm"]  # BLIP's matching head on one method
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (res / "runs.jsonl").read_text().splitlines()]
    assert len(recs) == len(METHODS) * 2 * 3  # methods x (k=0, k=1) x 3 splits
    assert {rec["method"] for rec in recs} == set(METHODS)
    for rec in recs:
        info = rec["method_info"]
        assert rec["model"] == str(model) and rec["n"] == 5 and rec["n_invalid"] == 0
        assert info["family"] == kind and info["head_trained"] == (rec["shots"] == 1)
        assert info["prompt_images"] >= rec["n"] * 3 * len(info["prompts"])  # >= 3 candidates each
        assert info["score"] == ("itm" if kind == "blip" and rec["method"] == "clip-cpt" else "itc")
        perf = rec["perf"]
        assert perf["eval_batch_size"] == 8 and perf["precision"] == "fp32"
        key = "match_cache_misses" if info["score"] == "itm" else "image_cache_misses"
        assert perf[key] > 0
    for method in METHODS:
        assert method in r.output
