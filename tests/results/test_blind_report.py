"""The report gives each task's blind ceiling from the shortcut audit kept in the results folder."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cptbench.cli.main import cli


def test_the_report_shows_the_kept_audits_blind_ceiling_or_says_how_to_make_one(tmp_path, synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    res = tmp_path / "res"
    r = CliRunner().invoke(cli, ["run", "-m", "random", "-k", "0", "--seeds", "0", "--results", str(res), "--no-leaderboard"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["report", "-o", str(tmp_path / "r.md"), "--results", str(res), "--gallery", "0"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "r.md").read_text()
    assert "no shortcut audit in the results folder" in text and "cptbench data audit synthref" in text

    r = CliRunner().invoke(cli, ["data", "audit", "synthref", "--results", str(res)])
    assert r.exit_code == 1, r.output  # synthref is solvable without looking: the audit says so
    kept = json.loads((res / "audits" / "synthref" / "gt.json").read_text())
    r = CliRunner().invoke(cli, ["report", "-o", str(tmp_path / "r.md"), "--results", str(res), "--gallery", "0"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "r.md").read_text()
    for split, entry in kept["solvable_without_looking"].items():
        text_cell = entry["baselines"]["blind-text"]
        assert f"| synthref | gt | {split} | {entry['chance']:.2f} | {text_cell['accuracy']:.2f} [" in text
    assert "yes: a blind baseline beats chance" in text and "no shortcut audit" not in text
    html = CliRunner().invoke(cli, ["report", "-o", str(tmp_path / "r.html"), "--results", str(res), "--gallery", "0"])
    assert html.exit_code == 0 and "table class='blind'" in (tmp_path / "r.html").read_text()
