"""vlm-colour and vlm-mark end to end through the CLI on synthref, zero- and few-shot, with tiny
random generative models of each family (built offline), and the errors a user can meet."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench_baselines.vlm_lora import peft_available


@pytest.fixture
def cache_env(synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    monkeypatch.delenv("CPTBENCH_TASKS_PATH", raising=False)


def records(res):
    return [json.loads(line) for line in (res / "runs.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["llava", "qwen2_vl"])
def test_zero_and_few_shot_through_the_cli(kind, tiny_generative_dir, tmp_path, cache_env):
    model = tiny_generative_dir(kind)
    res = tmp_path / "res"
    args = ["run", "-m", "vlm-colour", "-m", "vlm-mark", "-k", "0,2", "--seeds", "0,1", "--model", str(model),
            "--limit", "5", "--results", str(res), "--batch-size", "4"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    recs = records(res)
    assert len(recs) == 2 * (1 + 2) * 3  # 2 methods x (k=0 once, k=2 for 2 seeds) x 3 splits
    for rec in recs:
        info = rec["method_info"]
        assert rec["model"] == str(model) and rec["n"] == 5 and rec["n_invalid"] == 0
        assert info["family"] == kind and info["fewshot"] == "icl" and info["kv_cache"] is True
        assert info["icl_turns"] == (2 if rec["shots"] else 0) - info["skipped_no_hit"]
        assert info["icl_turns_shown"] == info["icl_turns"] * info["prompts"] and info["icl_turns_cut"] == 0
        assert rec["method_config"]["steps"] == 100  # synthref's budget for trained methods (used by fewshot=lora)
    colour = [r for r in recs if r["method"] == "vlm-colour"]
    assert all(r["method_info"]["palette"]["name"] == "release5" for r in colour)
    assert "vlm-colour" in r.output and "vlm-mark" in r.output
    # the harness's k-shot draws: one manifest per (k, seed), shared by both methods, another per seed
    draws = {(r["seed"], r["manifest_sha256"]) for r in recs if r["shots"] == 2}
    assert len(draws) == 2 and len({sha for _, sha in draws}) == 2


@pytest.mark.skipif(not peft_available(), reason="peft is not installed (pip install 'cptbench[lora]')")
def test_lora_through_the_cli(tiny_generative_dir, tmp_path, cache_env):
    res = tmp_path / "res"
    r = CliRunner().invoke(cli, ["run", "-m", "vlm-mark", "-k", "2", "--seeds", "0", "--model",
                                 str(tiny_generative_dir("qwen2_vl")), "--limit", "4", "--results", str(res),
                                 "--set", "fewshot=lora", "--set", "steps=3"])
    assert r.exit_code == 0, r.output
    for rec in records(res):
        info = rec["method_info"]
        assert info["lora"] == "trained" and info["steps"] == 3 and info["trainable_parameters"] > 0


def test_a_masked_lm_model_is_refused_clearly(tiny_model_dir, tmp_path, cache_env):
    r = CliRunner().invoke(cli, ["run", "-m", "vlm-colour", "-k", "0", "--model", str(tiny_model_dir("vilt")),
                                 "--limit", "2", "--results", str(tmp_path / "res")])
    # refused when the run is planned (the method's model_types), before any job
    out = r.output.replace("\n", " ")
    assert r.exit_code != 0 and "takes llava, qwen2_vl models" in out and "'vilt' model" in out, r.output
    assert "Nothing was run" in out and "Traceback" not in out
    assert not (tmp_path / "res" / "runs.jsonl").exists() or not (tmp_path / "res" / "runs.jsonl").read_text().strip()


def test_bad_options_are_refused(tmp_path, cache_env):
    r = CliRunner().invoke(cli, ["run", "-m", "vlm-mark", "--set", "fewshot=both", "--results", str(tmp_path)])
    assert r.exit_code == 2 and "fewshot must be one of icl, lora, none" in r.output


def test_listing_the_methods_imports_no_model_library():
    code = ("import sys; from cptbench.cli.main import cli\n"
            "try:\n    cli.main(['list', 'methods'], prog_name='cptbench')\nexcept SystemExit: pass\n"
            "import cptbench_baselines.vlm_prompting, cptbench_baselines.vlm_lora\n"
            "assert not {'torch', 'transformers', 'peft'} & set(sys.modules), 'heavy import'\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "vlm-colour" in out and "vlm-mark" in out and "vlm-color" in out


def test_loading_the_model_is_timed_as_loading(tiny_generative_dir, tmp_path, cache_env, monkeypatch):
    """Reading a generative model lands in a record's load_seconds, not in its fit or predict time."""
    import time

    from cptbench.models import gen_loading

    real = gen_loading._load

    def slow(name_or_path, device):
        time.sleep(4.0)  # far above the fit and predict of two expressions with the tiny model
        return real(name_or_path, device)

    monkeypatch.setattr(gen_loading, "_load", slow)
    # a model of its own (seed 7): one another test ran is kept loaded for the process and not read again
    res = tmp_path / "res"
    r = CliRunner().invoke(cli, ["run", "-m", "vlm-colour", "-k", "0", "--model", str(tiny_generative_dir("llava", seed=7)),
                                 "--limit", "2", "--results", str(res), "--no-sealed"])
    assert r.exit_code == 0, r.output
    recs = records(res)
    first = recs[0]
    assert first["load_seconds"] >= 4.0 and first["fit_seconds"] < 4.0 and first["predict_seconds"] < 4.0
    assert all(abs(rec["seconds"] - rec["load_seconds"] - rec["fit_seconds"] - rec["predict_seconds"]) < 0.01
               for rec in recs)


