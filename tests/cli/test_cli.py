"""The CLI: every command's help, light imports, listing, "did you mean", run then leaderboard, --config, data check, clear data errors."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from refer_fixture import write_refer_fixture, write_task_card

COMMANDS = [[], ["run"], ["leaderboard"], ["list"], ["data"], ["data", "check"], ["show"], ["pretrain-mini"]]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    root = write_refer_fixture(tmp_path / "data")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    return tmp_path, root


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "cptbench")
def test_every_command_has_help(cmd):
    available = cli.list_commands(None)
    if cmd and cmd[0] not in available:
        pytest.skip(f"command {cmd[0]} not part of this build")
    res = CliRunner().invoke(cli, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def test_help_does_not_import_torch():
    code = ("import sys; from cptbench.cli.main import cli\n"
            "try:\n    cli.main(['--help'], prog_name='cptbench')\nexcept SystemExit: pass\n"
            "for c in ['run', 'leaderboard', 'list', 'data']:\n"
            "    try:\n        cli.main([c, '--help'], prog_name='cptbench')\n    except SystemExit: pass\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_list_tasks_and_methods():
    r = CliRunner().invoke(cli, ["list", "tasks"])
    assert r.exit_code == 0 and "refcoco+" in r.output and "refcocog" in r.output
    r = CliRunner().invoke(cli, ["list", "methods"])
    assert r.exit_code == 0 and "random" in r.output and "oracle" in r.output and "entry point" in r.output


def test_unknown_names_suggest(toy):
    r = CliRunner().invoke(cli, ["run", "-m", "radnom", "-t", "toyref"])
    assert r.exit_code != 0 and "Did you mean 'random'" in r.output and "Choices:" in r.output
    r = CliRunner().invoke(cli, ["run", "-m", "random", "-t", "refcoc"])
    assert r.exit_code != 0 and "Did you mean" in r.output and "'refcoco'" in r.output
    r = CliRunner().invoke(cli, ["leaderbord"])
    assert r.exit_code != 0 and "Did you mean 'leaderboard'" in r.output


def test_run_then_leaderboard(toy):
    tmp, root = toy
    res = tmp / "res"
    r = CliRunner().invoke(cli, ["run", "-m", "random", "-m", "oracle", "-k", "0", "-k", "1,2", "--seeds", "0,1",
                                 "-t", "toyref", "--data-root", str(root), "--results", str(res)])
    assert r.exit_code == 0, r.output
    assert "toyref (proposals: gt)" in r.output and "oracle*" in r.output
    lines = (res / "runs.jsonl").read_text().splitlines()
    # random and oracle do not train: one k (the smallest); random: 2 seeds, oracle (deterministic): 1; 3 splits
    assert len(lines) == 2 * 3 + 1 * 3
    rec = json.loads(lines[0])
    for key in ("task", "split", "method", "model", "proposals", "shots", "seed", "accuracy", "n", "n_correct",
                "n_invalid", "seconds", "manifest_sha256", "versions", "git_revision"):
        assert key in rec
    oracle = [json.loads(l) for l in lines if json.loads(l)["method"] == "oracle"]
    assert all(o["accuracy"] == 100.0 for o in oracle)  # gt proposals: recall 100%
    manifest = json.loads((res / "splits" / "toyref" / "k0_s1.json").read_text())
    assert manifest["examples"] == [] and len(manifest["sha256"]) == 64
    for f in ("leaderboard.csv", "leaderboard_wide.csv", "leaderboard.md"):
        assert (res / f).is_file()
    (res / "leaderboard.csv").unlink()
    r2 = CliRunner().invoke(cli, ["leaderboard", "--results", str(res)])
    assert r2.exit_code == 0 and (res / "leaderboard.csv").is_file()
    # re-running skips finished runs
    r3 = CliRunner().invoke(cli, ["run", "-m", "random", "-k", "0", "--seeds", "0", "-t", "toyref", "--data-root", str(root), "--results", str(res)])
    assert r3.exit_code == 0 and "0 new runs" in r3.output
    assert len((res / "runs.jsonl").read_text().splitlines()) == len(lines)


def test_config_file_sets_defaults(toy, tmp_path):
    _, root = toy
    cfg = tmp_path / "study.yaml"
    cfg.write_text(f"run:\n  methods: [random]\n  shots: ['0']\n  tasks: [toyref]\n  data_root: {root}\n  results: {tmp_path / 'r2'}\n")
    r = CliRunner().invoke(cli, ["--config", str(cfg), "run"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r2" / "runs.jsonl").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("rnu: {}\n")
    r = CliRunner().invoke(cli, ["--config", str(bad), "run"])
    assert r.exit_code != 0 and "Did you mean 'run'" in r.output


def test_data_check(toy):
    _, root = toy
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(root)])
    assert r.exit_code == 0, r.output
    assert "12 ✓" in r.output and "data check passed" in r.output
    next((root / "images" / "train2014").glob("*.png")).unlink()
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(root)])
    assert r.exit_code == 1 and "missing images" in r.output


def test_missing_data_root_is_explained(toy, monkeypatch):
    monkeypatch.delenv("CPTBENCH_DATA_ROOT", raising=False)
    r = CliRunner().invoke(cli, ["run", "-m", "random", "-t", "refcoco"])
    assert r.exit_code != 0 and "--data-root" in r.output and "synthref" in r.output


def test_bad_task_card_names_file_and_key(tmp_path, monkeypatch):
    cards = tmp_path / "cards"
    p = write_task_card(cards, "broken")
    p.write_text(p.read_text().replace("split_by: unc", "split_by: unc\nspilt: oops"))
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(cards))
    r = CliRunner().invoke(cli, ["run", "-m", "random", "-t", "broken"])
    assert r.exit_code != 0 and "broken.yaml" in r.output and "'spilt'" in r.output and "Did you mean 'split_by'" in r.output
