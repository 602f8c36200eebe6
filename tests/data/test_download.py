"""Downloads against a local HTTP server on 127.0.0.1: resumption, verification, fail-fast offline
behaviour and the messages; image selection equal to what runs draw; the CLI end to end."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cptbench.data import fetch
from cptbench.data.annotation_download import DOWNLOAD_DIR, download_annotations
from cptbench.data.archives import archive_problem, unpack_refer_archive
from cptbench.data.catalog import (MIRROR_ENV, SOURCES_ENV, ArchiveSource, Catalog, annotation_sources, load_catalog,
                                   recorded_checksum)
from cptbench.data.fetch import FetchError, HostGate, HttpPolicy, OfflineError, fetch_url
from cptbench.data.image_download import IMAGE_MIRROR_ENV, ImageNeed, fetch_images, select_images
from cptbench.core.errors import DataError
from cptbench.data.provenance import SOURCE_FILE
from http_fixture import FileServer, closed_port_url
from refer_fixture import write_refer_fixture, write_task_card

FAST = HttpPolicy(timeout=5, retries=3, backoff=0.0, sleep=lambda s: None)


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Own cache (learned checksums), no mirror variables, a toyref task card."""
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    for var in (MIRROR_ENV, IMAGE_MIRROR_ENV, SOURCES_ENV):
        monkeypatch.delenv(var, raising=False)
    write_task_card(tmp_path / "cards", "toyref")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))


def payload(n: int = 200_000, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def refer_zip(tmp_path: Path, dataset: str = "toyref", extra_name: str | None = None) -> tuple[bytes, Path]:
    """A refer-layout annotations archive built from the fixture (as refcoco.zip is laid out)."""
    src = write_refer_fixture(tmp_path / "src", dataset=dataset)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("instances.json", "refs(unc).p"):
            zf.write(src / dataset / name, f"{dataset}/{name}")
        zf.writestr(f"{dataset}/refs(google).p", (src / dataset / "refs(unc).p").read_bytes())
        if extra_name:
            zf.writestr(extra_name, b"x")
    return buf.getvalue(), src


def catalog(path: str = "test", **entries) -> Catalog:
    return Catalog(path, {k: ArchiveSource(k, f"{k}.zip", tuple(v["urls"]), v.get("size"), v.get("sha256"),
                                           v.get("sha256_prefix")) for k, v in entries.items()}, (), "")


def toy_task():
    from cptbench.tasks.cards import get_task

    return get_task("toyref")


# ------------------------------------------------------------------------------ fetch_url
def test_dropped_connection_is_resumed_with_a_range_request(server, tmp_path):
    data = payload()
    url = server.add("/big.bin", data, drop=1)
    seen = []
    got = fetch_url(url, tmp_path / "big.bin", expected_sha256=hashlib.sha256(data).hexdigest(), policy=FAST,
                    progress=lambda done, total: seen.append((done, total)))
    assert (tmp_path / "big.bin").read_bytes() == data
    assert got.attempts == 2 and got.sha256 == hashlib.sha256(data).hexdigest()
    first, second = server.requests("/big.bin")
    assert first is None and second == f"bytes={len(data) // 2}-"  # only the rest was asked for
    assert seen[-1] == (len(data), len(data))
    assert not list(tmp_path.glob("*.part*"))


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    data = payload(50_000)
    url = server.add("/a.bin", data)
    dest = tmp_path / "a.bin"
    (tmp_path / "a.bin.part").write_bytes(data[:12_345])
    (tmp_path / "a.bin.part.json").write_text(json.dumps({"url": url, "total": len(data),
                                                          "validator": '"' + hashlib.sha1(data).hexdigest() + '"'}))
    got = fetch_url(url, dest, policy=FAST)
    assert dest.read_bytes() == data and got.resumed_from == 12_345
    assert server.requests("/a.bin") == ["bytes=12345-"]


def test_changed_resource_or_ignored_range_restarts_from_zero(server, tmp_path):
    data = payload(30_000, seed=1)
    url = server.add("/c.bin", data)
    (tmp_path / "c.bin.part").write_bytes(b"stale bytes of an older version")
    (tmp_path / "c.bin.part.json").write_text(json.dumps({"url": url, "validator": '"old-etag"'}))
    fetch_url(url, tmp_path / "c.bin", policy=FAST)  # If-Range mismatch: the server sends it all
    assert (tmp_path / "c.bin").read_bytes() == data
    url2 = server.add("/n.bin", data, no_range=True, drop=1)  # a server that ignores Range
    fetch_url(url2, tmp_path / "n.bin", policy=FAST)
    assert (tmp_path / "n.bin").read_bytes() == data and len(server.requests("/n.bin")) == 2


def test_wrong_checksum_is_refused_and_deleted(server, tmp_path):
    url = server.add("/w.bin", payload(10_000))
    with pytest.raises(FetchError) as err:
        fetch_url(url, tmp_path / "out" / "w.bin", expected_sha256="ab" * 32, policy=FAST)
    assert err.value.kind == "checksum" and "does not match the expected" in str(err.value) and "deleted" in str(err.value)
    assert not list((tmp_path / "out").iterdir())
    with pytest.raises(FetchError, match="offers 10,000 bytes, expected 999"):
        fetch_url(url, tmp_path / "out" / "w.bin", expected_size=999, policy=FAST)


def test_404_and_transient_errors(server, tmp_path):
    with pytest.raises(FetchError) as err:
        fetch_url(server.url("/nope.zip"), tmp_path / "x", policy=FAST)
    assert err.value.kind == "http" and "HTTP 404" in str(err.value)
    url = server.add("/flaky.bin", b"ok" * 100, fail=2)  # 503 twice, then fine: retried with back-off
    sleeps = []
    policy = HttpPolicy(retries=3, backoff=0.1, sleep=sleeps.append)
    assert fetch_url(url, tmp_path / "f", policy=policy).attempts == 3
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]


