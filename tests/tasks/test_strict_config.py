"""Strict configuration: aliases resolved, misspellings refused, --config keys checked."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.methods.registry import get_method_class
from cptbench.methods.options import card_method_defaults, resolve_options
from cptbench.tasks.spec import TaskCardError, load_task_card
from refer_fixture import write_refer_fixture, write_task_card


def card(tmp_path, extra: str):
    p = write_task_card(tmp_path / "cards")
    p.write_text(p.read_text() + extra)
    return load_task_card(p)


def test_method_defaults_for_an_alias_reach_the_canonical_method(tmp_path):
    task = card(tmp_path, "method_defaults:\n  cpt: {steps: 3}\n  finetune: {steps: 7}\n")
    assert card_method_defaults(task) == {"cpt-blk": {"steps": 3}, "ft": {"steps": 7}}
    assert resolve_options(get_method_class("cpt-blk"), task, {})["steps"] == 3
    assert resolve_options(get_method_class("cpt-blk"), task, {"steps": "9"})["steps"] == "9"  # --set wins


def test_method_defaults_naming_one_method_twice_are_refused(tmp_path):
    task = card(tmp_path, "method_defaults:\n  cpt: {steps: 3}\n  cpt-blk: {steps: 4}\n")
    with pytest.raises(TaskCardError, match="names 'cpt-blk' twice"):
        card_method_defaults(task)


def test_config_file_accepts_option_spellings_and_applies_them(tmp_path, monkeypatch):
    root = write_refer_fixture(tmp_path / "data")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "study.yaml"
    # the root --help's own example spells options as on the command line ("method", "task")
    cfg.write_text(f"run:\n  method: [oracle]\n  shots: ['0']\n  task: [toyref]\n  data-root: {root}\n"
                   f"  results: {tmp_path / 'r'}\n  no_leaderboard: true\n")
    r = CliRunner().invoke(cli, ["--config", str(cfg), "run"])
    assert r.exit_code == 0, r.output
    assert "3 new runs" in r.output and (tmp_path / "r" / "runs.jsonl").is_file()


def test_nested_group_sections_are_checked(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  chek: {}\n")
    r = CliRunner().invoke(cli, ["--config", str(cfg), "list", "tasks"])
    assert r.exit_code == 2 and "Did you mean 'check'" in r.output