def test_sealed_evaluation_runs_the_method_in_its_own_process(tiny_generative_dir, tmp_path, cache_env):
    """--sealed: fit and predict in a spawned process that gets no evaluation label; the same scores
    as in-process (the tiny model is deterministic), and the model's loading still timed."""
    model = str(tiny_generative_dir("qwen2_vl"))
    out = {}
    for flag in ("--sealed", "--no-sealed"):
        res = tmp_path / flag.strip("-")
        r = CliRunner().invoke(cli, ["run", "-m", "vlm-mark", "-k", "0,1", "--seeds", "0", "--model", model,
                                     "--limit", "3", "--results", str(res), flag])
        assert r.exit_code == 0, r.output
        out[flag] = records(res)
    assert all(rec["sealed"] for rec in out["--sealed"]) and not any(rec["sealed"] for rec in out["--no-sealed"])
    assert sum(rec["load_seconds"] for rec in out["--sealed"]) > 0

    def scores(flag):
        res = tmp_path / flag.strip("-")
        return {(rec["shots"], rec["split"], row["example_id"]): row["scores"] for rec in out[flag]
                for row in map(json.loads, (res / "predictions" / f"{rec['run_id']}.jsonl").read_text().splitlines())}

    sealed, plain = scores("--sealed"), scores("--no-sealed")
    assert len(sealed) == 2 * 3 * 3 and sealed.keys() == plain.keys()
    for key, values in sealed.items():
        assert values == pytest.approx(plain[key], abs=1e-4), key


def test_the_run_precision_reaches_the_generative_model(tiny_generative_dir, tmp_path, cache_env):
    """--precision is the one device policy for every model method: bf16 autocast changes the scores
    by bf16 rounding (some differ from fp32's, none by much), and records name the precision used."""
    model = str(tiny_generative_dir("llava"))
    scores = {}
    for precision in ("fp32", "bf16"):
        res = tmp_path / precision
        r = CliRunner().invoke(cli, ["run", "-m", "vlm-colour", "-k", "0", "--model", model, "--limit", "3",
                                     "--results", str(res), "--precision", precision, "--batch-size", "auto"])
        assert r.exit_code == 0, r.output
        recs = records(res)
        assert all(rec["precision"] == precision == rec["method_info"]["precision"] for rec in recs)
        assert all(rec["perf"]["eval_batch_size"] >= 1 for rec in recs)
        scores[precision] = {row["example_id"]: row["scores"] for rec in recs for row in
                             map(json.loads, (res / "predictions" / f"{rec['run_id']}.jsonl").read_text().splitlines())}
    assert scores["fp32"].keys() == scores["bf16"].keys() and len(scores["fp32"]) == 9
    diffs = [abs(a - b) for key in scores["fp32"] for a, b in zip(scores["fp32"][key], scores["bf16"][key])]
    assert max(diffs) > 0 and max(diffs) < 0.5
