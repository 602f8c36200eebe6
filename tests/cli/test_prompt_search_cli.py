"""``cptbench prompt-search``: a search writes a palette file that `run` accepts and records name;
--evaluate picks between palettes on validation data and refuses test splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.cpt.palettes import read_palette_file

pytest.importorskip("torch")


@pytest.fixture
def synthref_env(synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    return synthref_cache


def invoke(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture
def keep_threads():
    """Restore torch's CPU threads after a test that sets them (--threads)."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_search_writes_a_palette_file_and_a_plot(tiny_vilt_dir, tmp_path, keep_threads):
    out, plot = tmp_path / "found.json", tmp_path / "found.png"
    r = invoke(["prompt-search", "--model", str(tiny_vilt_dir), "--step", "64", "--image-size", "32",
                "-o", str(out), "--plot", str(plot), "--name", "tiny-found", "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "1 threads" in r.output
    assert "pink (not a single token of the model)" in r.output and "64 colours" in r.output
    for word in ("red", "purple", "green", "yellow", "blue", "black"):
        assert word in r.output
    pf = read_palette_file(out)
    doc = pf.document
    assert pf.palette.file_name == "tiny-found" and set(pf.palette.words) <= {"red", "purple", "green", "yellow", "blue", "black"}
    search = doc["search"]
    assert search["grid"] == {"step": 64, "values_per_channel": 4, "colours": 64, "image_size": 32,
                              "processed_size": [32, 32]}
    assert search["text"] == "the color is [MASK] ." and search["normalise"] == "words"
    assert search["dropped_words"] == {"pink": "not a single token of the model"} and len(search["model_fingerprint"]) >= 12
    kept = [c["word"] for c in search["all_choices"]][:len(pf.palette.words)]
    assert list(pf.palette.words) == kept  # best first, as the table
    assert all(e["margin"] > 0 for e in doc["colors"])
    assert search["threads"] == 1
    assert plot.stat().st_size > 1000


def test_keep_yaml_and_the_text_options(tiny_vilt_dir, tmp_path):
    out = tmp_path / "one.yaml"
    r = invoke(["prompt-search", "--model", str(tiny_vilt_dir), "--step", "128", "--image-size", "32", "--words",
                "red,blue", "--template", "2", "--subject", "the man", "--keep", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    pf = read_palette_file(out)
    assert len(pf.palette.words) == 1 and pf.document["search"]["text"] == "the man is [MASK] color."
    r = CliRunner().invoke(cli, ["prompt-search", "--model", str(tiny_vilt_dir), "--words", "red,pink"])
    assert r.exit_code == 2 and "pink" in r.output
    r = CliRunner().invoke(cli, ["prompt-search", "--model", str(tiny_vilt_dir), "red"])
    assert r.exit_code == 2 and "without --evaluate" in r.output


def test_evaluate_picks_on_val_and_refuses_test(synthref_env, tmp_path):
    palette = tmp_path / "p.json"
    palette.write_text(json.dumps({"name": "hand", "colors": [{"word": "red", "rgb": [200, 0, 60]},
                                                              {"word": "blue", "rgb": [0, 40, 250]}]}))
    r = invoke(["prompt-search", "--evaluate", str(palette), "red", "-t", "synthref", "--split", "val", "-n", "6"])
    assert r.exit_code == 0, r.output
    assert "first 6 expressions" in r.output and "p.json" in r.output and "red" in r.output
    for split in ("testA", "testB", "test"):
        r = CliRunner().invoke(cli, ["prompt-search", "--evaluate", "red", "-t", "synthref", "--split", split])
        assert r.exit_code == 2 and "test split is refused" in r.output
    r = CliRunner().invoke(cli, ["prompt-search", "--evaluate", "red", "-t", "synthref", "--split", "vall"])
    assert r.exit_code == 2 and "Did you mean 'val'" in r.output
    r = CliRunner().invoke(cli, ["prompt-search", "--evaluate", "red", "-m", "ft", "-t", "synthref"])
    assert r.exit_code == 2 and "CPT" in r.output


def test_evaluate_scores_as_run_does(synthref_env, tmp_path):
    """The selection stage's accuracy equals `run`'s on the same expressions (one scorer)."""
    res = tmp_path / "res"
    r = invoke(["run", "-m", "cpt", "-k", "0", "--split", "val", "--limit", "6", "--results", str(res),
                "--no-leaderboard"])
    assert r.exit_code == 0, r.output
    record = json.loads((res / "runs.jsonl").read_text().splitlines()[0])
    from cptbench.run.prompt_search import evaluate_palettes
    from cptbench.tasks import get_task

    score, = evaluate_palettes(["red"], get_task("synthref"), split="val", limit=6)
    assert score.n == record["n"] == 6 and score.accuracy == pytest.approx(record["accuracy"])


@pytest.mark.slow
def test_few_shot_evaluate_fits_as_run_does_and_puts_the_weights_back(synthref_env, tmp_path):
    """--evaluate -k 1: each palette and seed is prompt-tuned from the pre-trained weights on the k-shot
    draw of its seed and scored as `run -k 1` scores the same seed; the weights are put back after each
    fit (the same palette twice gives the same accuracies; without the reset the second one starts
    from tuned weights)."""
    res = tmp_path / "res"
    r = invoke(["run", "-m", "cpt", "-k", "1", "--seeds", "0,1", "--split", "val", "--limit", "8", "--results",
                str(res), "--no-leaderboard", "--set", "steps=3", "--set", "lr=1e-3"])
    assert r.exit_code == 0, r.output
    records = {rec["seed"]: rec for rec in map(json.loads, (res / "runs.jsonl").read_text().splitlines())}
    from cptbench.run.prompt_search import evaluate_palettes
    from cptbench.tasks import get_task

    first, again = evaluate_palettes(["red", "red"], get_task("synthref"), split="val", limit=8, shots=1,
                                     seeds=[0, 1], options={"steps": "3", "lr": "1e-3"})
    assert first.shots == 1 and first.seeds == (0, 1) and first.n == 8
    for seed, acc in zip(first.seeds, first.accuracies):
        assert acc == pytest.approx(records[seed]["accuracy"])
    assert again.correct == first.correct
    r = invoke(["prompt-search", "--evaluate", "red", "release5", "-k", "1", "--seeds", "0,1", "-n", "4",
                "--set", "steps=2"])
    assert r.exit_code == 0, r.output
    assert "1-shot (seeds 0, 1)" in r.output and "±" in r.output


def test_a_palette_file_names_its_runs_and_a_moved_file_keeps_them(synthref_env, tmp_path):
    palette = tmp_path / "a" / "found.json"
    palette.parent.mkdir()
    palette.write_text(json.dumps({"name": "found", "colors": [{"word": "red", "rgb": [128, 0, 160]},
                                                               {"word": "green", "rgb": [32, 192, 0]}]}))
    sha = read_palette_file(palette).palette.file_sha256
    res = tmp_path / "res"
    base = ["run", "-m", "cpt", "-k", "0,1", "--seeds", "0", "--split", "val", "--limit", "4", "--results", str(res),
            "--no-leaderboard", "--set", "steps=2"]
    r = invoke([*base, "--set", f"palette={palette}"])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (res / "runs.jsonl").read_text().splitlines()]
    assert len(records) == 2 and {rec["shots"] for rec in records} == {0, 1}
    for rec in records:
        config = json.loads(rec["method_config"]) if isinstance(rec["method_config"], str) else rec["method_config"]
        assert config["palette"] == f"file:found@{sha};red:128,0,160;green:32,192,0"
        info = json.dumps(rec["method_info"])
        assert f"file:found@{sha}" in info and str(tmp_path) not in json.dumps(config)
    ids = {rec["run_id"] for rec in records}
    # moved: the same runs, found already done
    moved = tmp_path / "b" / "copy.json"
    moved.parent.mkdir()
    shutil.move(palette, moved)
    r = invoke([*base, "--set", f"palette={moved}"])
    assert r.exit_code == 0, r.output
    assert len((res / "runs.jsonl").read_text().splitlines()) == 2
    # edited: new runs
    doc = json.loads(moved.read_text())
    doc["colors"][1]["rgb"] = [0, 160, 0]
    moved.write_text(json.dumps(doc))
    r = invoke([*base, "--set", f"palette={moved}"])
    assert r.exit_code == 0, r.output
    new = [json.loads(line) for line in (res / "runs.jsonl").read_text().splitlines()][2:]
    assert len(new) == 2 and not ({rec["run_id"] for rec in new} & ids)


def test_help_is_light():
    import subprocess
    import sys

    code = ("import sys; from cptbench.cli.main import cli\n"
            "try:\n    cli.main(['prompt-search', '--help'], prog_name='cptbench')\nexcept SystemExit: pass\n"
            "assert not {'torch', 'transformers', 'matplotlib'} & set(sys.modules), 'heavy import'\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert "--evaluate" in out.stdout and "--step" in out.stdout


ROOT = Path(__file__).resolve().parents[2]
DOC_PALETTE = ROOT / "docs" / "palettes" / "mini-vilt-step32.json"


def test_the_documented_palette_is_what_the_bundled_model_finds(keep_threads):
    """docs/palettes/mini-vilt-step32.json (used by the README's synthref table) is reproduced by a
    fresh step-32 search with the bundled model, and the README and docs/prompt_search.md quote it."""
    from cptbench.run.prompt_search import run_search, search_document

    shipped = json.loads(DOC_PALETTE.read_text())
    run = run_search("bundled:mini-vilt", step=32, threads=1)
    doc = search_document(run)
    assert doc["name"] == shipped["name"] == "mini-vilt-step32"
    assert doc["search"]["model_fingerprint"] == shipped["search"]["model_fingerprint"]
    assert [(c["word"], c["rgb"]) for c in doc["colors"]] == [(c["word"], c["rgb"]) for c in shipped["colors"]]
    for new, old in zip(doc["colors"], shipped["colors"]):
        assert new["probability"] == pytest.approx(old["probability"], abs=1e-4)
        assert new["margin"] == pytest.approx(old["margin"], abs=1e-4)
    quoted = ", ".join(f"{c['word']} ({', '.join(map(str, c['rgb']))})" for c in shipped["colors"])
    assert f"| found: {quoted} |" in (ROOT / "README.md").read_text()
    guide = (ROOT / "docs" / "prompt_search.md").read_text()
    sha = read_palette_file(DOC_PALETTE).palette.file_sha256
    assert f"file:mini-vilt-step32@{sha}" in guide
    for c in shipped["colors"]:
        rgb = ", ".join(map(str, c["rgb"]))
        assert f"| {c['word']} | ({rgb}) | {c['probability']:.3f} | {c['margin']:+.3f} |" in guide
