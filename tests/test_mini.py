"""The bundled miniature model: the pretraining command, and the committed checkpoint on synthref."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli

ASSET = Path(__file__).resolve().parents[1] / "cptbench" / "assets" / "mini-vilt"


def test_pretrain_command_is_deterministic(tmp_path):
    logs = []
    for name in ("a", "b"):
        out = tmp_path / name
        r = CliRunner().invoke(cli, ["pretrain-mini", "--out", str(out), "--steps", "3", "--corpus-size", "64"])
        assert r.exit_code == 0, r.output
        assert (out / "model.safetensors").is_file() and (out / "vocab.txt").is_file()
        logs.append([json.loads(line)["loss"] for line in (out / "pretrain_log.jsonl").read_text().splitlines()])
    assert logs[0] == logs[1] and len(logs[0]) >= 2


def test_pretrain_corpus_never_uses_the_cpt_template_and_avoids_benchmark_scenes():
    from cptbench.mini.corpus import CorpusSettings, sample_item

    captions = [sample_item(0, i, CorpusSettings())[1] for i in range(300)]
    assert not any("in color" in c or "[MASK]" in c or "none" in c.split() for c in captions)
    assert any(" is " in c for c in captions) and any(c.startswith("what color") or "what color" in c for c in captions)


@pytest.mark.skipif(not (ASSET / "model.safetensors").is_file(), reason="bundled checkpoint not built")
def test_bundled_checkpoint_loads_and_is_small():
    from cptbench.models.loading import load_adapter

    size = sum(f.stat().st_size for f in ASSET.iterdir())
    assert size < 10 * 1024 * 1024
    adapter = load_adapter("bundled:mini-vilt")
    for word in ("red", "none", "in", "color"):
        adapter.word_id(word)
    assert (ASSET / "README.md").is_file()


@pytest.mark.skipif(not (ASSET / "model.safetensors").is_file(), reason="bundled checkpoint not built")
def test_bundled_model_still_reads_colours_through_the_pipeline():
    """A regression anywhere between the committed weights and the logits (image preprocessing,
    patch order, tokenizer, word ids) drops colour binding to chance (1/6). Measured: 0.45 on 150
    scenes; zero-shot CPT with this model is at chance (see the model card), so the margin tested
    here is the one the model has."""
    from cptbench.mini.probe import binding_probe
    from cptbench.models.loading import load_adapter

    r = binding_probe(load_adapter("bundled:mini-vilt"), n_scenes=60)
    assert r["scenes"] >= 50
    assert r["binding"] > 2 * r["chance"], r
