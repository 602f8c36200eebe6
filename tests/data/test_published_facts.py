"""Facts of the published files (/work/shared/REAL_DATA.md): the three refer archives are pinned by
size and full sha256 and checked on download; the task cards carry the published split counts, train
expressions included, and `data check` checks them. Annotation files already on disk keep their
provenance record (a file the record lacks is added to it, never a silent replacement); the source
that won is the one recorded."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cptbench.data.annotation_download import download_annotations
from cptbench.data.catalog import MIRROR_ENV, SOURCES_ENV, Catalog, load_catalog, recorded_checksum
from cptbench.data.fetch import FetchError, HttpPolicy, fetch_url
from cptbench.data.provenance import SOURCE_FILE
from cptbench.core.errors import DataError
from http_fixture import FileServer
from refer_fixture import write_refer_fixture, write_task_card

FAST = HttpPolicy(timeout=5, retries=1, backoff=0.0, sleep=lambda s: None)
#: REAL_DATA.md: file, bytes, sha256
PINS = {
    "refcoco": ("refcoco.zip", 53_993_993, "7f924bb7ed8dc4568058e4ff626281918d56e5206f4c868c5a80f088f38c8bf0"),
    "refcoco+": ("refcoco+.zip", 45_613_210, "5f1238112d63199e68da54a28f201471909b21ded7ed79a57d51b4c1443c6b45"),
    "refcocog": ("refcocog.zip", 56_712_951, "3d1f7e5b2ff2205940bf59de55f861f5f2cc1403fb980669933a7f9af1aa8211"),
}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    for var in (MIRROR_ENV, SOURCES_ENV):
        monkeypatch.delenv(var, raising=False)
    write_task_card(tmp_path / "cards", "toyref")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def offline_catalog(dataset: str) -> Catalog:
    """The bundled catalog's entry for ``dataset`` (its pins) without its public URLs."""
    cat = load_catalog()
    return replace(cat, annotations={dataset: replace(cat.annotations[dataset], urls=())})


def test_the_bundled_catalog_pins_the_published_archives():
    cat = load_catalog()
    for dataset, (archive, size, sha) in PINS.items():
        entry = cat.annotations[dataset]
        assert (entry.archive, entry.size, entry.sha256) == (archive, size, sha)
        assert entry.expected_sha256 == sha and entry.sha256_prefix is None


@pytest.mark.parametrize("dataset", list(PINS))
def test_a_local_archive_is_checked_against_the_pins(tmp_path, dataset):
    from cptbench.tasks.cards import get_task

    archive, size, sha = PINS[dataset]
    task = get_task(dataset)
    wrong_size = tmp_path / "dl" / archive
    wrong_size.parent.mkdir()
    wrong_size.write_bytes(b"PK not the archive")
    with pytest.raises(DataError) as err:
        download_annotations(task, tmp_path / "root", sources=[str(wrong_size)], catalog=offline_catalog(dataset))
    assert f"expected {size:,}" in str(err.value) and "--expect-sha256" in str(err.value)
    assert f"{size:,} bytes, sha256 {sha}" in str(err.value)  # the manual-download hint names the pins
    if dataset == "refcoco":  # the right size, other bytes: the digest decides
        with open(wrong_size, "wb") as f:
            f.truncate(size)
        with pytest.raises(DataError) as err:
            download_annotations(task, tmp_path / "root", sources=[str(wrong_size)], catalog=offline_catalog(dataset))
        assert f"does not match the expected {sha}" in str(err.value)
    assert not (tmp_path / "root" / task.dataset / SOURCE_FILE).exists()


def test_a_download_is_checked_against_the_pinned_size(server, tmp_path):
    url = server.add("/refcoco+.zip", b"x" * 1000)
    with pytest.raises(FetchError, match=r"offers 1,000 bytes, expected 45,613,210"):
        entry = load_catalog().annotations["refcoco+"]
        fetch_url(url, tmp_path / "refcoco+.zip", expected_size=entry.size, expected_sha256=entry.sha256, policy=FAST)


def _toy_archive(tmp_path):
    import io
    import zipfile

    src = write_refer_fixture(tmp_path / "src")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in ("instances.json", "refs(unc).p"):
            zf.write(src / "toyref" / name, f"toyref/{name}")
    path = tmp_path / "toyref.zip"
    path.write_bytes(buf.getvalue())
    return path


