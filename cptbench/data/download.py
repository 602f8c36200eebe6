"""Getting a RefCOCO-family task's data over HTTP: the annotation archive from a list of known
sources, and only the COCO images a benchmark run will read.

Standard library only (``urllib``). Library code never prints: progress goes through a
``progress(label, done, total)`` callback and notes through ``event(kind, info)``.

* HTTP goes through :mod:`cptbench.data.fetch` (resumable range requests, retries with back-off,
  fail-fast when a host cannot be reached).
* :func:`download_annotations` tries the sources of a dataset in order (``--source`` first, then
  ``$CPTBENCH_DATA_MIRROR``, then ``sources.yaml``), checks the size and sha256 when known (else
  records the digest on first download and checks it afterwards), unpacks the refer files
  (``instances.json``, ``refs(*).p``) into ``<root>/<dataset>/`` and writes the provenance sidecar
  (:data:`cptbench.run.fingerprint.SOURCE_FILE`).
* :func:`select_images` lists the images runs will need: the eval splits' plus those of the k-shot
  training draws (drawn exactly as the runner draws them), or the whole train split;
  :func:`fetch_images` fetches them by file name with a bounded thread pool and reports fetched /
  skipped (already present and valid) / failed. Every image is verified: header, annotated size,
  end marker (:func:`cptbench.data.images.check_image_file`) and a full decode.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tarfile
import threading
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from cptbench import __version__
from cptbench.core.defaults import DEFAULT_SEEDS
from cptbench.run.fingerprint import SOURCE_FILE, file_sha256
from cptbench.core.errors import DataError
from cptbench.data.fetch import (FetchError, Fetched, HostGate, HttpPolicy, OfflineError, discard, read_json, write_json,
                    fetch_first, fetch_url, is_local, local_path, now_iso)

__all__ = ["FetchError", "Fetched", "HostGate", "HttpPolicy", "OfflineError", "fetch_first", "fetch_url", "now_iso",
           "download_annotations", "select_images", "fetch_images", "load_catalog", "DEFAULT_SHOTS", "DEFAULT_SEEDS"]

SOURCES_ENV = "CPTBENCH_SOURCES"
MIRROR_ENV = "CPTBENCH_DATA_MIRROR"
IMAGE_MIRROR_ENV = "CPTBENCH_IMAGE_MIRROR"
#: where archives are downloaded (inside the data root; removed once unpacked)
DOWNLOAD_DIR = ".cptbench-downloads"
#: digests of archives without a published checksum, recorded on first download (in the cache folder)
CHECKSUMS_FILE = "download-checksums.json"
#: URLs of the images that could not be fetched, for a manual download (beside the annotations)
MISSING_IMAGES_FILE = "cptbench-missing-images.txt"

ProgressFn = Callable[[str, int, "int | None"], None]
EventFn = Callable[[str, Mapping[str, Any]], None]


def _no_progress(label: str, done: int, total: int | None) -> None:
    return None


def _no_event(kind: str, info: Mapping[str, Any]) -> None:
    return None


# ----------------------------------------------------------------------------------- catalog
@dataclass(frozen=True)
class ArchiveSource:
    dataset: str
    archive: str
    urls: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    note: str = ""

    @property
    def expected_sha256(self) -> str | None:
        return self.sha256 or self.sha256_prefix


@dataclass(frozen=True)
class Catalog:
    path: str
    annotations: Mapping[str, ArchiveSource]
    image_patterns: tuple[str, ...]
    image_archive: str


_ARCHIVE_KEYS = {"archive", "urls", "size", "sha256", "sha256_prefix", "note"}


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The sources file: ``path``, else ``$CPTBENCH_SOURCES``, else the bundled ``sources.yaml``."""
    from cptbench.core.yamlio import load_yaml

    if path is None:
        path = os.environ.get(SOURCES_ENV) or None
    if path is None:
        import importlib.resources

        path = Path(str(importlib.resources.files("cptbench.data"))) / "sources.yaml"
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the sources file ({exc}); fix it or unset {SOURCES_ENV}.") from None

    def bad(where: str, what: str) -> DataError:
        return DataError(f"{path}: {where}: {what}. See cptbench/data/sources.yaml for the expected shape.")

    if not isinstance(data, dict) or data.get("format") != 1:
        raise bad("top level", "expected a mapping with 'format: 1', 'annotations' and 'images'")
    annotations = {}
    for name, entry in (data.get("annotations") or {}).items():
        where = f"annotations.{name}"
        if not isinstance(entry, dict):
            raise bad(where, "expected a mapping")
        unknown = set(entry) - _ARCHIVE_KEYS
        if unknown:
            raise bad(where, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_ARCHIVE_KEYS)}")
        urls = entry.get("urls") or []
        if not entry.get("archive") or not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise bad(where, "needs 'archive' (a file name) and 'urls' (a list of URLs)")
        sha, prefix = entry.get("sha256"), entry.get("sha256_prefix")
        if sha is not None and not re.fullmatch(r"[0-9a-f]{64}", str(sha)):
            raise bad(f"{where}.sha256", "must be 64 lower-case hex digits")
        if prefix is not None and not re.fullmatch(r"[0-9a-f]{16,63}", str(prefix)):
            raise bad(f"{where}.sha256_prefix", "must be 16 to 63 lower-case hex digits")
        size = entry.get("size")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise bad(f"{where}.size", "must be a positive integer (bytes)")
        annotations[str(name)] = ArchiveSource(str(name), str(entry["archive"]), tuple(urls), size, sha, prefix,
                                               str(entry.get("note") or ""))
    images = data.get("images") or {}
    patterns = images.get("train2014") or []
    if not isinstance(patterns, list) or not all(isinstance(p, str) and "{file_name}" in p for p in patterns):
        raise bad("images.train2014", "expected a list of URL patterns containing {file_name}")
    return Catalog(str(path), annotations, tuple(patterns), str(images.get("archive") or ""))


