"""Palette files: read and written, the canonical config value (name and content hash, never the
path), the alpha rule, every broken file refused by name, and names / inline specs unchanged."""

from __future__ import annotations

import json
import shutil

import pytest

from cptbench.cpt.config import CptConfig
from cptbench.cpt.palettes import (DEFAULT_ALPHA, dump_palette_document, palette_document, parse_palette,
                                   read_palette_file)
from cptbench.methods.base import ConfigError
from cptbench.methods.options import config_dict, parse_config

ENTRIES = [{"word": "red", "rgb": [224, 0, 32], "alpha": DEFAULT_ALPHA, "probability": 0.97, "margin": 0.9},
           {"word": "blue", "rgb": [32, 96, 224], "alpha": DEFAULT_ALPHA, "probability": 0.8, "margin": 0.6}]


def write(path, name="found", entries=ENTRIES, **extra):
    doc = palette_document(name, entries, search={"model": "bundled:mini-vilt", **extra})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dump_palette_document(doc, path))
    return path


def cpt_config(palette, **options):
    return parse_config(CptConfig, {"palette": str(palette), **options}, method="cpt-blk")


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_a_written_file_reads_back(tmp_path, suffix):
    pf = read_palette_file(write(tmp_path / f"p{suffix}"))
    assert pf.palette.words == ("red", "blue") and pf.palette.rgb == ((224, 0, 32), (32, 96, 224))
    assert pf.alpha == pytest.approx(DEFAULT_ALPHA) and pf.probability == (0.97, 0.8) and pf.margin == (0.9, 0.6)
    assert pf.palette.file_name == "found" and len(pf.palette.file_sha256) == 12
    assert pf.canonical == f"file:found@{pf.palette.file_sha256};red:224,0,32;blue:32,96,224"


def test_the_config_holds_name_and_hash_not_the_path(tmp_path):
    path = write(tmp_path / "a" / "found.json")
    config = cpt_config(path)
    sha = read_palette_file(path).palette.file_sha256
    assert config.palette == f"file:found@{sha};red:224,0,32;blue:32,96,224"
    assert str(tmp_path) not in json.dumps(config_dict(config))
    assert CptConfig(palette=path).palette == config.palette  # a pathlib.Path from Python
    # a moved (renamed, even) copy: the same config, hence the same run ids
    moved = tmp_path / "elsewhere" / "renamed.json"
    moved.parent.mkdir()
    shutil.move(path, moved)
    assert config_dict(cpt_config(moved)) == config_dict(config)
    # the canonical value stands alone: records and workers re-parse it without the file
    moved.unlink()
    again = parse_config(CptConfig, config_dict(config), method="cpt-blk")
    assert again == config
    palette = parse_palette(again.palette)
    assert palette.words == ("red", "blue") and palette.describe()["file"] == {"name": "found", "sha256": sha}


def test_an_edited_file_is_a_new_config(tmp_path):
    path = write(tmp_path / "found.json")
    before = cpt_config(path)
    doc = json.loads(path.read_text())
    doc["colors"][0]["probability"] = 0.5  # not even a colour: any byte changes the identity
    path.write_text(json.dumps(doc))
    after = cpt_config(path)
    assert after.palette != before.palette and after.palette.endswith(";red:224,0,32;blue:32,96,224")
    # a changed colour changes it too, and the file's name field is the name (not the file name)
    doc["colors"][0]["rgb"] = [200, 0, 0]
    doc["name"] = "mine"
    path.write_text(json.dumps(doc))
    assert cpt_config(path).palette.startswith("file:mine@") and ";red:200,0,0;" in cpt_config(path).palette + ";"


def test_a_file_without_a_name_is_named_by_its_file_name(tmp_path):
    path = tmp_path / "my palette.yaml"
    path.write_text("colors:\n  - {word: green, rgb: [0, 200, 0]}\n")
    assert cpt_config(path).palette.startswith("file:my-palette@")
    assert cpt_config(path).palette.endswith(";green:0,200,0")


def test_the_alpha_of_the_file_must_be_the_runs(tmp_path):
    entries = [dict(e, alpha=0.6) for e in ENTRIES]
    path = write(tmp_path / "half.json", entries=entries)
    with pytest.raises(ConfigError, match=r"alpha 0.6 .*--set alpha=0.6"):
        cpt_config(path)
    assert cpt_config(path, alpha="0.6").alpha == 0.6


def test_names_and_inline_specs_are_kept_as_given():
    for value in ("red", "release5", "red:240,0,30;blue:0,10,255", " red:240,0,30 "):
        assert cpt_config(value).palette == value
    assert CptConfig().palette == "red"


@pytest.mark.parametrize("text, message", [
    ('{"colors": []}', "non-empty list"),
    ('{"colors": [{"word": "red"}]}', "'word' and 'rgb'"),
    ('{"colors": [{"word": "red", "rgb": [1, 2]}]}', "three integers"),
    ('{"colors": [{"word": "red", "rgb": [1, 2, 300]}]}', "three integers"),
    ('{"colors": [{"word": "none", "rgb": [1, 2, 3]}]}', "negative answer word"),
    ('{"colors": [{"word": "red", "rgb": [1, 2, 3]}, {"word": "red", "rgb": [3, 2, 1]}]}', "twice"),
    ('{"colors": [{"word": "red", "rgb": [1, 2, 3], "alpha": 0.5}, {"word": "b", "rgb": [3, 2, 1]}]}', "same 'alpha'"),
    ('{"colors": [{"word": "red", "rgb": [1, 2, 3], "alpha": 0}]}', "alpha"),
    ('{"format": "something-else", "colors": [{"word": "red", "rgb": [1, 2, 3]}]}', "format"),
    ('{"version": 2, "colors": [{"word": "red", "rgb": [1, 2, 3]}]}', "version"),
    ('{"name": "no spaces please", "colors": [{"word": "red", "rgb": [1, 2, 3]}]}', "'name'"),
    ('{"colors": [{"word": "red", "rgb": [1, 2, 3], "probability": NaN}]}', "non-finite"),
    ("[1, 2, 3]", "mapping"),
    ("{not json", "palette file"),
])
def test_broken_files_are_refused_by_name(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="bad.json") as err:
        cpt_config(path)
    assert message in str(err.value)


def test_a_missing_file_and_a_yaml_alias_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        cpt_config(tmp_path / "nowhere.json")
    alias = tmp_path / "alias.yaml"
    alias.write_text("c: &c [1, 2, 3]\ncolors:\n  - {word: red, rgb: *c}\n")
    with pytest.raises(ConfigError, match="alias"):
        cpt_config(alias)


def test_a_forged_canonical_value_is_checked():
    with pytest.raises(ConfigError, match="canonical form"):
        cpt_config("file:x@abc;red:1,2,3")
    assert parse_palette("file:x@0123456789ab;red:1,2,3").name == "file:x@0123456789ab"