def test_unreachable_host_fails_at_once_without_retries(tmp_path, monkeypatch):
    sleeps = []
    policy = HttpPolicy(retries=5, sleep=sleeps.append)
    t = time.perf_counter()
    with pytest.raises(FetchError) as err:
        fetch_url(closed_port_url(), tmp_path / "x", policy=policy)
    assert err.value.kind == "unreachable" and time.perf_counter() - t < 2 and not sleeps

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(FetchError) as err:
        fetch_url("http://refer.example.invalid/refcoco.zip", tmp_path / "y", policy=policy)
    assert err.value.kind == "unreachable" and "resolve" in err.value.detail and not sleeps


# ----------------------------------------------------------------------------- annotations
def test_download_tries_sources_in_order_verifies_unpacks_and_records(server, tmp_path):
    data, src = refer_zip(tmp_path)
    bad = server.add("/bad/toyref.zip", data[:-10] + b"corrupted!")
    good = server.add("/good/toyref.zip", data)
    cat = catalog(toyref={"urls": [server.url("/gone/toyref.zip"), bad, good], "size": len(data)})
    root = tmp_path / "root"
    res = download_annotations(toy_task(), root, catalog=cat, policy=FAST)
    assert res.status == "downloaded" and res.source == good
    assert any("HTTP 404" in f for f in res.failures) and any("not a readable zip" in f for f in res.failures)
    ds_dir = root / "toyref"
    for name in ("instances.json", "refs(unc).p", "refs(google).p"):
        assert (ds_dir / name).read_bytes() == (src / "toyref" / name).read_bytes() if name != "refs(google).p" else True
    assert not (root / DOWNLOAD_DIR).exists()  # the archive is gone once unpacked
    side = json.loads((ds_dir / SOURCE_FILE).read_text())
    assert side["source"]["url"] == good and side["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert side["files"]["refs(unc).p"]["sha256"] == hashlib.sha256((ds_dir / "refs(unc).p").read_bytes()).hexdigest()
    assert side["method"] == "download" and side["cptbench_version"] and side["created_at"]
    assert "recorded on this first download" in side["source"]["checksum"]
    # the loader reads what was unpacked
    from cptbench.data.refer import ReferDataset

    assert len(ReferDataset(root, "toyref", "unc", root).refs_of("val")) == 6
    # a second run keeps the files (checked against the record), without touching the network
    n = len(server.log)
    assert download_annotations(toy_task(), root, catalog=cat, policy=FAST).status == "present"
    assert len(server.log) == n
    # ... and refuses files that changed since
    with open(ds_dir / "instances.json", "a") as f:
        f.write(" ")
    with pytest.raises(DataError, match="changed since it was recorded.*--force"):
        download_annotations(toy_task(), root, catalog=cat, policy=FAST)


def test_first_download_checksum_is_checked_afterwards(server, tmp_path):
    data, _ = refer_zip(tmp_path)
    url = server.add("/toyref.zip", data)
    cat = catalog(toyref={"urls": [url]})
    download_annotations(toy_task(), tmp_path / "r1", catalog=cat, policy=FAST)
    other, _ = refer_zip(tmp_path / "o", extra_name="toyref/README")  # the "same" archive, other bytes
    server.add("/toyref.zip", other)
    with pytest.raises(DataError) as err:
        download_annotations(toy_task(), tmp_path / "r2", catalog=cat, policy=FAST)
    msg = str(err.value)
    assert "expected" in msg and "recorded on the first download" in msg and "toyref|toyref.zip" in msg
    assert not (tmp_path / "r2" / "toyref").exists()


def test_known_checksum_mismatch_and_local_source(server, tmp_path):
    data, _ = refer_zip(tmp_path)
    url = server.add("/toyref.zip", data)
    cat = catalog(toyref={"urls": [url], "sha256": "0" * 64})
    with pytest.raises(DataError, match=r"(?s)could not get toyref.zip.*does not match"):
        download_annotations(toy_task(), tmp_path / "r", catalog=cat, policy=FAST)
    (tmp_path / "manual").mkdir()
    local = tmp_path / "manual" / "toyref.zip"  # downloaded by hand, as the offline message says
    local.write_bytes(data)
    with pytest.raises(DataError, match="does not match"):  # checked like a download
        download_annotations(toy_task(), tmp_path / "r", sources=[str(local)], catalog=catalog(
            toyref={"urls": [], "sha256": "0" * 64}), policy=FAST)
    cat = catalog(toyref={"urls": [url], "sha256": hashlib.sha256(data).hexdigest()})
    res = download_annotations(toy_task(), tmp_path / "r", sources=[str(local)], catalog=cat, policy=FAST)
    assert res.source == str(local) and res.status == "unpacked" and local.exists() and "sources file" in res.checksum
    assert (tmp_path / "r" / "toyref" / "refs(unc).p").is_file()
    # other packaging (another file name): not the catalog's archive; its own digest is recorded
    other = tmp_path / "manual" / "toyref-annotations.zip"
    other.write_bytes(data)
    res = download_annotations(toy_task(), tmp_path / "r3", sources=[str(other)], catalog=cat, policy=FAST)
    assert "recorded on this first download" in res.checksum and recorded_checksum("toyref|toyref-annotations.zip")
    # a source that legitimately changed: --expect-sha256 replaces the known digest
    cat = catalog(toyref={"urls": [url], "sha256": "0" * 64, "size": 5})
    res = download_annotations(toy_task(), tmp_path / "r2", catalog=cat, policy=FAST,
                               expect_sha256=hashlib.sha256(data).hexdigest())
    assert res.status == "downloaded" and "--expect-sha256" in res.checksum


def test_not_an_annotations_archive(server, tmp_path):
    url = server.add("/toyref.zip", b"<html>moved</html>")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        download_annotations(toy_task(), tmp_path / "r", catalog=catalog(toyref={"urls": [url]}), policy=FAST)


def test_offline_fails_fast_and_says_what_to_download_by_hand(tmp_path):
    cat = catalog(toyref={"urls": [closed_port_url("/a/toyref.zip"), closed_port_url("/b/toyref.zip")], "size": 1234})
    t = time.perf_counter()
    with pytest.raises(OfflineError) as err:
        download_annotations(toy_task(), tmp_path / "root", catalog=cat, policy=HttpPolicy(retries=5))
    assert time.perf_counter() - t < 3
    msg = str(err.value)
    assert "no network?" in msg and "by hand" in msg and "/a/toyref.zip" in msg and "1,234 bytes" in msg
    assert "--source /path/to/toyref.zip" in msg and str(tmp_path / "root" / "toyref" / "refs(unc).p") in msg


def test_bundled_catalog_names_the_three_datasets():
    cat = load_catalog()
    assert {"refcoco", "refcoco+", "refcocog"} <= set(cat.annotations)
    assert all(e.urls and all(u.startswith("https://") for u in e.urls) for e in cat.annotations.values())
    assert cat.image_patterns and "{file_name}" in cat.image_patterns[0]
    entry, urls = annotation_sources(cat, "refcoco+", ["file:///tmp/x.zip"])
    assert urls[0] == "file:///tmp/x.zip" and urls[1:] == list(entry.urls)


def test_catalog_errors_name_file_and_key(tmp_path, monkeypatch):
    bad = tmp_path / "s.yaml"
    bad.write_text("format: 1\nannotations:\n  refcoco: {archive: r.zip, urls: [http://x/r.zip], sha: 12}\nimages: {train2014: []}\n")
    monkeypatch.setenv(SOURCES_ENV, str(bad))
    with pytest.raises(DataError, match=r"s.yaml: annotations.refcoco: unknown key\(s\) \['sha'\]"):
        load_catalog()


def test_mirror_variable_is_tried_first(monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, "https://mirror.example/refer/")
    _, urls = annotation_sources(load_catalog(), "refcoco+")
    assert urls[0] == "https://mirror.example/refer/refcoco+.zip"


# -------------------------------------------------------------------------------- images
def png_bytes(size=(48, 32), seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_image_selection_is_what_runs_draw(tmp_path):
    from cptbench.data.source import open_dataset
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest
    from cptbench.results.store import ResultsStore

    splits = {"train": 10, "val": 3, "testA": 2, "testB": 2}
    root = write_refer_fixture(tmp_path / "d", splits=splits)
    task = toy_task()
    ds = open_dataset(task, root)
    sel = select_images(task, ds, shots=(1, 2, 4), seeds=(0, 1, 2))
    runner = Runner(RunRequest(tasks=[task], methods=["random"], shots=[1], data_root=str(root)), ResultsStore(tmp_path / "res"))
    ref_image = {int(r["ref_id"]): int(r["image_id"]) for r in ds.refs}
    expected = {int(r["image_id"]) for s in task.eval_splits for r in ds.refs_of(s)}
    drawn = {ref_image[r] for k in (1, 2, 4) for s in (0, 1, 2) for r, _ in runner.session.manifest(task, k, s).examples}
    assert {n.image_id for n in sel.needs} == expected | drawn
    assert sel.counts["eval splits"] == 7 and 0 < sel.counts["k-shot draws"] < 10
    assert len(select_images(task, ds, all_train=True).needs) == 17
    assert any("k=64 left out" in n for n in select_images(task, ds, shots=(64,), seeds=(0,)).notes)
    need = sel.needs[0]
    assert need.urls[-1] == f"http://images.cocodataset.org/train2014/{need.file_name}" and need.size == (48, 32)


def test_fetch_images_counts_verifies_and_resumes(server, tmp_path):
    mk = lambda i, url: ImageNeed(i, f"COCO_train2014_{i:012d}.png", (48, 32), tuple(url))  # noqa: E731
    imgs = {i: png_bytes(seed=i) for i in range(1, 7)}
    for i in (1, 2, 3):
        server.add(f"/m/COCO_train2014_{i:012d}.png", imgs[i])
    server.add(f"/m/COCO_train2014_{3:012d}.png", imgs[3], drop=1)  # dropped half way: resumed
    server.add(f"/b/COCO_train2014_{4:012d}.png", imgs[4])  # 404 on the first source, found on the second
    server.add(f"/m/COCO_train2014_{5:012d}.png", b"<!DOCTYPE html><html>sign in to the wifi</html>", type="text/html")
    image_dir = tmp_path / "images" / "train2014"
    image_dir.mkdir(parents=True)
    (image_dir / f"COCO_train2014_{1:012d}.png").write_bytes(imgs[1])  # already there: skipped
    (image_dir / f"COCO_train2014_{2:012d}.png").write_bytes(imgs[2][:200])  # truncated: fetched again
    needs = [mk(i, [server.url(f"/m/COCO_train2014_{i:012d}.png"), server.url(f"/b/COCO_train2014_{i:012d}.png")])
             for i in range(1, 7)]
    missing = tmp_path / "missing.txt"
    rep = fetch_images(needs, image_dir, policy=FAST, jobs=3, missing_list=missing)
    assert (rep.fetched, rep.skipped, len(rep.failed)) == (3, 1, 2)
    assert server.requests(f"/m/COCO_train2014_{3:012d}.png")[-1].startswith("bytes=")  # resumed after the drop
    for i in (2, 3, 4):
        assert (image_dir / f"COCO_train2014_{i:012d}.png").read_bytes() == imgs[i]
    failed = dict(rep.failed)
    assert "HTML page" in failed[f"COCO_train2014_{5:012d}.png"] and "HTTP 404" in failed[f"COCO_train2014_{6:012d}.png"]
    assert not (image_dir / f"COCO_train2014_{5:012d}.png").exists()  # nothing invalid is left in place
    assert missing.read_text().splitlines() == [server.url(f"/b/COCO_train2014_{i:012d}.png") for i in (5, 6)]
    msg = rep.message("toyref")
    assert "2 of the 6 images" in msg and str(missing) in msg and "wget" in msg and not rep.offline
    # a second run: everything valid is skipped, only the failures are tried again
    server.add(f"/m/COCO_train2014_{5:012d}.png", imgs[5])
    server.add(f"/m/COCO_train2014_{6:012d}.png", imgs[6])
    rep = fetch_images(needs, image_dir, policy=FAST, jobs=3, missing_list=missing)
    assert (rep.fetched, rep.skipped, rep.failed) == (2, 4, []) and not missing.exists()


def test_images_offline_fail_fast(tmp_path):
    dead = closed_port_url("/t/")
    needs = [ImageNeed(i, f"COCO_train2014_{i:012d}.jpg", (0, 0), (dead + f"COCO_train2014_{i:012d}.jpg",))
             for i in range(200)]
    t = time.perf_counter()
    rep = fetch_images(needs, tmp_path / "img", policy=HttpPolicy(retries=5), jobs=4,
                       missing_list=tmp_path / "missing.txt")
    assert time.perf_counter() - t < 5 and len(rep.failed) == 200 and rep.offline
    msg = rep.message("refcoco", "http://images.cocodataset.org/zips/train2014.zip")
    assert msg.startswith("no network?") and "train2014.zip" in msg and str(tmp_path / "img") in msg


# ----------------------------------------------------------------------------------- CLI
def test_cli_download_then_check_reports_provenance(server, tmp_path, monkeypatch):
    from cptbench.cli.main import cli

    data, src = refer_zip(tmp_path)
    url = server.add("/toyref.zip", data)
    for p in (src / "images" / "train2014").iterdir():
        server.add(f"/img/{p.name}", p.read_bytes())
    sources = tmp_path / "sources.yaml"  # no default image host: the tests never leave 127.0.0.1
    sources.write_text(f"format: 1\nannotations: {{}}\nimages:\n  train2014: ['{server.base}/img/{{file_name}}']\n")
    monkeypatch.setenv(SOURCES_ENV, str(sources))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables: no wrapping inside the cells asserted on
    root = tmp_path / "root"
    r = CliRunner().invoke(cli, ["data", "download", "toyref", "--to", str(root), "--source", url, "--shots", "1,2",
                                 "--seeds", "0,1"])
    assert r.exit_code == 0, r.output
    assert "downloaded" in r.output and "fetched" in r.output
    side = json.loads((root / "toyref" / SOURCE_FILE).read_text())
    assert side["images"]["failed"] == 0 and side["images"]["fetched"] == side["images"]["needed"] > 0
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(root), "-k", "1,2", "--seeds", "0,1"])
    assert r.exit_code == 0, r.output
    assert "provenance" in r.output and "/toyref.zip" in r.output and "matches the record" in r.output
    assert "not needed" in r.output  # train images no draw uses are not required
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(root)])  # the default grid needs more
    assert r.exit_code == 1 and "train: missing images" in r.output
    # the benchmark runs on what was fetched, and its records carry the provenance
    res = tmp_path / "res"
    r = CliRunner().invoke(cli, ["run", "-m", "random", "-k", "1", "--seeds", "0,1", "-t", "toyref", "--data-root", str(root),
                                 "--results", str(res)])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in (res / "runs.jsonl").read_text().splitlines()]
    assert recs and all(rec["data_source"]["provenance"]["source"]["url"] == url for rec in recs)
    # a second run fetches nothing
    n = len(server.log)
    r = CliRunner().invoke(cli, ["data", "download", "toyref", "--to", str(root), "--shots", "1,2", "--seeds", "0,1"])
    assert r.exit_code == 0 and len(server.log) == n and "skipped" in r.output, r.output


