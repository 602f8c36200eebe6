"""CPT end to end through the CLI on synthref, with tiny random backbones of every adapter kind."""

import json

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli


@pytest.fixture
def cache_env(synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    monkeypatch.delenv("CPTBENCH_TASKS_PATH", raising=False)


@pytest.mark.parametrize("kind", ["vilt", "flava", "bridgetower"])
def test_zero_and_one_shot_cpt_through_the_cli(kind, tiny_model_dir, tmp_path, cache_env):
    model = tiny_model_dir(kind, image_size=32)
    res = tmp_path / "res"
    args = ["run", "-m", "cpt", "-m", "cpt-seg", "-k", "0,1", "--seeds", "0", "--model", str(model), "--limit", "6",
            "--results", str(res), "--set", "steps=3", "--batch-size", "8"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (res / "runs.jsonl").read_text().splitlines()]
    assert len(recs) == 2 * 2 * 3  # 2 methods x (k=0, k=1) x 3 splits
    for rec in recs:
        assert rec["model"] == str(model) and rec["n"] == 6 and rec["n_invalid"] == 0
        info = rec["method_info"]
        # synthref's card sets score auto-safe: raw logit zero-shot, logsoftmax after tuning
        assert info["score_rule"] == ("logit" if rec["shots"] == 0 else "logsoftmax")
        assert info["train_steps"] == (3 if rec["shots"] == 1 else 0)
        assert info["passes"] >= rec["n"] * 3  # one red: one pass per candidate, >= 3 candidates
    assert "cpt-seg" in r.output and "cpt-blk" in r.output


def test_show_writes_painted_images_and_scores(tiny_model_dir, tmp_path, cache_env):
    model = tiny_model_dir("vilt", image_size=32)
    out = tmp_path / "show"
    r = CliRunner().invoke(cli, ["show", "--ref-id", "0", "--model", str(model), "--out", str(out), "--set", "palette=release5"])
    assert r.exit_code == 0, r.output
    text = (out / "scores.txt").read_text()
    assert "is [MASK]." in text and "PICK" in text and "GT" in text  # synthref's card: template 1
    assert (out / "group0.png").is_file() and (out / "original.png").is_file()


def test_unknown_method_option_suggests(tiny_model_dir, tmp_path, cache_env):
    r = CliRunner().invoke(cli, ["run", "-m", "cpt", "--set", "pallete=release5", "--results", str(tmp_path)])
    assert r.exit_code != 0 and "Did you mean 'palette'" in r.output


def test_show_json_under_the_results_folder(tiny_model_dir, tmp_path, cache_env):
    model = tiny_model_dir("vilt", image_size=32)
    res = tmp_path / "res"
    r = CliRunner().invoke(cli, ["show", "--ref-id", "0", "--model", str(model), "--results", str(res), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output[r.output.index("{"):])
    folder = res / "show" / f"synthref-0-{doc['sent_id']}"
    assert doc["folder"] == str(folder) and json.loads((folder / "scores.json").read_text()) == doc
    picks = [c["candidate"] for c in doc["candidates"] if c["pick"]]
    assert picks == [doc["predicted"]]
    assert doc["predicted"] == max(doc["candidates"], key=lambda c: c["score"])["candidate"]
    assert {g["file"] for g in doc["groups"]} <= {p.name for p in folder.iterdir()}
    assert not (tmp_path / "cptbench-show").exists()
