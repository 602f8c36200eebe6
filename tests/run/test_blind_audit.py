"""The audit learns: data sets with a planted shortcut that none of the eight fixed rules matches
(the target is always the second annotation; always the leftmost box) are caught by the blind
baselines, at the default setting and with ``--bonferroni``; a data set without any shortcut
(random targets) passes. Fixtures: tests/helpers/shortcut_fixture.py, seeded, in RefCOCO's layout.

Not flaky: every file comes from one seeded generator and every fit is deterministic (L-BFGS from
zero weights, seeded tie-breaks), so each test computes the same numbers on every run. Margins
checked when these tests were written: the planted shortcuts score 95-100 % against chance of
about 23 % (interval lows above 83 %); on the clean set no family-wise interval low comes within
7 points of chance (so a handful of flipped near-ties could not flag it). The clean set is audited
with family-wise intervals: with 30 comparisons at 95 % each, a clean set is flagged somewhere by
chance alone more often than not (that is what ``--bonferroni`` is for).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.run.audit import AUDIT_BLIND, AUDIT_HEURISTICS, audit_task
from cptbench.tasks.cards import get_task
from helpers.shortcut_fixture import write_shortcut_fixture

SPLITS = ("val", "testA", "testB")


@pytest.fixture(autouse=True)
def _only_bundled_cards(monkeypatch):
    monkeypatch.delenv("CPTBENCH_TASKS_PATH", raising=False)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("shortcuts")
    return {rule: str(write_shortcut_fixture(base / rule, rule, seed=0)) for rule in ("second", "leftmost", "random")}


def flagged(report, kind=None):
    return {(r.split, r.heuristic) for r in report.flagged if kind is None or r.kind == kind}


def test_second_annotation_is_missed_by_the_fixed_rules_and_caught_by_the_blind_baselines(roots):
    card = get_task("refcoco")
    fixed = audit_task(card, data_root=roots["second"], blind=[])
    assert fixed.ok, flagged(fixed)  # what the issue found: eight rules, exit 0
    first = [r for r in fixed.results if r.heuristic == "first-candidate"]
    assert all(r.accuracy == 0 and r.below for r in first)  # the target is never first: below, not flagged

    report = audit_task(card, data_root=roots["second"])
    assert flagged(report) == {(s, b) for s in SPLITS for b in AUDIT_BLIND}
    for r in report.results:
        if r.kind == "blind":
            assert r.accuracy == 100.0 and r.ci_low > 90 and 20 < r.chance < 30
    solvable = report.solvable_without_looking()
    assert set(solvable) == set(SPLITS) and all(s["flagged"] and s["accuracy"] == 100.0 for s in solvable.values())


@pytest.mark.parametrize("correction", ["none", "bonferroni"])
def test_leftmost_box_is_caught_also_with_family_wise_intervals(roots, correction):
    card = get_task("refcoco")
    fixed = audit_task(card, data_root=roots["leftmost"], correction=correction, blind=[])
    assert fixed.ok, flagged(fixed)  # no fixed rule is "leftmost"
    report = audit_task(card, data_root=roots["leftmost"], correction=correction)
    assert flagged(report) == {(s, b) for s in SPLITS for b in AUDIT_BLIND}
    expected_level = 0.95 if correction == "none" else 1 - 0.05 / ((len(AUDIT_HEURISTICS) + len(AUDIT_BLIND)) * 3)
    assert report.level == pytest.approx(expected_level)
    assert all(r.accuracy >= 90 for r in report.results if r.kind == "blind")


def test_random_targets_pass(roots):
    report = audit_task(get_task("refcoco"), data_root=roots["random"], correction="bonferroni")
    assert report.ok, [(r.split, r.heuristic, r.accuracy, r.ci_low, r.chance) for r in report.flagged]
    assert len(report.results) == 3 * (len(AUDIT_HEURISTICS) + len(AUDIT_BLIND))
    solvable = report.solvable_without_looking()
    assert not any(s["flagged"] for s in solvable.values())
    for s in solvable.values():
        for b in s["baselines"].values():
            assert b["ci_low"] < s["chance"] < b["ci_high"] or b["below"]


def test_cli_exit_codes_and_json(roots, tmp_path):
    out = tmp_path / "audit.json"
    r = CliRunner().invoke(cli, ["data", "audit", "refcoco", "--data-root", roots["leftmost"], "--bonferroni",
                                 "--json", str(out)])
    assert r.exit_code == 1, r.output
    text = " ".join(r.output.split())
    assert "blind-image on val" in text and "solvable without looking" in text, r.output
    report = json.loads(out.read_text())
    assert not report["ok"] and report["correction"] == "bonferroni"
    assert report["solvable_without_looking"]["testA"]["flagged"]
    assert set(report["fitted"]) >= set(AUDIT_BLIND)

    r = CliRunner().invoke(cli, ["data", "audit", "refcoco", "--data-root", roots["leftmost"], "--bonferroni", "--no-blind"])
    assert r.exit_code == 0 and "shortcut audit passed" in r.output, r.output
    r = CliRunner().invoke(cli, ["data", "audit", "refcoco", "--data-root", roots["second"], "--blind", "blind-image",
                                 "--heuristic", "first-candidate"])
    text = " ".join(r.output.split())  # rich wraps long lines at the test console's width
    assert r.exit_code == 1 and "blind-image on testB" in text and "blind-text" not in text, r.output
    r = CliRunner().invoke(cli, ["data", "audit", "refcoco", "--data-root", roots["random"], "--bonferroni"])
    assert r.exit_code == 0 and "shortcut audit passed" in r.output, r.output