def test_cli_download_offline_message(tmp_path, monkeypatch):
    from cptbench.cli.main import cli

    t = time.perf_counter()
    r = CliRunner().invoke(cli, ["data", "download", "toyref", "--to", str(tmp_path / "r"), "--source", closed_port_url("/toyref.zip")])
    assert r.exit_code == 1 and time.perf_counter() - t < 5
    assert "no network?" in r.output and "by hand" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["data", "download", "synthref", "--to", str(tmp_path / "r")])
    assert r.exit_code == 2 and "generated" in r.output


def test_host_gate_one_refusal_or_three_connect_timeouts():
    import urllib.error

    assert fetch.classify(urllib.error.URLError(TimeoutError("timed out")))[0] == "timeout"
    assert fetch.classify(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))[0] == "unreachable"
    gate = HostGate()
    slow = FetchError("http://slow.example/a.jpg", "timeout", "connection timed out")
    gate.failed(slow)
    gate.failed(slow)
    gate.succeeded("http://slow.example/b.jpg")  # a success in between: one slow connect is no outage
    gate.failed(slow)
    gate.failed(slow)
    assert gate.why_down("http://slow.example/c.jpg") is None
    gate.failed(slow)
    assert gate.why_down("http://slow.example/c.jpg") == "connection timed out"
    gate.failed(FetchError("http://dead.example/a.jpg", "unreachable", "cannot connect (Connection refused)"))
    assert gate.why_down("http://dead.example/b.jpg") and not gate.why_down("http://other.example/b.jpg")