def _join(prefix: str, name: str) -> str:
    return prefix.rstrip("/") + "/" + urllib.parse.quote(name, safe="+")


def annotation_sources(catalog: Catalog, dataset: str, sources: Sequence[str] = ()) -> tuple[ArchiveSource, list[str]]:
    """The dataset's catalog entry and the sources to try, in order: ``sources``, the mirror, the catalog."""
    entry = catalog.annotations.get(dataset)
    if entry is None:
        if not sources:
            raise DataError(f"no known source for dataset {dataset!r} in {catalog.path} (it knows "
                            f"{', '.join(sorted(catalog.annotations)) or 'none'}); pass --source URL_OR_FILE.")
        name = archive_name(sources[0]) or f"{dataset}.zip"
        entry = ArchiveSource(dataset, name, ())
    out = list(sources)
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        out.append(_join(mirror, entry.archive))
    out += list(entry.urls)
    return entry, list(dict.fromkeys(out))


# ---------------------------------------------------------------------------- checksum records
_store_lock = threading.Lock()


def _checksum_store() -> Path:
    from cptbench.data.source import cache_root

    return cache_root() / CHECKSUMS_FILE


def recorded_checksum(key: str) -> dict | None:
    return (read_json(_checksum_store()) or {}).get(key)


def record_checksum(key: str, entry: dict) -> None:
    with _store_lock:
        data = read_json(_checksum_store()) or {}
        data[key] = entry
        try:
            write_json(_checksum_store(), data)
        except OSError:
            pass  # the sidecar still holds the digest


# --------------------------------------------------------------------------------- provenance
def read_provenance(ds_dir: Path) -> dict | None:
    """The provenance record as it is, or None when it is missing or unreadable (for carrying parts
    of an old record over into a new one); to compare files with it use :func:`load_provenance`."""
    return read_json(Path(ds_dir) / SOURCE_FILE)


