"""Published reference rows: the protocol's numbers, shown beside measured rows, never mixed."""

from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.report.references import published_rows, published_tables


def find(rows, **kw):
    hits = [r for r in rows if all(str(r[k]) == str(v) for k, v in kw.items())]
    assert len(hits) == 1, (kw, hits)
    return float(hits[0]["accuracy"])


def test_rows_carry_the_protocol_numbers():
    rows = published_rows()
    # zero-shot detected table, gt-proposal rows, MDETR, the zero-shot generalists without proposals
    assert len(rows) == 7 * 8 + 2 * 8 + 8 + 2 * 8
    assert find(rows, task="refcoco", split="val", method="CPT-Blk", proposals="det:mattnet") == 26.9
    assert find(rows, task="refcoco+", split="testA", method="CPT-Seg", proposals="det:mattnet") == 35.2
    assert find(rows, task="refcocog", split="test", method="ReCLIP", proposals="det:mattnet") == 59.01
    assert find(rows, task="refcoco", split="testB", method="random", proposals="det:mattnet") == 19.20
    assert find(rows, task="refcoco+", split="testB", method="CPT-adapted", proposals="gt") == 28.74
    assert find(rows, task="refcocog", split="val", method="MDETR") == 83.35
    assert find(rows, task="refcoco+", split="testA", method="Red Circle", proposals="det:mattnet") == 63.9
    assert find(rows, task="refcoco", split="testB", method="Alpha-CLIP in ReCLIP", proposals="det:mattnet") == 50.3
    assert find(rows, task="refcocog", split="val", method="ReCLIP", proposals="gt") == 68.08
    assert find(rows, task="refcoco", split="val", method="CPT-adapted", proposals="det:mattnet") == 23.16
    assert {r["proposals"] for r in rows} == {"det:mattnet", "gt", "n/a (predicts boxes)"}
    assert find(rows, task="refcoco", split="val", method="Kosmos-2") == 52.32
    assert find(rows, task="refcoco+", split="testB", method="Kosmos-2") == 42.24
    assert find(rows, task="refcocog", split="test", method="Kosmos-2") == 61.65
    assert find(rows, task="refcoco", split="testA", method="Florence-2-L") == 61.6
    assert find(rows, task="refcoco+", split="val", method="Florence-2-L") == 53.6
    assert find(rows, task="refcocog", split="val", method="Florence-2-L") == 68.0
    generalists = [r for r in rows if r["method"] in ("Kosmos-2", "Florence-2-L")]
    assert {(r["shots"], r["proposals"]) for r in generalists} == {(0, "n/a (predicts boxes)")}
    assert all("unilm" in r["source"] for r in generalists if r["method"] == "Kosmos-2")
    assert all("model card" in r["source"] for r in generalists if r["method"] == "Florence-2-L")
    assert {r["shots"] for r in rows if r["method"] == "MDETR"} == {"full"}
    assert all(r["proposals"] for r in rows) and all(r["source"] for r in rows)
    # the CPT paper's few-shot table could not be verified: no few-shot published rows
    assert {str(r["shots"]) for r in rows} <= {"0", "full"}


def test_tables_are_marked_published_with_their_proposal_setting():
    titles = [t.title for t in published_tables(["refcoco"])]
    assert titles and all(t.startswith("PUBLISHED (not measured here): refcoco, proposals ") for t in titles)
    assert any("det:mattnet" in t for t in titles) and any(t.endswith("proposals gt") for t in titles)


def test_leaderboard_published_prints_both(tmp_path, synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    res = tmp_path / "res"
    r = CliRunner().invoke(cli, ["run", "-m", "random", "-k", "0", "--seeds", "0", "--limit", "5",
                                 "--results", str(res)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["leaderboard", "--results", str(res), "--all-published"])  # synthref has none of its own
    assert r.exit_code == 0, r.output
    assert "synthref (proposals: gt" in r.output and "PUBLISHED (not measured here)" in r.output
    assert "det:mattnet" in r.output and "proposals gt" in r.output
    # published numbers never enter the measured CSV
    assert "ReCLIP" not in (res / "leaderboard.csv").read_text()