# ------------------------------------------------------------------ malformed input, archives
@pytest.mark.parametrize("url", ["http://127.0.0.1:notaport/toyref.zip", "http://[::1/toyref.zip", "http://a b/toyref.zip"])
def test_malformed_url_is_a_clean_error_not_retried(tmp_path, url):
    sleeps = []
    with pytest.raises(FetchError) as err:
        fetch_url(url, tmp_path / "out" / "x.zip", policy=HttpPolicy(retries=5, sleep=sleeps.append))
    assert err.value.kind == "url" and "not a valid URL" in err.value.detail and not sleeps  # no retry of a typo
    assert not list((tmp_path / "out").iterdir())


def test_cli_malformed_source_url_is_one_message(tmp_path):
    from cptbench.cli.main import cli

    for url in ("http://127.0.0.1:notaport/toyref.zip", "http://[::1/toyref.zip"):
        t = time.perf_counter()
        r = CliRunner().invoke(cli, ["data", "download", "toyref", "--to", str(tmp_path / "r"), "--source", url, "--no-images"])
        assert r.exit_code == 1 and time.perf_counter() - t < 5, r.output
        assert "not a valid URL" in r.output and url in r.output
        assert "internal error" not in r.output and "Traceback" not in r.output and "gave up after" not in r.output