def load_provenance(ds_dir: Path) -> dict | None:
    """The provenance record beside the annotations (None when there is none), its shape checked: a
    JSON object whose ``files`` (when present) maps file names to ``{"sha256": hex, ...}``. A
    malformed record raises :class:`DataError` naming the file and the fix."""
    path = Path(ds_dir) / SOURCE_FILE
    if not path.is_file():
        return None
    fix = "delete it (the files are then recorded anew) or download again with `cptbench data download ... --force`"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON provenance record ({exc}); {fix}.") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: not a JSON object but a {type(record).__name__}; {fix}.")
    files = record.get("files")
    if files is not None:
        if not isinstance(files, dict):
            raise DataError(f"{path}: 'files' is a {type(files).__name__}, not a mapping of file names to "
                            f"{{size, sha256}}; {fix}.")
        for name, entry in files.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
                raise DataError(f"{path}: files.{name} is {entry!r}, not {{size, sha256}}; {fix}.")
    return record


@dataclass(frozen=True)
class FileCheck:
    """An annotation file on disk against its provenance record."""

    name: str
    size: int
    sha256: str
    recorded_sha256: str | None
    status: str  # "matches the record" | "changed since recorded" | "not in the record" | "no record"

    @property
    def ok(self) -> bool:
        return self.status != "changed since recorded"


def check_files(ds_dir: Path, names: Iterable[str], record: Mapping[str, Any] | None) -> list[FileCheck]:
    """Each file's size and sha256 (cached, :func:`cptbench.run.fingerprint.file_sha256`) against
    ``record`` (from :func:`load_provenance`; None: no record)."""
    recorded = (record or {}).get("files") or {}
    out = []
    for name in names:
        p = Path(ds_dir) / name
        digest = file_sha256(p)
        want = (recorded.get(name) or {}).get("sha256")
        status = ("no record" if record is None else "not in the record" if want is None
                  else "matches the record" if want == digest else "changed since recorded")
        out.append(FileCheck(name, p.stat().st_size, digest, want, status))
    return out


def write_provenance(ds_dir: Path, record: Mapping[str, Any]) -> Path:
    path = Path(ds_dir) / SOURCE_FILE
    write_json(path, dict(record))
    return path


