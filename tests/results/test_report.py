"""compare / plot / report / errors / runs / leaderboard formats, on a synthetic results store over the tiny
refer fixture (real example ids and candidates, made-up predictions: no model runs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from cptbench.report.aggregate import aggregate
from cptbench.report.tables import CSV_SCHEMA_VERSION
from cptbench.cli.main import cli
from cptbench.results.records import RunRecord
from cptbench.results.store import ResultsStore, read_jsonl
from record_fixture import make_record
from refer_fixture import write_refer_fixture, write_task_card
from results_fixture import CPT_CONFIG, load_splits, study, write_runs


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    root = write_refer_fixture(tmp / "data")
    write_task_card(tmp / "cards")
    old = os.environ.get("CPTBENCH_TASKS_PATH")
    os.environ["CPTBENCH_TASKS_PATH"] = str(tmp / "cards")
    _, splits = load_splits("toyref", root)
    yield tmp, root, splits
    if old is None:
        os.environ.pop("CPTBENCH_TASKS_PATH", None)
    else:
        os.environ["CPTBENCH_TASKS_PATH"] = old


@pytest.fixture(scope="module")
def results(toy_env):
    tmp, root, splits = toy_env
    store = ResultsStore(tmp / "res")
    ids = study(store, splits)
    return store, root, ids


@pytest.fixture
def scratch(results, tmp_path):
    """A private copy of the study store (for commands that change it)."""
    store, root, ids = results
    shutil.copytree(store.root, tmp_path / "res")
    return ResultsStore(tmp_path / "res"), root, ids


def invoke(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def seed_acc(store, method, split, shots):
    return {r.seed: r.accuracy for r in store.records() if r.method == method and r.split == split and r.shots == shots}


# -- compare -------------------------------------------------------------------------------------
def test_compare_seed_paired_matches_scipy(results):
    store, _, _ = results
    out = invoke("compare", "cpt-blk", "ft", "-k", "1", "--results", store.root, "--format", "json")
    doc = json.loads(out)
    val = next(s for s in doc["splits"] if s["split"] == "val")
    a, b = seed_acc(store, "cpt-blk", "val", 1), seed_acc(store, "ft", "val", 1)
    diffs = np.array([a[s] - b[s] for s in sorted(a)])
    ref = sps.ttest_rel([a[s] for s in sorted(a)], [b[s] for s in sorted(b)])
    assert val["seed_test"]["t_p"] == pytest.approx(ref.pvalue)
    assert val["seed_test"]["diff_mean"] == pytest.approx(diffs.mean())
    assert val["seed_test"]["cohen_dz"] == pytest.approx(diffs.mean() / diffs.std(ddof=1))
    assert val["expression_test"] is None and val["differences"] == []
    (head,) = doc["headlines"]
    gains = [s["a_mean"] - s["b_mean"] for s in doc["splits"]]
    assert head["gain_mean"] == pytest.approx(np.mean(gains))
    rsd = lambda v: np.std(v) / np.mean(v)  # noqa: E731
    per = []
    for split in ("val", "testA", "testB"):
        per.append(1 - rsd(list(seed_acc(store, "cpt-blk", split, 1).values())) / rsd(list(seed_acc(store, "ft", split, 1).values())))
    assert head["rsd_reduction_mean"] == pytest.approx(np.mean(per))
    text = invoke("compare", "cpt-blk", "ft", "-k", "1", "--results", store.root)
    assert "paired over seeds (5 shared seeds" in text and "headline toyref k=1" in text
    assert "mean over splits of 1 - RSD_A/RSD_B" in text and "no two-sided permutation or Wilcoxon p can be below 0.0625" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_compare_zero_shot_uses_expressions_and_flags_mismatches(results):
    store, _, _ = results
    doc = json.loads(invoke("compare", "cpt-blk", "random", "-k", "0", "--results", store.root, "--format", "json"))
    val = next(s for s in doc["splits"] if s["split"] == "val")
    e = val["expression_test"]
    def correct(method):
        rec = next(r for r in store.records() if r.method == method and r.split == "val" and r.shots == 0 and r.seed == 0)
        return {p["example_id"]: p["correct"] for p in read_jsonl(store.root / rec.predictions_path)}

    pa, pb = correct("cpt-blk"), correct("random")
    a_only = sum(pa[i] and not pb[i] for i in pa)
    b_only = sum(pb[i] and not pa[i] for i in pa)
    assert (e["a_only"], e["b_only"], e["n"]) == (a_only, b_only, len(pa))
    assert e["mcnemar_p"] == pytest.approx(sps.binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0)
    assert any(d.startswith("model: tiny vs none") for d in val["differences"])
    assert any("paired on the 1 shared seed" in n for n in val["notes"])
    text = invoke("compare", "cpt-blk", "random", "-k", "0", "--results", store.root)
    assert "paired over expressions" in text and "differs: model: tiny vs none" in text


def test_compare_flags_data_and_limit_differences(scratch):
    store, root, _ = scratch
    _, splits = load_splits("toyref", root)
    write_runs(store, splits, task="toyref", method="cpt-seg", config=CPT_CONFIG, shots=1, seeds=[0, 1, 2], p_right=0.6,
               data_fingerprint="data-other", limit=3)
    doc = json.loads(invoke("compare", "cpt-seg", "ft", "-k", "1", "--results", store.root, "--format", "json"))
    diffs = " ".join(doc["splits"][0]["differences"])
    assert "data content (fingerprint): data-other vs data0" in diffs and "limit (expressions per split): 3 vs all" in diffs
    assert any("A has seeds 0,1,2, B has 0,1,2,3,4: paired on the 3 shared seed(s)" in n for n in doc["splits"][0]["notes"])


def test_two_configs_are_compared_by_label(scratch):
    store, root, _ = scratch
    _, splits = load_splits("toyref", root)
    write_runs(store, splits, task="toyref", method="cpt-blk", config={**CPT_CONFIG, "score": "auto-safe"}, shots=1,
               seeds=[0, 1, 2, 3, 4], p_right=0.5)
    # the default config keeps the plain name; the other is named by the option that differs from the defaults
    out = invoke("compare", "cpt-blk", "cpt-blk[score=auto-safe]", "-k", "1", "--results", store.root)
    assert "A = cpt-blk " in out and "B = cpt-blk[score=auto-safe]" in out and "differs" not in out
    assert "A = cpt-blk " in invoke("compare", "cpt", "cpt-blk[score=auto-safe]", "-k", "1", "--results", store.root)
    listed = invoke("runs", "--results", store.root, "-m", "cpt-blk[score=auto-safe]", "--split", "val")
    assert "5 of 99 runs" in listed and "cpt-blk[score=auto-safe]" in listed


def test_compare_refuses_unknown_and_identical(results):
    store, _, _ = results
    r = CliRunner().invoke(cli, ["compare", "cpt-blkk", "ft", "--results", str(store.root)])
    assert r.exit_code == 2 and "Did you mean 'cpt-blk'" in r.output
    r = CliRunner().invoke(cli, ["compare", "cpt-blk", "cpt", "--results", str(store.root)])
    assert r.exit_code == 2 and "same runs" in r.output
    r = CliRunner().invoke(cli, ["compare", "cpt-blk", "ft", "-k", "7", "--results", str(store.root)])
    assert r.exit_code == 2 and "has no runs with the filters" in r.output


# -- plots ---------------------------------------------------------------------------------------
def test_plot_series_and_svg(results, tmp_path):
    from cptbench.report.plots import all_figures, save

    store, _, _ = results
    records = store.records()
    rows = aggregate(records)
    figs = {kind: (fig, series) for kind, _, fig, series in all_figures(store, records, rows)}
    assert set(figs) == {"shots", "rsd", "candidates"}
    fig, series = figs["shots"]
    cpt = next(s for s in series if s["label"] == "cpt-blk" and s["split"] == "val")
    by_k = {r.shots: r for r in rows if r.method == "cpt-blk" and r.split == "val"}
    assert cpt["shots"] == [0, 1, 2] and cpt["mean"] == pytest.approx([by_k[k].acc_mean for k in (0, 1, 2)])
    assert cpt["n_seeds"] == [1, 5, 5] and len(cpt["seed_points"]) == 10 and not cpt["level"]
    assert sorted(y for _, y in cpt["seed_points"]) == sorted(
        list(seed_acc(store, "cpt-blk", "val", 1).values()) + list(seed_acc(store, "cpt-blk", "val", 2).values()))
    rnd = next(s for s in series if s["label"] == "random" and s["split"] == "testB")
    assert rnd["level"] and rnd["mean"] == pytest.approx([np.mean(list(seed_acc(store, "random", "testB", 0).values()))])
    assert rnd["reference"] == "chance"  # drawn as a reference line, which does not set the scale
    assert {s["split"] for s in series} == {"val", "testA", "testB"}
    paths = {p.suffix: p for p in save(fig, tmp_path / "shots")}
    svg = paths[".svg"].read_text()
    for sid in ("mean-val-cpt-blk", "band-val-cpt-blk", "seeds-val-cpt-blk", "mean-testB-random", "band-testA-ft"):
        assert f'id="{sid}"' in svg, sid
    assert "cpt-blk" in svg and "chance (mean 1/candidates)" in svg
    assert paths[".png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[".pdf"].read_bytes()[:5] == b"%PDF-"
    _, rsd = figs["rsd"]
    ft = next(s for s in rsd if s["label"] == "ft" and s["split"] == "testA")
    assert ft["shots"] == [1, 2]
    assert ft["rsd_percent"] == pytest.approx([100 * r.rsd for r in rows if r.method == "ft" and r.split == "testA"
                                               and r.shots > 0])
    _, cands = figs["candidates"]
    got = {s["label"]: s for s in cands if s["kind"] == "candidates"}
    assert set(got) == {"cpt-blk", "ft", "random", "oracle*"}  # k=1 rows plus the methods that do not train
    pooled = [p["correct"] for r in records if r.method == "cpt-blk" and r.shots == 1
              for p in read_jsonl(store.root / r.predictions_path)]
    assert got["cpt-blk"]["bins"] == [[3, 3]] and got["cpt-blk"]["trials"] == [len(pooled)]
    assert got["cpt-blk"]["accuracy"] == pytest.approx([100 * np.mean(pooled)])
    assert got["oracle*"]["accuracy"] == [100.0]


def test_plot_cli_writes_png_pdf_and_svg(results, tmp_path):
    store, _, _ = results
    out = tmp_path / "plots"
    invoke("plot", "--results", store.root, "--out", out, "-m", "cpt-blk,ft", "--kind", "shots,rsd")
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"toyref_{kind}_vs_shots.{ext}" for kind in ("accuracy", "rsd") for ext in ("pdf", "png", "svg")]
    svg = (out / "toyref_accuracy_vs_shots.svg").read_text()
    assert 'id="mean-val-ft"' in svg and "random" not in svg  # only the methods asked for
    r = CliRunner().invoke(cli, ["plot", "--results", str(store.root), "--kind", "pie"])
    assert r.exit_code == 2 and "choose from shots, rsd, candidates" in r.output


# -- errors --------------------------------------------------------------------------------------
def test_errors_lists_expressions_wrong_at_every_seed(results, tmp_path):
    store, root, ids = results
    csv_path = tmp_path / "hard.csv"
    out = invoke("errors", "-m", "cpt-blk", "-t", "toyref", "--split", "val", "--results", store.root,
                 "--data-root", root, "--csv", csv_path)
    (hard,) = ids["hard"]
    rows = [line.split(",") for line in csv_path.read_text().splitlines()]
    header, body = rows[0], rows[1:]
    got = {r[header.index("example_id")] for r in body}
    wrong_everywhere = None
    for r in store.records():
        if r.method == "cpt-blk" and r.split == "val" and r.shots == 1:
            wrong = {p["example_id"] for p in read_jsonl(store.root / r.predictions_path) if not p["correct"]}
            wrong_everywhere = wrong if wrong_everywhere is None else wrong_everywhere & wrong
    assert hard in got and got == wrong_everywhere
    first = dict(zip(header, body[0]))
    assert first["n_wrong"] == first["n_seeds"] == "5" and float(first["margin_mean"]) > 0
    assert first["true_box"] and first["chosen_box"] and first["expression"].startswith("the thing number")
    assert "wrong at all 5 seed(s)" in out and hard in out


# -- runs ----------------------------------------------------------------------------------------
def test_runs_filters_and_moves_records_aside(scratch):
    store, _, _ = scratch
    before = store.records()
    out = invoke("runs", "--results", store.root, "-m", "ft", "-k", "1", "--split", "val")
    assert "5 of 84 runs" in out and max(len(line) for line in out.splitlines()) <= 80
    r = CliRunner().invoke(cli, ["runs", "--results", str(store.root), "-m", "ft", "-k", "1", "--delete"])
    assert r.exit_code == 2 and "--yes" in r.output and len(store.records()) == len(before)
    invoke("runs", "--results", store.root, "-m", "ft", "-k", "1", "--seed", "0,1", "--delete", "--yes")
    after = store.records()
    gone = {x.run_id for x in before} - {x.run_id for x in after}
    assert len(after) == len(before) - 6 and len(gone) == 6
    aside = [RunRecord.from_json(d) for d in read_jsonl(store.root / "runs.deleted.jsonl")]
    assert {x.run_id for x in aside} == gone
    for rid in gone:
        assert not (store.root / "predictions" / f"{rid}.jsonl").exists()
        assert (store.root / "deleted" / "predictions" / f"{rid}.jsonl").is_file()
    assert "ft,toyref" not in (store.root / "leaderboard.csv").read_text()  # leaderboard rebuilt from what is left
    board = [line.split(",") for line in (store.root / "leaderboard.csv").read_text().splitlines()]
    ft1 = [b for b in board if b[2] == "ft" and b[5] == "1"]
    assert ft1 and all(b[6] == "3" for b in ft1)  # 3 seeds left at k=1
    out = invoke("runs", "--results", store.root, "--option", "score=auto", "--until", "2025-01-01")
    assert "9 of 78 runs" in out  # cpt-blk seed 0 (created 2025-01-01) at k = 0, 1, 2 on three splits


def test_move_records_keeps_other_lines_byte_for_byte(scratch):
    store, _, _ = scratch
    text = store.runs_path.read_text().splitlines(keepends=True)
    victim = json.loads(text[3])["run_id"]
    moved = store.move_records([victim, "no-such-run"], store.root / "aside.jsonl")
    assert moved == [text[3]]
    assert store.runs_path.read_text() == "".join(text[:3] + text[4:])
    assert (store.root / "aside.jsonl").read_text() == text[3]


# -- leaderboard formats --------------------------------------------------------------------------
def test_leaderboard_formats(results):
    store, _, _ = results
    md = invoke("leaderboard", "--results", store.root, "--format", "md")
    assert "| model | method | shots | seeds | val | testA | testB |" in md and "0 (zero-shot)" in md
    csv_text = invoke("leaderboard", "--results", store.root, "--format", "csv").split("wrote")[0]
    assert csv_text.splitlines()[0].endswith(",label,schema_version")
    doc = json.loads(invoke("leaderboard", "--results", store.root, "--format", "json").split("\nwrote")[0])
    assert doc["schema_version"] == CSV_SCHEMA_VERSION and len(doc["rows"]) == len(aggregate(store.records()))
    tex = invoke("leaderboard", "--results", store.root, "--format", "latex")
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and "oracle*" in tex


def test_published_only_for_tasks_present(tmp_path):
    store = ResultsStore(tmp_path / "res")
    store.append_record(make_record(run_id="a", task="refcocog", split="val", shots=0))
    out = invoke("leaderboard", "--results", store.root, "--published")
    assert "PUBLISHED (not measured here): refcocog" in out and "refcoco, proposals" not in out
    out = invoke("leaderboard", "--results", store.root, "--all-published")
    assert "PUBLISHED (not measured here): refcoco, proposals" in out
    store2 = ResultsStore(tmp_path / "res2")
    store2.append_record(make_record(run_id="b", task="toyref", split="val", shots=0))
    r = CliRunner().invoke(cli, ["leaderboard", "--results", str(store2.root), "--published"])
    assert r.exit_code == 0 and "PUBLISHED" not in r.output and "no published numbers for toyref" in r.output


def test_list_tasks_fits_80_columns():
    r = CliRunner().invoke(cli, ["list", "tasks"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and len(lines) < 40
    assert "dandelin/vilt-b32-mlm" in r.output and "refer:refcocog(umd)" in r.output


def test_new_commands_have_help_and_stay_light():
    for c in ("compare", "plot", "report", "errors", "runs"):
        r = CliRunner().invoke(cli, [c, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, c
    code = ("import sys; from cptbench.cli.main import cli\n"
            "for c in ['compare', 'plot', 'report', 'errors', 'runs']:\n"
            "    try:\n        cli.main([c, '--help'], prog_name='cptbench')\n    except SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([os.sys.executable, "-c", code], check=True, capture_output=True)


# -- report --------------------------------------------------------------------------------------
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.images, self.published_rows, self.figures = [], [], 0, []
        self.ready = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "row":
            self.rows.append((a["data-method"], int(a["data-shots"]), a["data-seeds"], a.get("data-zero-shot")))
        if tag == "tr" and a.get("class") == "published-row":
            self.published_rows += 1
        if tag == "img":
            self.images.append(a)
        if tag == "figure":
            self.figures.append(a.get("class"))
        if tag == "body" and a.get("data-ready") == "yes":
            self.ready = True


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


EXPECTED_ROWS = {("cpt-blk", 0, "1", "yes"), ("cpt-blk", 1, "5", None), ("cpt-blk", 2, "5", None), ("ft", 0, "1", "yes"),
                 ("ft", 1, "5", None), ("ft", 2, "5", None), ("random", 0, "5", "yes"), ("oracle*", 0, "1", "yes")}


@pytest.fixture(scope="module")
def report_html(results, tmp_path_factory):
    store, root, _ = results
    out = tmp_path_factory.mktemp("html") / "report.html"
    log = invoke("report", "--results", store.root, "-o", out, "--data-root", root)
    assert "3 plots, 1 comparisons" in log
    return out


def test_report_html_has_rows_plots_comparisons_gallery_and_provenance(report_html, results):
    store, _, ids = results
    text = report_html.read_text()
    page = _parse(text)
    assert set(page.rows) == EXPECTED_ROWS
    plots = [i for i in page.images if i.get("class") == "plot"]
    gallery = [i for i in page.images if i.get("class") == "gallery-img"]
    assert sorted(i["data-kind"] for i in plots) == ["candidates", "rsd", "shots"]
    assert all(i["src"].startswith("data:image/png;base64,") for i in page.images)
    assert 3 <= len(gallery) <= 6 and "right" in page.figures and "wrong" in page.figures
    assert "src=\"http" not in text and "<link" not in text  # self-contained
    assert 'data-a="cpt-blk" data-b="ft"' in text and "headline</b> toyref k=1: gain" in text
    assert "cptbench run -t toyref -m cpt-blk -k 0,1,2 --seeds 0,1,2,3,4 --model tiny" in text
    assert "torch 2.13.0" in text and "abc1234" in text  # versions and git revision behind the numbers
    assert text.count('href="#c') == len(EXPECTED_ROWS)  # every row links to its command


def test_report_marks_published_rows_and_explains_a_missing_gallery(tmp_path):
    store = ResultsStore(tmp_path / "res")
    for s in (0, 1):
        store.append_record(make_record(run_id=f"x{s}", task="refcoco", split="val", seed=s, shots=1, accuracy=30.0 + s,
                                        method="cpt-blk", method_config=CPT_CONFIG))
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", "--results", str(store.root), "-o", str(out), "--data-root", str(tmp_path / "nope")])
    assert r.exit_code == 0, r.output
    page = _parse(out.read_text())
    assert page.published_rows > 0 and "PUBLISHED (not measured here): refcoco, proposals" in out.read_text()
    assert "refcocog" not in out.read_text()  # only the tasks in the results
    assert "refcoco: no gallery" in out.read_text() and "no gallery" in r.output


def test_report_markdown_writes_images_beside_it(results, tmp_path):
    store, root, _ = results
    out = tmp_path / "report.md"
    invoke("report", "--results", store.root, "-o", out, "--data-root", root, "--compare", "cpt-blk:random")
    md = out.read_text()
    assert "| model | method | k | seeds | val | testA | testB | command |" in md
    files = {p.name for p in (tmp_path / "report_files").iterdir()}
    assert {"toyref_accuracy_vs_shots.png", "toyref_accuracy_vs_shots.svg", "gallery_toyref_0.png"} <= files
    assert "](report_files/toyref_accuracy_vs_shots.png)" in md and "### A = cpt-blk vs B = random" in md
    assert re.search(r"differs: model: tiny vs none", md)


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_browser() is None, reason="no chromium on this machine (.ci/install-browser installs Debian's)")
def test_report_renders_in_headless_chromium(report_html):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with tempfile.TemporaryDirectory() as profile:
        res = subprocess.run([_browser(), *flags, f"--user-data-dir={profile}", "--virtual-time-budget=10000",
                              "--dump-dom", report_html.as_uri()], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    page = _parse(res.stdout)
    assert page.ready, "the page's load handler did not run"
    assert set(page.rows) == EXPECTED_ROWS
    assert len(page.images) >= 6 and all(i.get("data-rendered") == "yes" for i in page.images), \
        [i.get("alt") for i in page.images if i.get("data-rendered") != "yes"]


# -- review fixes ---------------------------------------------------------------------------------
def test_leaderboard_of_one_task_prints_the_labels_the_files_hold(tmp_path):
    store = ResultsStore(tmp_path / "res")
    for i, (task, score) in enumerate((("t1", "auto"), ("t1", "safe"), ("t2", "safe"))):
        store.append_record(make_record(run_id=f"r{i}", task=task, method="cpt-blk", method_config={"score": score},
                                        method_config_hash=score, model="tiny"))
    # labels are made per task: t1 tells its two configs apart by score, t2's one config is plain cpt-blk
    md = invoke("leaderboard", "--results", store.root, "-t", "t2", "--format", "md")
    assert "| tiny | cpt-blk |" in md
    assert "cpt-blk" in invoke("leaderboard", "--results", store.root, "-t", "t2")
    csv_text = (store.root / "leaderboard.csv").read_text()
    files_md = (store.root / "leaderboard.md").read_text()
    assert "cpt-blk[score=safe]" in csv_text and "| tiny | cpt-blk |" in files_md and "| tiny | cpt-blk[score=safe] |" in files_md
    r = CliRunner().invoke(cli, ["leaderboard", "--results", str(store.root), "-t", "nosuch"])
    assert r.exit_code == 1 and "no runs of task(s) nosuch" in r.output and "it holds t1, t2" in r.output
    r = CliRunner().invoke(cli, ["plot", "--results", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "no finished runs in" in r.output and "start with `cptbench run`" in r.output


def test_compare_json_stays_json_for_a_split_without_expressions(tmp_path):
    store = ResultsStore(tmp_path / "res")
    for m, base in (("cpt-blk", 40.0), ("ft", 30.0)):
        for seed in (0, 1, 2):
            store.append_record(make_record(run_id=f"{m}v{seed}", method=m, method_config_hash=m, model="tiny", shots=1,
                                            seed=seed, split="val", accuracy=base + seed * (2 if m == "cpt-blk" else 1)))
            store.append_record(make_record(run_id=f"{m}e{seed}", method=m, method_config_hash=m, model="tiny", shots=1,
                                            seed=seed, split="testA", accuracy=None, n=0, n_correct=0))

    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    doc = json.loads(invoke("compare", "cpt-blk", "ft", "--results", store.root, "--format", "json"), parse_constant=refuse)
    by = {s["split"]: s for s in doc["splits"]}
    assert by["val"]["seed_test"]["diff_mean"] == pytest.approx(11.0)
    empty = by["testA"]
    assert empty["a_mean"] is None and empty["a_values"] == {"0": None, "1": None, "2": None}
    assert empty["seed_test"]["perm_p"] is None and empty["seed_test"]["t_p"] is None  # not a p of 0 from NaN
    assert doc["headlines"][0]["gain"]["testA"] is None


def test_gallery_shows_a_choice_whose_score_is_infinite(scratch):
    from cptbench.report.data import open_task
    from cptbench.report.document import _gallery_html
    from cptbench.report.gallery import build_gallery, pick_run

    store, root, _ = scratch
    records = store.records()
    rows = aggregate(records)
    _, rec = pick_run(rows, records)
    path = store.root / rec.predictions_path
    preds = read_jsonl(path)
    for p in preds:  # an +inf score is stored as null (JSON has no infinity)
        p["scores"][p["pred"]] = None
    path.write_text("".join(json.dumps(p) + "\n" for p in preds))
    # the run as it would have been recorded with these scores (readers verify the file's sha256)
    import dataclasses
    import hashlib

    store.move_records([rec.run_id], store.root / "aside.jsonl")
    store.append_record(dataclasses.replace(rec, predictions_sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    records = store.records()
    _, ds = open_task("toyref", root)
    g = build_gallery(store, records, rows, ds, n_right=2, n_wrong=2)
    assert g.run_id == rec.run_id and g.items and all(it.score == float("inf") for it in g.items)
    assert "score inf" in _gallery_html(g)


def test_predictions_are_read_once_per_report(results, monkeypatch):
    from cptbench.report import selection

    store, _, _ = results
    rec = store.records()[0]
    reads = []
    real = store.read_predictions
    monkeypatch.setattr(store, "read_predictions", lambda r: reads.append(r) or real(r))
    with selection.predictions_cache():
        first = selection.load_predictions(store, rec)
        assert selection.load_predictions(store, rec) is first and len(reads) == 1
    selection.load_predictions(store, rec)
    assert len(reads) == 2  # no cache outside a report


def test_runs_checks_every_option_even_when_nothing_is_selected(results):
    store, _, _ = results
    r = CliRunner().invoke(cli, ["runs", "--results", str(store.root), "-t", "nosuch", "-k", "x"])
    assert r.exit_code == 2 and "--shots" in r.output
    r = CliRunner().invoke(cli, ["runs", "--results", str(store.root), "-m", "nosuch"])
    assert r.exit_code == 2 and "unknown method in the results: 'nosuch'" in r.output