def test_the_source_that_won_is_the_one_recorded(server, tmp_path):
    from cptbench.tasks.cards import get_task

    archive = _toy_archive(tmp_path)
    gone = server.url("/other-packaging.zip")  # 404: tried first, fails
    cat = Catalog("test", {}, (), "")
    res = download_annotations(get_task("toyref"), tmp_path / "root", sources=[gone, str(archive)], catalog=cat, policy=FAST)
    side = json.loads((tmp_path / "root" / "toyref" / SOURCE_FILE).read_text())
    assert res.status == "unpacked" and side["source"]["archive"] == "toyref.zip" and side["source"]["url"] == str(archive)
    assert recorded_checksum("toyref|toyref.zip") and not recorded_checksum("toyref|other-packaging.zip")
    assert len(res.failures) == 1 and "HTTP 404" in res.failures[0]


def test_a_file_missing_from_an_existing_record_is_added_not_the_record_replaced(tmp_path):
    from cptbench.tasks.cards import get_task

    root = write_refer_fixture(tmp_path / "root")
    ds_dir = root / "toyref"
    from cptbench.core.hashing import file_sha256

    record = {"format": 1, "task": "toyref", "method": "download", "created_at": "2024-01-01T00:00:00+00:00",
              "source": {"kind": "url", "url": "https://example.org/toyref.zip"}, "caveats": ["an old caveat"],
              "files": {"instances.json": {"size": 1, "sha256": file_sha256(ds_dir / "instances.json")}}}
    (ds_dir / SOURCE_FILE).write_text(json.dumps(record))
    notes = []
    res = download_annotations(get_task("toyref"), root, catalog=Catalog("test", {}, (), ""),
                               event=lambda kind, info: notes.append(info.get("message", "")))
    side = json.loads((ds_dir / SOURCE_FILE).read_text())
    assert res.status == "present" and "refs(unc).p added" in res.checksum
    assert side["method"] == "download" and side["source"]["url"] == "https://example.org/toyref.zip"  # kept
    assert side["files"]["refs(unc).p"]["sha256"] == file_sha256(ds_dir / "refs(unc).p")
    assert side["caveats"][0] == "an old caveat" and "refs(unc).p found on disk" in side["caveats"][1]
    assert any("refs(unc).p found on disk" in n for n in notes)
    # a recorded file that changed is still refused, naming the file and the fix
    (ds_dir / "instances.json").write_text((ds_dir / "instances.json").read_text() + " ")
    with pytest.raises(DataError, match=r"instances.json: changed since it was recorded.*--force"):
        download_annotations(get_task("toyref"), root, catalog=Catalog("test", {}, (), ""))


#: REAL_DATA.md: refs / images / expressions per split
COUNTS = {
    "refcoco": {"train": (42404, 16994, 120624), "val": (3811, 1500, 10834), "testA": (1975, 750, 5657),
                "testB": (1810, 750, 5095)},
    "refcoco+": {"train": (42278, 16992, 120191), "val": (3805, 1500, 10758), "testA": (1975, 750, 5726),
                 "testB": (1798, 750, 4889)},
    "refcocog": {"train": (42226, 21899, 80512), "val": (2573, 1300, 4896), "test": (5023, 2600, 9602)},
}


@pytest.mark.parametrize("name", list(COUNTS))
def test_the_cards_carry_the_published_counts(name):
    from cptbench.tasks.cards import get_task

    task = get_task(name)
    got = {split: (c.refs, c.images, c.sentences) for split, c in task.expected_counts.items()}
    assert got == COUNTS[name]


def test_data_check_checks_the_train_expressions_too(tmp_path, monkeypatch):
    from cptbench.data.check import check_dataset
    from cptbench.data.refer import ReferDataset
    from cptbench.tasks.cards import get_task

    card = tmp_path / "cards" / "toyref.yaml"
    card.write_text(card.read_text() + "  train: {sentences: 25, refs: 12, images: 6}\n")
    root = write_refer_fixture(tmp_path / "d")
    report = check_dataset(get_task("toyref"), ReferDataset(root, "toyref", "unc", root), check_images=False, boxes=False)
    train = next(s for s in report.splits if s.split == "train")
    assert train.mismatches == ["sentences 24 != expected 25"] and not report.ok
