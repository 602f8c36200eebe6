"""Discoverable options and CLI habits: --config files (one schema with study files) become
Click's default_map, global flags after the subcommand, shell completion of task / method /
option names, method descriptions and their --set options read from the methods themselves."""

from __future__ import annotations

import dataclasses
import json

import click
import pytest
from click.testing import CliRunner

from cptbench.cli.config_file import load_config
from cptbench.cli.completion import complete_methods, complete_set_keys, complete_tasks, option_keys
from cptbench.cli.main import cli, hoist_global_options
from cptbench.core.errors import UsageError
from cptbench.core.values import int_list
from cptbench.methods.describe import describe_options, summary
from cptbench.methods.registry import get_method_class, list_methods
from cptbench.run.sweep import load_study


def _default_map(tmp_path, text: str) -> dict:
    """The default_map the root's --config callback installs from a file holding ``text``."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    ctx = click.Context(cli)
    assert load_config(ctx, None, str(path)) == str(path)
    return ctx.default_map


# -- --config ---------------------------------------------------------------------------------------
def test_study_keys_in_a_config_are_run_and_sweep_defaults(tmp_path):
    dm = _default_map(tmp_path, "methods: random\nshots: 0\nseeds: 0-2\nlimit: 5\noptions: {steps: 3}\nresults: out\n")
    assert dm["run"]["methods"] == ("random",)  # a scalar where the option repeats
    assert dm["run"]["shots"] == ("0",)
    assert dm["run"]["seeds"] == "0-2" and dm["run"]["limit"] == 5
    assert dm["run"]["sets"] == ("steps=3",)
    assert dm["sweep"]["methods"] == ("random",)
    assert dm["leaderboard"]["results"] == "out"  # shared keys reach every command that has them


def test_command_section_wins_over_study_keys(tmp_path):
    dm = _default_map(tmp_path, "methods: [random]\nrun:\n  method: [oracle]\n  limit: 2\n")
    assert dm["run"]["methods"] == ("oracle",) and dm["run"]["limit"] == 2
    assert dm["sweep"]["methods"] == ("random",)


@pytest.mark.parametrize("text, words", [
    ("methdos: [cpt]\n", ["methdos", "Did you mean", "methods"]),
    ("run:\n  shot: [1]\n", ["section 'run'", "shot", "shots"]),
    ("run:\n  limit: many\n", ["section 'run', key 'limit'"]),
    ("rnu:\n  limit: 1\n", ["rnu", "run"]),
])
def test_config_errors_name_file_key_and_fix(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    r = CliRunner().invoke(cli, ["--config", str(path), "list", "tasks"])
    assert r.exit_code != 0
    assert "bad.yaml" in r.output
    for w in words:
        assert w in r.output, r.output


def test_config_given_a_filter_points_to_runs_option(tmp_path):
    r = CliRunner().invoke(cli, ["runs", "--config", "score=auto"])
    assert r.exit_code != 0 and "--option KEY=VALUE" in r.output


def test_a_config_file_with_command_sections_is_a_study(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seeds: [0, 1]\nrun:\n  method: [random]\n  shots: [0]\n  set: [steps=3]\n"
                    "sweep:\n  task: [synthref]\nleaderboard:\n  results: x\n")
    s = load_study(str(path))
    assert s.methods == ["random"] and s.shots == [0] and s.seeds == [0, 1] and s.tasks == ["synthref"]
    assert s.options == {"steps": 3} or s.options == {"steps": "3"}


def test_study_file_rejects_unknown_section_option(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  methd: [random]\n")
    with pytest.raises(UsageError, match="methd"):
        load_study(str(path))


# -- global flags, ranges -------------------------------------------------------------------------
def test_global_flags_after_the_subcommand_are_moved_in_front():
    assert hoist_global_options(["run", "-m", "cpt", "-q", "--debug"]) == ["-q", "--debug", "run", "-m", "cpt"]
    assert hoist_global_options(["run", "--config", "c.yaml", "-vv"]) == ["--config", "c.yaml", "-vv", "run"]
    assert hoist_global_options(["-q", "run", "--", "-q"]) == ["-q", "run", "--", "-q"]
    assert hoist_global_options(["--config", "c.yaml", "run", "-k", "1"]) == ["--config", "c.yaml", "run", "-k", "1"]


def test_quiet_after_the_subcommand_is_accepted():
    r = CliRunner().invoke(cli, ["list", "tasks", "-q"])
    assert r.exit_code == 0, r.output


def test_seed_ranges_and_their_errors():
    assert int_list(["0-4"], "--seeds") == [0, 1, 2, 3, 4]
    assert int_list(["1,4-6", "2"], "-k") == [1, 4, 5, 6, 2]
    with pytest.raises(UsageError, match="backwards"):
        int_list(["4-0"], "--seeds")
    with pytest.raises(UsageError, match="0-4"):
        int_list(["zero"], "--seeds")


# -- completion -----------------------------------------------------------------------------------
def _values(items):
    return [i.value for i in items]


def test_completion_of_tasks_methods_and_comma_lists():
    assert "synthref" in _values(complete_tasks(None, None, "synth"))
    assert set(_values(complete_methods(None, None, "cpt-"))) == {"cpt-blk", "cpt-seg"}
    assert "random,ft-head" in _values(complete_methods(None, None, "random,ft-"))


def test_completion_of_set_keys_follows_the_methods_given():
    ctx = click.Context(click.Command("x"))
    ctx.params = {"methods": ("ft-head",)}
    keys = _values(complete_set_keys(ctx, None, ""))
    fields = [f.name for f in dataclasses.fields(get_method_class("ft-head").Config)]
    assert set(keys) == {f + "=" for f in fields} | {f"ft-head.{f}=" for f in fields}
    assert complete_set_keys(ctx, None, "lr=") == []
    assert "alpha" in option_keys(["cpt-seg"])


def test_completion_through_the_shell_protocol(monkeypatch):
    monkeypatch.setenv("_CPTBENCH_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "cptbench run -m cpt-s")
    monkeypatch.setenv("COMP_CWORD", "3")
    r = CliRunner().invoke(cli, [], prog_name="cptbench", env={"_CPTBENCH_COMPLETE": "bash_complete"})
    assert "cpt-seg" in r.output and "cpt-blk" not in r.output


# -- descriptions -----------------------------------------------------------------------------------
def test_every_method_has_a_one_line_description():
    for name in list_methods():
        text = summary(get_method_class(name))
        assert text and "\n" not in text and "``" not in text, name


def test_options_are_the_config_fields_with_ranges_from_the_checks():
    cls = get_method_class("cpt-seg")
    opts = {o.key: o for o in describe_options(cls)}
    assert list(opts) == [f.name for f in dataclasses.fields(cls.Config)]
    assert opts["alpha"].range == "in (0, 1]" and opts["alpha"].type == "float"
    assert all(o.source == "cpt-seg" for o in opts.values())
    # every stated range is one the check enforces: the default passes it
    cls.Config(**{k: o.default for k, o in opts.items() if o.default is not None})


def test_card_defaults_are_named_as_their_source():
    from cptbench.methods.options import card_method_defaults
    from cptbench.tasks.cards import get_task

    spec = get_task("synthref")
    card = card_method_defaults(spec).get("cpt-seg", {})
    opts = {o.key: o for o in describe_options(get_method_class("cpt-seg"), spec)}
    assert card, "synthref's card sets cpt-seg defaults"
    for key, value in card.items():
        assert opts[key].source == "card synthref" and opts[key].default == value


def test_list_json_and_names():
    r = CliRunner().invoke(cli, ["list", "methods", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert {m["method"] for m in doc} == set(list_methods())
    r = CliRunner().invoke(cli, ["list", "options", "ft", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert list(json.loads(r.output)) == ["ft"]
    r = CliRunner().invoke(cli, ["list", "options", "cpt-sge"])
    assert r.exit_code != 0 and "cpt-seg" in r.output
    r = CliRunner().invoke(cli, ["list", "tasks", "cpt"])
    assert r.exit_code != 0 and "list options cpt" in r.output


def test_data_check_json_carries_the_table_counts(tmp_path):
    r = CliRunner().invoke(cli, ["data", "check", "synthref", "--format", "json", "--skip-images"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["task"] == "synthref" and doc["ok"] is True
    assert [s["split"] for s in doc["splits"]] == ["train", "val", "testA", "testB"]
    table = CliRunner().invoke(cli, ["data", "check", "synthref", "--skip-images"])
    assert table.exit_code == 0, table.output
    for s in doc["splits"]:
        assert s["mismatches"] == [] and s["sentences"] > 0
        line = next(ln for ln in table.output.splitlines() if ln.split() and ln.split()[0] == s["split"])
        assert str(s["sentences"]) in line and str(s["refs"]) in line