def file_entries(ds_dir: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in names:
        p = Path(ds_dir) / name
        out[name] = {"size": p.stat().st_size, "sha256": file_sha256(p)}
    return out


def provenance_record(task, method: str, source: Mapping[str, Any], files: Mapping[str, Any],
                      caveats: Sequence[str] = ()) -> dict[str, Any]:
    return {"format": 1, "task": task.name, "dataset": task.dataset, "split_by": task.split_by, "method": method,
            "source": dict(source), "files": dict(files), "caveats": list(caveats),
            "created_at": now_iso(), "cptbench_version": __version__}


def update_image_provenance(ds_dir: Path, summary: Mapping[str, Any]) -> None:
    record = read_provenance(ds_dir)
    if record is not None:
        record["images"] = {**dict(summary), "updated_at": now_iso()}
        write_provenance(ds_dir, record)


# -------------------------------------------------------------------------------- unpacking
_REFER_NAME = re.compile(r"^(refs\([A-Za-z0-9_-]+\)\.p|instances\.json)$")


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[tuple[zipfile.ZipFile | None, list[tuple[str, Callable[[], Any]]]]]:
    """The archive opened once, closed on leaving: (the zip file, or None for a tar; its file members
    as (name, open the member))."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield zf, [(i.filename, (lambda i=i: zf.open(i))) for i in zf.infolist() if not i.is_dir()]
        return
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError):
        raise DataError(f"{archive}: neither a zip nor a tar archive; the download is not the refer annotations "
                        f"archive. Delete it and try another --source.") from None
    with tf:
        yield None, [(m.name, (lambda m=m: tf.extractfile(m))) for m in tf.getmembers() if m.isfile()]


def _refer_folder(archive: Path, members: Sequence[tuple[str, Callable[[], Any]]], dataset: str,
                  split_by: str) -> tuple[str, dict[str, Callable[[], Any]]]:
    """The archive's folder holding the refer files: ``<dataset>/``, else its only folder with them."""
    folders: dict[str, dict[str, Callable[[], Any]]] = {}
    for name, opener in members:
        folder, _, base = name.replace("\\", "/").rstrip("/").rpartition("/")
        if _REFER_NAME.match(base):
            folders.setdefault(folder, {})[base] = opener
    want = f"refs({split_by}).p"
    usable = {f: m for f, m in folders.items() if "instances.json" in m and want in m}
    named = [f for f in usable if f.rpartition("/")[2] == dataset]
    if named:
        folder = named[0]
    elif len(usable) == 1:
        folder = next(iter(usable))
    else:
        seen = {f or ".": sorted(m) for f, m in folders.items()}
        raise DataError(f"{archive}: no folder of the archive holds both instances.json and {want} "
                        f"(found {seen or 'no refer files'}); this is not the {dataset} annotations archive.")
    return folder, usable[folder]


def archive_problem(archive: Path, dataset: str, split_by: str) -> str | None:
    """Why ``archive`` is not a complete refer annotations archive of ``dataset`` (None if it is):
    it must open, hold the refer files, and (zip) pass its CRC check."""
    try:
        with _open_archive(archive) as (zf, members):
            _refer_folder(archive, members, dataset, split_by)
            bad = zf.testzip() if zf is not None else None
        if bad:
            return f"not a readable zip archive: member {bad} fails its CRC check (damaged download)"
    except DataError as exc:
        return str(exc).split(": ", 1)[-1]
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        return f"not a readable zip archive ({type(exc).__name__}: {exc})"
    return None


def unpack_refer_archive(archive: Path, ds_dir: Path, dataset: str, split_by: str) -> list[str]:
    """Extract ``instances.json`` and every ``refs(*).p`` of the archive's ``<dataset>/`` folder (or
    of its only folder holding them) into ``ds_dir`` (each file written atomically); returns the
    file names written."""
    from cptbench.results.store import write_atomic

    written = []
    with _open_archive(archive) as (_, members):
        _, files = _refer_folder(archive, members, dataset, split_by)
        ds_dir.mkdir(parents=True, exist_ok=True)
        for base, opener in sorted(files.items()):
            with opener() as src:
                write_atomic(ds_dir / base, src.read())
            written.append(base)
    return written


# ------------------------------------------------------------------------------ annotations
@dataclass
class AnnotationResult:
    dataset: str
    status: str  # downloaded | unpacked (from a local file) | present
    source: str  # the URL or file used ("" when present)
    checksum: str  # how the archive (or the files) were verified
    files: dict[str, dict[str, Any]]
    failures: list[str] = field(default_factory=list)  # sources that failed before the one that worked
    resumed_from: int = 0


def manual_annotation_hint(task, root: Path, entry: ArchiveSource, urls: Sequence[str]) -> str:
    known = []
    if entry.size:
        known.append(f"{entry.size:,} bytes")
    if entry.expected_sha256:
        known.append(f"sha256 {entry.expected_sha256}{'…' if not entry.sha256 else ''}")
    shown = "\n    ".join(u for u in urls if not is_local(u))
    return (f"Download {entry.archive}{' (' + ', '.join(known) + ')' if known else ''} by hand from one of:\n    {shown}\n"
            f"  then run `cptbench data download {task.name} --to {root} --source /path/to/{entry.archive}`, or unpack it "
            f"so that {root / task.dataset / task.refs_file} and {root / task.dataset / 'instances.json'} exist.")


def _present(task, root: Path, event: EventFn) -> AnnotationResult | None:
    ds_dir = root / task.dataset
    names = [task.refs_file, "instances.json"]
    if not all((ds_dir / n).is_file() for n in names):
        return None
    record = load_provenance(ds_dir)
    checks = check_files(ds_dir, names, record)
    current = {c.name: {"size": c.size, "sha256": c.sha256} for c in checks}
    if record is not None and all(c.recorded_sha256 is not None for c in checks):
        changed = [c.name for c in checks if not c.ok]
        if changed:
            raise DataError(f"{ds_dir / changed[0]}: changed since it was recorded in {ds_dir / SOURCE_FILE} "
                            f"({record.get('method')} of {record.get('created_at')}); rerun with --force to download "
                            f"it again, or delete {SOURCE_FILE} to keep your files as they are.")
        src = record.get("source") or {}
        return AnnotationResult(task.dataset, "present", str(src.get("url") or src.get("dataset") or ""),
                                "matches the provenance record", current)
    record = provenance_record(task, "local", {"kind": "local", "note": "found on disk; not fetched by cptbench"}, current)
    write_provenance(ds_dir, record)
    event("note", {"message": f"{task.dataset}: kept the annotation files already in {ds_dir} (not fetched by cptbench); "
                              f"their sha256 is now recorded in {SOURCE_FILE}"})
    return AnnotationResult(task.dataset, "present", "", "recorded now (files found on disk)", current)


def download_annotations(task, root: str | Path, *, sources: Sequence[str] = (), catalog: Catalog | None = None,
                         policy: HttpPolicy = HttpPolicy(), progress: ProgressFn = _no_progress,
                         event: EventFn = _no_event, force: bool = False, expect_sha256: str | None = None) -> AnnotationResult:
    """Make ``<root>/<dataset>/`` hold the task's refer files, fetched from the first source that
    works and verified; already present files are kept (checked against their provenance record)
    unless ``force``. ``expect_sha256`` replaces every known size / digest of the archive (for a
    source that legitimately changed). Raises :class:`OfflineError` when no source can be reached."""
    root = Path(root).expanduser()
    if not force:
        present = _present(task, root, event)
        if present is not None:
            return present
    catalog = catalog or load_catalog()
    entry, urls = annotation_sources(catalog, task.dataset, sources)
    if expect_sha256 and not re.fullmatch(r"[0-9a-f]{64}", expect_sha256.lower()):
        raise DataError(f"--expect-sha256 {expect_sha256!r}: not a sha256 (64 hex digits).")
    failures: list[FetchError] = []
    got: Fetched | None = None
    gate = HostGate()
    check = lambda p: archive_problem(p, task.dataset, task.split_by)  # noqa: E731
    for url in urls:
        # the known size / digest belong to the catalog's archive; another file (a --source of other
        # packaging) is checked against what was recorded for its own name
        name = archive_name(url) or entry.archive
        key = f"{task.dataset}|{name}"
        known = entry if name == entry.archive else ArchiveSource(task.dataset, name, ())
        learned = None if known.sha256 or expect_sha256 else recorded_checksum(key)
        expected_sha = (expect_sha256 or "").lower() or known.sha256 or (learned or {}).get("sha256") or known.sha256_prefix
        expected_size = None if expect_sha256 else known.size or (learned or {}).get("size")
        event("try", {"dataset": task.dataset, "url": url})
        try:
            if is_local(url):
                got = _use_local(url, expected_size, expected_sha, check)
            else:
                got, _ = fetch_first([url], root / DOWNLOAD_DIR / name, gate=gate, expected_size=expected_size,
                                     expected_sha256=expected_sha, policy=policy, check=check,
                                     progress=lambda done, total: progress(f"{task.dataset}: {name}", done, total))
            break
        except FetchError as exc:
            exc.learned = learned  # type: ignore[attr-defined]
            failures.append(exc)
            event("failed", {"dataset": task.dataset, "url": url, "kind": exc.kind, "detail": exc.detail})
    if got is None:
        _raise_all_failed(task, root, entry, urls, failures)
    assert got is not None
    if expect_sha256:
        how = "matches the sha256 given with --expect-sha256"
    elif known.sha256:
        how = "matches the sha256 in the sources file"
    elif learned:
        how = f"matches the sha256 recorded on its first download ({learned.get('recorded_at', '?')})"
    else:
        how = "no published sha256: recorded on this first download" + (
            f" (its first {len(known.sha256_prefix)} hex digits match the published prefix)" if known.sha256_prefix else "")
    if not known.sha256 and not learned:  # first download (or a digest the user vouched for): check it from now on
        record_checksum(key, {"sha256": got.sha256, "size": got.size, "url": got.url, "recorded_at": now_iso()})
    ds_dir = root / task.dataset
    written = unpack_refer_archive(got.path, ds_dir, task.dataset, task.split_by)
    files = file_entries(ds_dir, written)
    source = {"kind": "url" if not is_local(got.url) else "file", "url": got.url, "archive": name,
              "size": got.size, "sha256": got.sha256, "checksum": how, "sources_file": catalog.path}
    write_provenance(ds_dir, provenance_record(task, "download", source, files))
    if not is_local(got.url):
        discard(got.path)
        try:
            (root / DOWNLOAD_DIR).rmdir()
        except OSError:
            pass
    return AnnotationResult(task.dataset, "unpacked" if is_local(got.url) else "downloaded", got.url, how, files,
                            [f"{f.url}: {f.detail}" for f in failures], got.resumed_from)


def _use_local(source: str, expected_size: int | None, expected_sha: str | None,
               check: Callable[[Path], str | None]) -> Fetched:
    path = local_path(source)
    if not path.is_file():
        raise FetchError(source, "http", f"no such file {path}")
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise FetchError(source, "checksum", f"{path} has {size:,} bytes, expected {expected_size:,} (not the known file)")
    digest = file_sha256(path)  # a file that stays put: hashed once, then cached
    if expected_sha and not digest.startswith(expected_sha):
        raise FetchError(source, "checksum", f"{path}: sha256 {digest} does not match the expected {expected_sha}")
    problem = check(path)
    if problem:
        raise FetchError(source, "invalid", f"{path}: {problem}")
    return Fetched(str(path), path, size, digest, 0, 1)


def archive_name(source: str) -> str:
    """The file name a source URL or path ends with (``refcoco.zip`` also for the archive.org copies;
    "" for a URL too malformed to split, which its fetch then reports)."""
    if is_local(source):
        return local_path(source).name
    try:
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)).name
    except ValueError:
        return ""


