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
