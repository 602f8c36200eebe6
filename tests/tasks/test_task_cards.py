"""Task cards: ``include:`` makes a variant a few lines, loops and bad names are refused, YAML
aliases never expand, and a card is re-read when a card it includes changes."""

from __future__ import annotations

import os
import time

import pytest

from cptbench.tasks import TaskCardError, get_task
from cptbench.tasks.spec import load_task_card


def test_bundled_variants_are_refcoco_plus_their_differences():
    base, plus, g = get_task("refcoco"), get_task("refcoco+"), get_task("refcocog")
    assert (plus.dataset, plus.split_by, plus.eval_splits, plus.metric) == ("refcoco+", "unc", base.eval_splits, base.metric)
    assert (g.dataset, g.split_by, g.eval_splits) == ("refcocog", "umd", ("val", "test"))
    assert plus.expected_counts["train"].images == 16992 and base.expected_counts["train"].images == 16994
    assert g.expected_counts["train"].sentences == 80512 and "testB" not in g.expected_counts
    assert plus.default_model == base.default_model and plus.path.endswith("refcoco+.yaml")


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    return folder / f"{name}.yaml"


BASE = """name: base
version: 3
description: a base card
source: refer
dataset: base
split_by: unc
train_split: train
eval_splits: [val, testA]
default_model: some/model
"""


def test_include_by_name_and_by_path_and_whole_key_replacement(tmp_path):
    write(tmp_path, "base", BASE)
    v = load_task_card(write(tmp_path, "variant", "include: base\nname: variant\neval_splits: [val]\n"))
    assert (v.version, v.dataset, v.eval_splits) == (3, "base", ("val",))
    v2 = load_task_card(write(tmp_path / "sub", "v2", "include: ../base.yaml\nname: v2\n"))
    assert v2.eval_splits == ("val", "testA")


@pytest.mark.parametrize("text, match", [
    ("include: nosuchcard\nname: bad\n", "unknown task card 'nosuchcard'"),
    ("include: bad\nname: bad\n", "include loop"),
    ("include: missing.yaml\nname: bad\n", "is not a file"),
    ("include: [base]\nname: bad\n", "must name a task card"),
])
def test_bad_includes_are_refused_with_the_file(tmp_path, text, match):
    write(tmp_path, "base", BASE)
    with pytest.raises(TaskCardError, match=match) as info:
        load_task_card(write(tmp_path, "bad", text))
    assert "bad.yaml" in str(info.value)


def test_aliases_and_unsafe_names_are_refused(tmp_path):
    with pytest.raises(TaskCardError, match="anchors"):
        load_task_card(write(tmp_path, "base", BASE + "expected_counts: &c {val: {refs: 1}}\n"))
    with pytest.raises(TaskCardError, match="a task name is"):
        load_task_card(write(tmp_path, "..", BASE.replace("name: base", "name: '..'")))


def test_a_card_is_read_again_when_what_it_includes_changes(tmp_path, monkeypatch):
    write(tmp_path, "base", BASE)
    write(tmp_path, "variant", "include: base\nname: variant\n")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path))
    assert get_task("variant").version == 3
    time.sleep(0.01)
    base = tmp_path / "base.yaml"
    base.write_text(BASE.replace("version: 3", "version: 4"))
    os.utime(base, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert get_task("variant").version == 4