def _raise_all_failed(task, root: Path, entry: ArchiveSource, urls, failures: list[FetchError]) -> None:
    lines = "\n  ".join(f"{f.url}: {f.detail}" for f in failures)
    hint = manual_annotation_hint(task, root, entry, urls)
    if failures and all(f.kind in ("unreachable", "timeout") for f in failures):
        raise OfflineError(f"{task.dataset}: no network? none of the {len(failures)} sources of {entry.archive} could be "
                           f"reached:\n  {lines}\n{hint}")
    extra = ""
    learned = next((f.learned for f in failures if f.kind == "checksum" and getattr(f, "learned", None)), None)
    if learned:
        extra = (f"\n  The expected sha256 is the one recorded on the first download ({learned.get('url')}, "
                 f"{learned.get('recorded_at')}) in {_checksum_store()}; if the source legitimately changed, pass "
                 f"--expect-sha256 with the new digest (or delete the entry {task.dataset}|{archive_name(learned.get('url') or '')} there).")
    elif any(f.kind == "checksum" for f in failures):
        extra = ("\n  If the archive legitimately changed (or the known checksum is wrong), pass --expect-sha256 "
                 "with the digest you trust.")
    raise DataError(f"{task.dataset}: could not get {entry.archive} from any of its {len(failures)} sources:\n  {lines}{extra}\n{hint}")


