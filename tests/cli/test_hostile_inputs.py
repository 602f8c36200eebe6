"""Broken and hostile inputs: every one ends in one clear message that names the file or record and
the fix, with exit code 2 for usage and 1 for data, and never a Python traceback; nothing is trained
before the input is checked.

Each case is (id, setup(world) -> extra CLI args, expected exit code, text the message must contain).
``world`` is a fresh tiny refer-layout dataset, a task card folder and a results folder.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from refer_fixture import write_refer_fixture, write_task_card


@dataclass
class World:
    tmp: Path
    root: Path
    cards: Path
    res: Path

    @property
    def refs_file(self) -> Path:
        return self.root / "toyref" / "refs(unc).p"

    @property
    def instances_file(self) -> Path:
        return self.root / "toyref" / "instances.json"

    def images(self) -> list[Path]:
        return sorted((self.root / "images" / "train2014").glob("*.png"))

    def val_image(self) -> Path:  # the first val image (image ids 1-6 are train)
        return self.root / "images" / "train2014" / "COCO_train2014_000000000007.png"

    def edit_refs(self, fn) -> None:
        refs = pickle.loads(self.refs_file.read_bytes())
        fn(refs)
        self.refs_file.write_bytes(pickle.dumps(refs))

    def edit_instances(self, fn) -> None:
        data = json.loads(self.instances_file.read_text())
        fn(data)
        self.instances_file.write_text(json.dumps(data))

    def val_ref(self, refs) -> dict:
        return next(r for r in refs if r["split"] == "val")

    def val_ann(self, data) -> dict:
        return next(a for a in data["annotations"] if a["image_id"] == 7)


def base(w: World, *extra: str, m: str = "random", k: str = "0") -> list[str]:
    return ["run", "-m", m, "-k", k, "--seeds", "0", "-t", "toyref", "--data-root", str(w.root),
            "--results", str(w.res), "--no-leaderboard", *extra]


def then(*steps):
    """Run the setup steps (their values are ignored) and return the last one: the CLI args."""
    return steps[-1]


def _unsafe_pickle(w):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(w.tmp / "pwned"),))

    w.refs_file.write_bytes(pickle.dumps([Evil()]))


def _read_only(w):
    w.res.mkdir()
    os.chmod(w.res, 0o500)


def _detections(w, records) -> Path:
    f = w.tmp / "dets.json"
    f.write_text(records if isinstance(records, str) else json.dumps(records))
    return f


def _record_line(w, line: str) -> None:
    w.res.mkdir(exist_ok=True)
    (w.res / "runs.jsonl").write_text(line)


def _finished(w) -> None:
    r = CliRunner().invoke(cli, base(w))
    assert r.exit_code == 0, r.output


def _conflict(w) -> None:
    _finished(w)
    lines = (w.res / "runs.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    n_correct = rec["n_correct"] - 1 if rec["n_correct"] else rec["n_correct"] + 1  # a different, possible result
    rec["accuracy"], rec["n_correct"] = 100.0 * n_correct / rec["n"], n_correct
    (w.res / "runs.jsonl").write_text("\n".join(lines + [json.dumps(rec)]) + "\n")


def _manifest(w, text: str | None = None, fn=None) -> None:
    r = CliRunner().invoke(cli, base(w, k="1"))
    assert r.exit_code == 0, r.output
    m = w.res / "splits" / "toyref" / "k1_s0.json"
    if text is not None:
        m.write_text(text)
    else:
        data = json.loads(m.read_text())
        fn(data)
        m.write_text(json.dumps(data))


def _other_draw(data) -> None:
    """A valid manifest that a fresh draw does not give (the data changed since it was written)."""
    from cptbench.data.sampling import manifest_digest

    data["examples"] = [{"ref_id": 999, "sent_id": 9}]
    data["sha256"] = manifest_digest(data["task"], data["shots"], data["seed"], [(999, 9)])


def _card(w, extra: str) -> None:
    p = w.cards / "toyref.yaml"
    p.write_text(p.read_text() + extra)


def _config(w, text: str) -> Path:
    f = w.tmp / "study.yaml"
    f.write_text(text)
    return f


def _truncate_png(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


CASES = [
    # --- images (checked before anything runs) --------------------------------------------------
    ("image-missing", lambda w: then(w.val_image().unlink(), base(w)), 1, "COCO_train2014_000000000007.png: image file not found"),
    ("image-zero-bytes", lambda w: then(w.val_image().write_bytes(b""), base(w)), 1, "000000000007.png: image file is empty"),
    ("image-truncated", lambda w: then(_truncate_png(w.val_image()), base(w)), 1, "000000000007.png: "),
    ("image-not-an-image", lambda w: then(w.val_image().write_text("<html>404</html>"), base(w)), 1, "000000000007.png: not a readable image"),
    ("image-wrong-size", lambda w: then(w.edit_instances(lambda d: d["images"][6].update(width=99)), base(w)), 1, "annotations say 99x32"),
    ("image-is-a-folder", lambda w: then(w.val_image().unlink(), w.val_image().mkdir(), base(w)), 1, "000000000007.png"),
    ("train-image-missing", lambda w: then([p.unlink() for p in w.images()[:6]], base(w, k="1")), 1, "image file not found"),
    # --- refs pickle ------------------------------------------------------------------------------
    ("sentence-without-sent-id", lambda w: then(w.edit_refs(lambda r: w.val_ref(r)["sentences"][0].pop("sent_id")), base(w)), 1, "has no 'sent_id'"),
    ("sent-id-not-integer", lambda w: then(w.edit_refs(lambda r: w.val_ref(r)["sentences"][0].update(sent_id="x")), base(w)), 1, "sent_id 'x'"),
    ("ref-without-ann-id", lambda w: then(w.edit_refs(lambda r: w.val_ref(r).pop("ann_id")), base(w)), 1, "lacks key(s) ['ann_id']"),
    ("ref-unknown-annotation", lambda w: then(w.edit_refs(lambda r: w.val_ref(r).update(ann_id=999999)), base(w)), 1, "annotation 999999"),
    ("ref-unknown-image", lambda w: then(w.edit_refs(lambda r: w.val_ref(r).update(image_id=424242)), base(w)), 1, "image 424242"),
    ("ref-without-sentences", lambda w: then(w.edit_refs(lambda r: w.val_ref(r).update(sentences=[])), base(w)), 1, "has no sentences"),
    ("duplicate-ref-id", lambda w: then(w.edit_refs(lambda r: r.append(dict(w.val_ref(r)))), base(w)), 1, "appears more than once"),
    ("refs-not-a-list", lambda w: then(w.refs_file.write_bytes(pickle.dumps({"a": 1})), base(w)), 1, "expected a list of refs"),
    ("refs-unsafe-pickle", lambda w: then(_unsafe_pickle(w), base(w)), 1, "refs(unc).p"),
    ("refs-truncated", lambda w: then(w.refs_file.write_bytes(w.refs_file.read_bytes()[:40]), base(w)), 1, "refs(unc).p"),
    ("refs-zero-bytes", lambda w: then(w.refs_file.write_bytes(b""), base(w)), 1, "refs(unc).p"),
    ("refs-missing", lambda w: then(w.refs_file.unlink(), base(w)), 1, "refs(unc).p: refs file not found"),
    # --- instances.json -----------------------------------------------------------------------------
    ("instances-not-json", lambda w: then(w.instances_file.write_text("{nope"), base(w)), 1, "instances.json: cannot read COCO instances"),
    ("instances-missing", lambda w: then(w.instances_file.unlink(), base(w)), 1, "instances.json: COCO instances file not found"),
    ("box-zero-width-strict-data", lambda w: then(w.edit_instances(lambda d: w.val_ann(d)["bbox"].__setitem__(2, 0.0)), base(w, "--strict-data")), 1, "zero width or height"),
    ("box-past-the-image-strict-data", lambda w: then(w.edit_instances(lambda d: w.val_ann(d)["bbox"].__setitem__(2, 90.0)), base(w, "--strict-data")), 1, "reaches past the 48x32 image"),
    ("box-negative-height", lambda w: then(w.edit_instances(lambda d: w.val_ann(d)["bbox"].__setitem__(3, -4.0)), base(w)), 1, "negative width or height"),
    ("box-nan", lambda w: then(w.edit_instances(lambda d: w.val_ann(d)["bbox"].__setitem__(0, float("nan"))), base(w)), 1, "NaN or infinite"),
    ("box-outside-image", lambda w: then(w.edit_instances(lambda d: w.val_ann(d)["bbox"].__setitem__(0, 500.0)), base(w)), 1, "lies wholly outside the 48x32 image"),
    ("box-not-four-numbers", lambda w: then(w.edit_instances(lambda d: w.val_ann(d).update(bbox=[1, 2, 3])), base(w)), 1, "annotation"),
    ("empty-expression", lambda w: then(w.edit_refs(lambda r: w.val_ref(r)["sentences"][0].update(sent="  ", raw="")), base(w)), 1, "is empty"),
    # --- proposals ------------------------------------------------------------------------------------
    ("detections-match-no-image", lambda w: base(w, "--proposals", str(_detections(w, [{"box": [1, 1, 5, 5], "image_id": 999}]))), 1, "has no candidate box"),
    ("detections-not-json", lambda w: base(w, "--proposals", str(_detections(w, "[{"))), 1, "dets.json: not valid JSON"),
    ("detections-without-box", lambda w: base(w, "--proposals", str(_detections(w, [{"image_id": 7}]))), 1, "dets.json: detection 0 lacks 'box'"),
    ("detections-non-numeric", lambda w: base(w, "--proposals", str(_detections(w, [{"box": ["a", 1, 2, 3], "image_id": 7}]))), 1, "non-numeric box"),
    ("detections-missing-file", lambda w: base(w, "--proposals", str(w.tmp / "nope.json")), 1, "nope.json: cannot read the proposals file"),
    ("detections-degenerate-box", lambda w: base(w, "--proposals", str(_detections(w, [{"box": [1, 1, -2, 5], "image_id": i} for i in range(7, 14)]))), 1, "degenerate candidate box"),
    ("detections-zero-width-strict-data", lambda w: base(w, "--strict-data", "--proposals", str(_detections(w, [{"box": [1, 1, 0, 5], "image_id": i} for i in range(7, 14)]))), 1, "--strict-data"),
    ("detections-wholly-outside", lambda w: base(w, "--proposals", str(_detections(w, {str(i): [[60, 1, 5, 5]] for i in range(7, 14)}))), 1, "lies wholly outside the 48x32 image"),
    ("detections-plain-list-without-image", lambda w: base(w, "--proposals", str(_detections(w, [[1, 1, 5, 5]]))), 1, "dets.json: detection 0 is a plain list"),
    # --- data root ------------------------------------------------------------------------------------
    ("data-root-missing", lambda w: ["run", "-m", "random", "-k", "0", "-t", "toyref", "--data-root", str(w.tmp / "no-such-dir"), "--results", str(w.res)], 1, "no-such-dir: --data-root does not exist"),
    ("data-root-without-dataset", lambda w: ["run", "-m", "random", "-k", "0", "-t", "toyref", "--data-root", str(w.tmp), "--results", str(w.res)], 1, "refs file not found"),
    # --- results folder -------------------------------------------------------------------------------
    ("results-read-only", lambda w: then(_read_only(w), base(w)), 1, "cannot write to the results folder"),
    ("results-predictions-is-a-file", lambda w: then(w.res.mkdir(), (w.res / "predictions").write_text("x"), base(w)), 1, "predictions: exists but is not a folder"),
    ("results-under-a-file", lambda w: then((w.tmp / "afile").write_text("x"), ["run", "-m", "random", "-k", "0", "-t", "toyref", "--data-root", str(w.root), "--results", str(w.tmp / "afile" / "res")]), 1, "afile/res: cannot write to the results folder"),
    ("results-is-a-file", lambda w: then(w.res.write_text("x"), base(w)), 2, "res' is a file"),
    ("runs-jsonl-bad-line", lambda w: then(_record_line(w, "{broken\n"), base(w)), 1, "runs.jsonl: line 1 is not valid JSON"),
    ("runs-jsonl-record-missing-fields", lambda w: then(_record_line(w, '{"run_id": "x"}\n'), base(w)), 1, "runs.jsonl: line 1: run record lacks"),
    ("runs-jsonl-wrong-type", lambda w: then(_finished(w), _record_line(w, json.dumps({**json.loads((w.res / "runs.jsonl").read_text().splitlines()[0]), "n": "ten"}) + "\n"), base(w)), 1, "field 'n' is str"),
    ("runs-jsonl-conflicting-duplicate", lambda w: then(_conflict(w), base(w)), 1, "lines 1 and 4 are both run"),
    ("manifest-edited", lambda w: then(_manifest(w, fn=lambda d: d["examples"].__setitem__(0, {"ref_id": 999, "sent_id": 9})), base(w, k="1")), 1, "k1_s0.json: unreadable k-shot manifest"),
    ("manifest-from-other-data", lambda w: then(_manifest(w, fn=_other_draw), base(w, k="1")), 1, "k1_s0.json: the saved k-shot manifest"),
    ("manifest-not-json", lambda w: then(_manifest(w, text="{"), base(w, k="1")), 1, "k1_s0.json: unreadable k-shot manifest"),
    # --- command line ---------------------------------------------------------------------------------
    ("shots-more-than-train", lambda w: base(w, k="1000"), 2, "-k 1000 asks for more training expressions than its 'train' split has (24)"),
    ("shots-empty", lambda w: base(w, k=""), 2, "--shots needs at least one integer"),
    ("shots-negative", lambda w: base(w, k="-1"), 2, "--shots must be >= 0"),
    ("shots-not-a-number", lambda w: base(w, k="one"), 2, "--shots must be integers, comma lists or ranges (e.g. 0,1,2 or 0-4), got 'one'"),
    ("seeds-empty", lambda w: base(w, "--seeds", ","), 2, "--seeds needs at least one integer"),
    ("method-unknown", lambda w: base(w, m="radnom"), 2, "Did you mean 'random'"),
    ("method-comma-list-unknown", lambda w: base(w, m="random,orcale"), 2, "Did you mean 'oracle'"),
    ("task-unknown", lambda w: ["run", "-m", "random", "-t", "toyrf", "--results", str(w.res)], 2, "Did you mean 'toyref'"),
    ("split-unknown", lambda w: base(w, "--split", "tset"), 2, "eval split of task 'toyref'"),
    ("set-unknown-option", lambda w: base(w, "--set", "stpes=3", m="ft"), 2, "Did you mean 'steps'"),
    ("set-bad-value", lambda w: base(w, "--set", "steps=abc", m="ft"), 2, "option 'steps' expects int, got 'abc'"),
    ("set-scope-not-asked", lambda w: base(w, "--set", "cpt-seg.alpha=0.3"), 2, "--set cpt-seg.alpha: method 'cpt-seg' is not among the methods of this command"),
    ("limit-zero", lambda w: base(w, "--limit", "0"), 2, "--limit"),
    ("config-unknown-option", lambda w: ["--config", str(_config(w, "run: {method: [random], sheets: [0]}\n"))] + base(w), 2, "unknown option in section 'run': 'sheets'. Did you mean"),
    ("config-unknown-command", lambda w: ["--config", str(_config(w, "rnu: {}\n"))] + base(w), 2, "Did you mean 'run'"),
    ("config-duplicate-key", lambda w: ["--config", str(_config(w, "run:\n  seeds: '0'\n  seeds: '1'\n"))] + base(w), 2, "key 'seeds' appears twice"),
    ("card-method-defaults-misspelt", lambda w: then(_card(w, "method_defaults:\n  cpt-blck: {steps: 3}\n"), base(w)), 2, "Did you mean 'cpt-blk'"),
    ("card-method-defaults-bad-option", lambda w: then(_card(w, "method_defaults:\n  cpt: {stpes: 3}\n"), base(w)), 2, "toyref.yaml: method_defaults.cpt"),
    ("card-duplicate-key", lambda w: then(_card(w, "version: 2\n"), base(w)), 2, "toyref.yaml: key 'version' appears twice"),
    ("tasks-path-missing", lambda w: then(os.environ.__setitem__("CPTBENCH_TASKS_PATH", str(w.tmp / "no-cards")), base(w)), 2, "no-cards"),
    ("model-missing-folder", lambda w: base(w, "--model", str(w.tmp / "no-such-model"), m="cpt"), 2, "no-such-model: no such folder"),
    ("model-is-a-file", lambda w: then((w.tmp / "m.bin").write_text("x"), base(w, "--model", str(w.tmp / "m.bin"), m="cpt")), 2, "m.bin is a file"),
    ("model-folder-without-config", lambda w: then((w.tmp / "m").mkdir(), base(w, "--model", str(w.tmp / "m"), m="cpt")), 2, "not a model folder (no config.json)"),
    ("model-unknown-hub-id-offline", lambda w: base(w, "--model", "nobody/no-such-model", m="cpt"), 2, "nobody/no-such-model"),
    ("device-cuda-without-cuda", lambda w: base(w, "--device", "cuda"), 2, "--device cuda: CUDA is not available"),
    ("device-nonsense", lambda w: base(w, "--device", "gpu7"), 2, "--device gpu7: not a torch device"),
]


@pytest.fixture
def world(tmp_path, monkeypatch):
    root = write_refer_fixture(tmp_path / "data")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", os.environ["CPTBENCH_TASKS_PATH"])  # restored after a case edits it
    yield World(tmp_path, root, tmp_path / "cards", tmp_path / "res")
    if (tmp_path / "res").exists():
        os.chmod(tmp_path / "res", 0o700)


def test_there_are_forty_or_more_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,setup,code,text", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_message(world, name, setup, code, text):
    if name == "results-read-only" and os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    args = setup(world)
    r = CliRunner().invoke(cli, args)
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == code, r.output
    assert text in r.output, r.output
    assert "internal error" not in r.output, r.output  # a user's mistake is never reported as a bug
    assert not (world.tmp / "pwned").exists()


def test_skip_bad_drops_degenerate_data_and_counts_it(world):
    world.edit_instances(lambda d: w_box(d))
    world.edit_refs(lambda r: world.val_ref(r)["sentences"][0].update(sent="", raw=""))
    r = CliRunner().invoke(cli, base(world, "--skip-bad", "--split", "val"))
    assert r.exit_code == 0, r.output
    rec = json.loads((world.res / "runs.jsonl").read_text().splitlines()[0])
    assert rec["skip_bad"] is True and rec["n_skipped"] == {"expressions": 1, "candidates": 1} and rec["n"] == 11
    assert "1 bad skipped" in r.output or "2 bad skipped" in r.output


def w_box(data):
    ann = next(a for a in data["annotations"] if a["image_id"] == 8 and a["id"] % 3 == 0)  # a non-target candidate
    ann["bbox"][2] = -3.0  # negative: refused under any policy


def test_debug_shows_the_traceback(world):
    r = CliRunner().invoke(cli, ["--debug", *base(world, k="1000")])
    assert r.exit_code != 0 and r.exception is not None and not isinstance(r.exception, SystemExit)


def test_palette_word_missing_from_the_vocabulary_is_refused_before_training(world, tiny_vilt_dir):
    r = CliRunner().invoke(cli, base(world, "--model", str(tiny_vilt_dir), "--set", "palette=chartreuse:10,200,10",
                                     m="cpt", k="1"))
    assert r.exit_code == 2 and "'chartreuse'" in r.output and "Traceback" not in r.output, r.output
    assert not (world.res / "runs.jsonl").exists()


def test_messages_reach_a_real_terminal_without_traceback(world):
    """The same boundary holds in a real process (not only under CliRunner)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "cptbench", *base(world, k="1000")], capture_output=True,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "Error: task 'toyref'" in out.stderr