def test_tar_archive_is_checked_and_unpacked(tmp_path):
    import tarfile

    src = write_refer_fixture(tmp_path / "src")
    archive = tmp_path / "toyref.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in ("instances.json", "refs(unc).p"):
            tf.add(src / "toyref" / name, f"refer/toyref/{name}")
    assert archive_problem(archive, "toyref", "unc") is None
    assert "refs(google).p" in archive_problem(archive, "toyref", "google")
    written = unpack_refer_archive(archive, tmp_path / "out", "toyref", "unc")
    assert written == ["instances.json", "refs(unc).p"]
    for name in written:
        assert (tmp_path / "out" / name).read_bytes() == (src / "toyref" / name).read_bytes()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp file left


@pytest.mark.parametrize("record, what", [("{not json", "not a readable JSON provenance record"),
                                          ('["a", "list"]', "not a JSON object but a list"),
                                          ('{"files": ["refs(unc).p"]}', "'files' is a list"),
                                          ('{"files": {"refs(unc).p": "abc"}}', "files.refs(unc).p is 'abc'")])
def test_malformed_provenance_record_is_a_data_error_naming_the_file(tmp_path, record, what):
    from cptbench.cli.main import cli

    root = write_refer_fixture(tmp_path / "root")
    side = root / "toyref" / SOURCE_FILE
    side.write_text(record)
    with pytest.raises(DataError) as err:  # not overwritten silently, not an AttributeError
        download_annotations(toy_task(), root, catalog=catalog(), policy=FAST)
    assert str(side) in str(err.value) and what in str(err.value) and "--force" in str(err.value)
    assert side.read_text() == record
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(root), "--skip-images"])
    assert r.exit_code == 1 and what in r.output and "internal error" not in r.output, r.output