# ----------------------------------------------------------------------------------- images
@dataclass(frozen=True)
class ImageNeed:
    image_id: int
    file_name: str
    size: tuple[int, int]  # (W, H) from the annotations; (0, 0) when unknown
    urls: tuple[str, ...]


@dataclass
class ImageSelection:
    needs: list[ImageNeed]
    counts: dict[str, int]  # images per reason: eval splits, k-shot draws (new ones), whole train split
    notes: list[str]
    description: str


def image_urls(file_name: str, coco_url: str | None, catalog: Catalog, image_sources: Sequence[str] = ()) -> tuple[str, ...]:
    out = [_join(p, file_name) for p in image_sources]
    mirror = os.environ.get(IMAGE_MIRROR_ENV, "").strip()
    if mirror:
        out.append(_join(mirror, file_name))
    if coco_url and coco_url.rstrip("/").rpartition("/")[2] == file_name:
        out.append(coco_url)
    out += [p.format(file_name=urllib.parse.quote(file_name)) for p in catalog.image_patterns]
    return tuple(dict.fromkeys(out))


#: the k-shot grid whose training images ``data download`` fetches and ``data check`` requires
#: (the CLI defaults of -k / --seeds are derived from these)
DEFAULT_SHOTS = (1, 2, 4, 8, 16)


