"""Fixtures of the import tests: task cards whose published counts are those of the refer fixture
(helpers/refer_fixture.py: 2 refs of 2 expressions on each image; train 6 images, val 3, testA 2,
testB 2; the umd one train 6, val 3, test 2), and the fixture written as RefCOCO and RefCOCOg."""

from __future__ import annotations

import pytest

from refer_fixture import write_refer_fixture

UNC_CARD = """\
name: toyref
version: 1
description: the refer fixture as RefCOCO (unc), with its published counts
source: refer
dataset: refcoco
split_by: unc
train_split: train
eval_splits: [val, testA, testB]
default_model: none
image_dir: images/train2014
expected_counts:
  train: {sentences: 24, refs: 12, images: 6}
  val: {sentences: 12, refs: 6, images: 3}
  testA: {sentences: 8, refs: 4, images: 2}
  testB: {sentences: 8, refs: 4, images: 2}
"""
UMD_CARD = """\
name: toyrefg
version: 1
description: the refer fixture as RefCOCOg (umd), with its published counts
source: refer
dataset: refcocog
split_by: umd
train_split: train
eval_splits: [val, test]
default_model: none
image_dir: images/train2014
expected_counts:
  train: {sentences: 24, refs: 12, images: 6}
  val: {sentences: 12, refs: 6, images: 3}
  test: {sentences: 8, refs: 4, images: 2}
"""
UMD_SPLITS = {"train": 6, "val": 3, "test": 2}


@pytest.fixture
def cards(tmp_path, monkeypatch):
    """The toy cards on the task path; the cache and the console width kept to the test."""
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "toyref.yaml").write_text(UNC_CARD)
    (tmp_path / "cards" / "toyrefg.yaml").write_text(UMD_CARD)
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture
def src(tmp_path):
    """The refer fixture as refcoco (unc): ``<src>/refcoco/refs(unc).p`` + instances.json, PNG images."""
    return write_refer_fixture(tmp_path / "refer", dataset="refcoco")


@pytest.fixture
def srcg(tmp_path):
    """The refer fixture as refcocog (umd)."""
    return write_refer_fixture(tmp_path / "referg", dataset="refcocog", split_by="umd", splits=UMD_SPLITS)