def test_data_check_lists_kept_and_refused_detection_boxes_and_reports_recall(tmp_path, monkeypatch):
    """`data check --proposals` lists every detection box past the image or of zero area (kept) and
    every box runs refuse (status 1), and reports recall with the refused ones left out."""
    from cptbench.cli.main import cli
    from cptbench.data.refer import ReferDataset

    monkeypatch.setenv("COLUMNS", "200")
    root = write_refer_fixture(tmp_path / "root")
    ds = ReferDataset(root, "toyref", "unc", root)
    dets = []
    for split in ("train", "val", "testA", "testB"):
        for image_id in sorted({int(r["image_id"]) for r in ds.refs_of(split)}):
            for a in ds.coco.imgToAnns[image_id]:
                dets.append({"box": a["bbox"], "image_id": image_id, "score": 0.9})
            dets.append({"box": [1, 1, 0, 5], "image_id": image_id, "score": 0.1, "det_id": 9000 + image_id})  # zero width: kept
    f = tmp_path / "dets.json"
    f.write_text(json.dumps(dets))
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(root), "--proposals", str(f)])
    assert r.exit_code == 0, r.output
    assert "val: proposal recall 100.00%" in r.output and "left out" not in r.output
    assert "val: 3 zero-area candidate box(es): kept, painting nothing" in r.output
    assert "image 7: detection 9007 box [1.0, 1.0, 0.0, 5.0] has zero width or height" in r.output
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(root), "--proposals", str(f), "--strict-data"])
    assert r.exit_code == 1 and "val: 3 degenerate candidate box(es)" in r.output and "runs refuse them" in r.output
    assert "val: proposal recall 100.00%" in r.output and "left out as refused: 3 candidates" in r.output
    dets.append({"box": [1, 1, -4, 5], "image_id": 7, "det_id": 1})  # negative: refused under any policy
    f.write_text(json.dumps(dets))
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(root), "--proposals", str(f)])
    assert r.exit_code == 1 and "image 7: detection 1 box [1.0, 1.0, -4.0, 5.0] has negative width or height" in r.output