def kshot_images(task, ds, shots: Sequence[int], seeds: Sequence[int]) -> tuple[set[int], list[str]]:
    """The image ids of the k-shot training draws (each k > 0 x seed): the very manifests a run
    draws (:meth:`cptbench.run.session.DataSession.manifest`, over the usable train pairs: the pool
    with degenerate expressions left out is the one every run that can run draws from), and notes
    on the k that the split cannot give."""
    from cptbench.run.session import DataSession

    ref_image = {int(r["ref_id"]): int(r["image_id"]) for r in ds.refs_of(task.train_split)}
    if not ref_image:
        return set(), []
    session = DataSession(skip_bad=True, datasets={task.name: ds})
    n_pairs = len(session.train_pairs(task))
    ids: set[int] = set()
    notes = []
    for k in sorted({int(k) for k in shots if int(k) > 0}):
        if k > n_pairs:
            notes.append(f"k={k} left out: the {task.train_split!r} split has only {n_pairs} usable expressions")
            continue
        for seed in seeds:
            ids |= {ref_image[r] for r, _ in session.manifest(task, k, int(seed)).examples}
    return ids, notes


def select_images(task, ds, *, shots: Sequence[int] = DEFAULT_SHOTS, seeds: Sequence[int] = DEFAULT_SEEDS,
                  all_train: bool = False, image_sources: Sequence[str] = (), catalog: Catalog | None = None) -> ImageSelection:
    """The images a run of ``task`` reads: every image of the eval splits, plus the images of the
    k-shot training expressions for each (k, seed), drawn with :func:`cptbench.data.sampling.sample_k_shot`
    exactly as a run draws them (:func:`kshot_images`); or, with
    ``all_train``, every image of the train split."""
    catalog = catalog or load_catalog()
    eval_ids: set[int] = set()
    for split in task.eval_splits:
        eval_ids |= {int(r["image_id"]) for r in ds.refs_of(split)}
    notes: list[str] = []
    if all_train:
        train_ids = {int(r["image_id"]) for r in ds.refs_of(task.train_split)}
        what = "whole train split"
        description = f"eval splits {', '.join(task.eval_splits)} + the whole {task.train_split} split"
    else:
        train_ids, notes = kshot_images(task, ds, shots, seeds)
        what = "k-shot draws"
        description = (f"eval splits {', '.join(task.eval_splits)} + the k-shot training images for k in "
                       f"{','.join(map(str, shots))} x seeds {','.join(map(str, seeds))}")
    needs = []
    for image_id in sorted(eval_ids | train_ids):
        info = ds.coco.imgs[image_id]
        name = ds.image_path(image_id).name
        needs.append(ImageNeed(image_id, name, ds.image_size(image_id), image_urls(name, info.get("coco_url"), catalog, image_sources)))
    return ImageSelection(needs, {"eval splits": len(eval_ids), what: len(train_ids - eval_ids)}, notes, description)


def verify_image(path: Path, size: tuple[int, int] | None) -> str | None:
    """``None`` if ``path`` is a complete image of ``size`` that decodes in full (as runs decode it,
    :func:`cptbench.data.images.decode_rgb`), else what is wrong (one line naming the file)."""
    from cptbench.data.images import ImageFileError, check_image_file, decode_rgb

    problem = check_image_file(path, size if size and tuple(size) != (0, 0) else None)
    if problem:
        return problem
    try:
        decode_rgb(path)
    except ImageFileError as exc:
        return str(exc)
    return None


def _not_an_image(path: Path, size) -> str | None:
    problem = verify_image(path, size)
    if problem is None:
        return None
    head = path.read_bytes()[:64].lstrip().lower()
    looks = " (it looks like an HTML page: a proxy or an error page?)" if head.startswith((b"<!doctype", b"<html", b"<?xml")) else ""
    return f"not a usable image: {problem.split(': ', 1)[-1]}{looks}"


