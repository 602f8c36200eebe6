"""The visual-prompt methods end to end through the CLI on synthref, with tiny random CLIP and BLIP
models written on the fly (configs and tokenizers; nothing downloaded), zero- and one-shot."""

import json
import re

import numpy as np
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


def test_sealed_runs_take_a_relative_model_folder_and_predict_the_same(tiny_dual_dir, tmp_path, cache_env,
                                                                        monkeypatch):
    """Sealed evaluation: the method's process starts in an empty folder, so a model given as a
    relative folder must reach it as that folder (not be read as a hub id); its predictions are the
    in-process ones, and the model's loading is recorded as loading, not fitting."""
    from cptbench.results.store import ResultsStore

    model = tiny_dual_dir("clip")
    monkeypatch.chdir(model.parent)
    stores = {}
    for mode in ("--no-sealed", "--sealed"):
        res = tmp_path / mode.strip("-")
        args = ["run", "-m", "reclip,clip-circle", "-k", "0,1", "--seeds", "0", "--model", model.name, "--limit", "4",
                "--results", str(res), "--batch-size", "8", mode]
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
        stores[mode] = {(rec.method, rec.shots, rec.split): rec for rec in ResultsStore(res).records()}
    plain, sealed = stores["--no-sealed"], stores["--sealed"]
    assert set(plain) == set(sealed) and len(plain) == 2 * 2 * 3
    for key, rec in plain.items():  # the same scores, up to the last bits of float kernels on other buffers
        other = sealed[key]
        assert not rec.sealed and other.sealed and other.run_id == rec.run_id
        assert (other.n, other.n_correct, other.n_invalid) == (rec.n, rec.n_correct, rec.n_invalid)
        rows = [[json.loads(line) for line in (tmp_path / mode / rec.predictions_path).read_text().splitlines()]
                for mode in ("no-sealed", "sealed")]
        assert [r["example_id"] for r in rows[0]] == [r["example_id"] for r in rows[1]]
        for a, b in zip(*rows):
            assert np.allclose(a["scores"], b["scores"], rtol=0, atol=1e-4)
    for recs in (plain, sealed):  # each job's first split carries its model's load
        for method in ("reclip", "clip-circle"):
            assert recs[(method, 0, "val")].load_seconds > 0


def test_a_model_of_the_wrong_family_is_refused_before_any_job(tiny_dual_dir, tmp_path, cache_env):
    """One --model cannot serve a masked-LM method and a visual-prompt method: the run says which
    method takes which model types before it fits anything, whichever method comes first."""
    cases = [("clip-crop,cpt", str(tiny_dual_dir("clip")), "'cpt-blk' takes bridgetower, flava, vilt.*'clip' model"),
             ("cpt,reclip", "bundled:mini-vilt", "'reclip' takes clip, blip.*'vilt' model")]
    for methods, model, message in cases:
        res = tmp_path / methods.replace(",", "_")
        r = CliRunner().invoke(cli, ["run", "-m", methods, "-k", "0", "--seeds", "0", "--model", model, "--limit", "3",
                                     "--results", str(res)])
        assert r.exit_code != 0 and "Nothing was run" in r.output, r.output
        assert re.search(message, r.output.replace("\n", " ")), r.output
        assert not (res / "runs.jsonl").exists() or not (res / "runs.jsonl").read_text().strip()