def test_a_full_disk_names_the_file_keeps_what_was_written_and_leaves_no_temp_file(server, tmp_path, monkeypatch):
    import builtins
    import errno

    from cptbench.core.files import write_atomic
    from cptbench.data.fetch import FetchError, fetch_first

    data = payload(200_000)
    url = server.add("/full.bin", data)
    other = server.add("/other.bin", data)
    real_open = builtins.open
    written = {"n": 0}

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, block):
            if written["n"] + len(block) > 70_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            written["n"] += len(block)
            return self.f.write(block)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return FullDisk(f) if str(path).endswith(".part") and "b" in mode and ("a" in mode or "w" in mode) else f

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(FetchError) as info:
        fetch_first([url, other], tmp_path / "full.bin", policy=FAST)
    monkeypatch.setattr(builtins, "open", real_open)
    err = info.value
    assert err.kind == "disk" and str(tmp_path / "full.bin.part") in str(err) and "Free some space" in str(err)
    assert len(err.failures) == 1  # the second source is not tried: it cannot help a full disk
    assert (tmp_path / "full.bin.part").stat().st_size == written["n"] > 0  # kept for a resume
    # an atomic write that fails on a full disk leaves no temporary file behind
    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "x.json", b"{}")
    assert not list(tmp_path.glob(".x.json.*.tmp")) and not (tmp_path / "x.json").exists()