@dataclass
class ImageFetchReport:
    image_dir: Path
    needed: int
    fetched: int = 0
    skipped: int = 0  # already present and valid
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)
    unreachable_hosts: dict[str, str] = field(default_factory=dict)
    missing_list: Path | None = None

    @property
    def offline(self) -> bool:
        return bool(self.failed) and self.fetched == 0 and bool(self.unreachable_hosts)

    def message(self, task_name: str = "", archive: str = "") -> str:
        """What went wrong and what to do by hand (empty when nothing failed)."""
        if not self.failed:
            return ""
        shown = "\n  ".join(f"{n}: {why}" for n, why in self.failed[:5])
        more = f"\n  ... and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
        listed = (f"Their URLs are listed in {self.missing_list}: fetch them by hand into {self.image_dir} "
                  f"(e.g. `wget -nc -i '{self.missing_list}' -P '{self.image_dir}'`)") if self.missing_list else \
                 f"Put them into {self.image_dir}"
        whole = f", or unpack the whole COCO train2014 archive ({archive}) there" if archive else ""
        again = f" Then run `cptbench data download {task_name} ...` again (valid images are kept, partial ones resume)."
        head = ("no network? the image host(s) could not be reached: " +
                "; ".join(f"{h} ({why})" for h, why in self.unreachable_hosts.items()) + ".\n  ") if self.offline else ""
        return (f"{head}{len(self.failed)} of the {self.needed} images needed could not be fetched:\n  {shown}{more}\n"
                f"{listed}{whole}.{again}")


def fetch_images(needs: Sequence[ImageNeed], image_dir: str | Path, *, policy: HttpPolicy = HttpPolicy(),
                 jobs: int = 8, progress: ProgressFn = _no_progress, event: EventFn = _no_event,
                 missing_list: Path | None = None) -> ImageFetchReport:
    """Fetch the images of ``needs`` into ``image_dir`` by file name (a bounded pool of ``jobs``
    threads; each image tries its URLs in order, with retries and resume); images already there
    and valid are skipped, invalid ones fetched again. ``missing_list``: where to write the URLs of
    the images that failed (removed when none failed)."""
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    report = ImageFetchReport(image_dir, len(needs))
    gate = HostGate()

    def one(need: ImageNeed) -> tuple[str, str]:
        dest = image_dir / need.file_name
        if dest.exists() and verify_image(dest, need.size) is None:
            return "skipped", ""
        try:  # an invalid file already there is replaced only by a verified one
            got, _ = fetch_first(need.urls, dest, gate=gate, policy=policy,
                                 check=lambda p: _not_an_image(p, need.size))
        except FetchError as exc:
            tried = getattr(exc, "failures", [exc])
            return "failed", "; ".join(f"{f.url}: {f.detail}" for f in tried)
        return "fetched", got.url

    done = 0
    progress("images", 0, len(needs))
    pool = ThreadPoolExecutor(max_workers=max(1, int(jobs)))
    try:
        futures = {pool.submit(one, need): need for need in needs}
        for fut in as_completed(futures):  # the report is counted here, in the calling thread only
            need = futures[fut]
            status, detail = fut.result()
            if status == "skipped":
                report.skipped += 1
            elif status == "fetched":
                report.fetched += 1
            else:
                report.failed.append((need.file_name, detail))
                event("image_failed", {"file_name": need.file_name, "detail": detail})
            done += 1
            progress("images", done, len(needs))
    finally:  # on Ctrl-C: the queued fetches are dropped, the running ones end (partial files resume later)
        pool.shutdown(wait=True, cancel_futures=True)
    report.failed.sort()
    report.unreachable_hosts = gate.down
    if missing_list is not None:
        if report.failed:
            by_name = {n.file_name: n for n in needs}
            missing_list.parent.mkdir(parents=True, exist_ok=True)
            missing_list.write_text("".join(by_name[n].urls[-1] + "\n" for n, _ in report.failed))
            report.missing_list = missing_list
        else:
            missing_list.unlink(missing_ok=True)
    return report
