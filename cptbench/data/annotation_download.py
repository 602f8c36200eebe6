"""Getting a RefCOCO-family task's refer annotations over HTTP (or from a local archive).

:func:`download_annotations` tries the sources of a dataset in order (``--source`` first, then
``$CPTBENCH_DATA_MIRROR``, then ``sources.yaml``; :mod:`cptbench.data.catalog`), checks the size and
sha256 when known (else records the digest on first download and checks it afterwards), unpacks the
refer files (``instances.json``, ``refs(*).p``; :mod:`cptbench.data.archives`) into
``<root>/<dataset>/`` and writes the provenance sidecar (:mod:`cptbench.data.provenance`). HTTP goes
through :mod:`cptbench.data.fetch`. Library code never prints: progress goes through a
``progress(label, done, total)`` callback and notes through ``event(kind, info)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cptbench.core.errors import DataError
from cptbench.data.archives import archive_problem, unpack_refer_archive
from cptbench.data.catalog import (ArchiveSource, Catalog, annotation_sources, archive_name, checksum_store,
                                   load_catalog, record_checksum, recorded_checksum)
from cptbench.data.fetch import (EventFn, FetchError, Fetched, HostGate, HttpPolicy, OfflineError, ProgressFn, discard,
                                 fetch_first, is_local, local_path, no_event, no_progress, now_iso)
from cptbench.data.provenance import check_files, file_entries, load_provenance, provenance_record, write_provenance
from cptbench.core.hashing import file_sha256
from cptbench.data.provenance import SOURCE_FILE

#: where archives are downloaded (inside the data root; removed once unpacked)
DOWNLOAD_DIR = ".cptbench-downloads"


@dataclass
class AnnotationResult:
    """What :func:`download_annotations` did for one dataset: its ``status``, the source used, how the
    files were verified, and their sizes and sha256."""

    dataset: str
    status: str  # downloaded | unpacked (from a local file) | present
    source: str  # the URL or file used ("" when present)
    checksum: str  # how the archive (or the files) were verified
    files: dict[str, dict[str, Any]]
    failures: list[str] = field(default_factory=list)  # sources that failed before the one that worked
    resumed_from: int = 0


def manual_annotation_hint(task, root: Path, entry: ArchiveSource, urls: Sequence[str]) -> str:
    """How to get ``entry``'s archive by hand (its size and sha256 when known, the URLs to try) and where
    its files must end up."""
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
    """The task's annotation files already on disk, checked against their provenance record (a
    changed file is refused); files without a record get one, and a file the record lacks is added
    to it with a caveat (the record's source is kept, never replaced). ``None`` when a file is missing."""
    ds_dir = root / task.dataset
    names = [task.refs_file, "instances.json"]
    if not all((ds_dir / n).is_file() for n in names):
        return None
    record = load_provenance(ds_dir)
    checks = check_files(ds_dir, names, record)
    current = {c.name: {"size": c.size, "sha256": c.sha256} for c in checks}
    if record is not None:
        changed = [c.name for c in checks if not c.ok]
        if changed:
            raise DataError(f"{ds_dir / changed[0]}: changed since it was recorded in {ds_dir / SOURCE_FILE} "
                            f"({record.get('method')} of {record.get('created_at')}); rerun with --force to download "
                            f"it again, or delete {SOURCE_FILE} to keep your files as they are.")
        unrecorded = [c.name for c in checks if c.recorded_sha256 is None]
        src = record.get("source") or {}
        how = "matches the provenance record"
        if unrecorded:
            record = dict(record)
            record["files"] = {**(record.get("files") or {}), **{n: current[n] for n in unrecorded}}
            note = (f"{', '.join(unrecorded)} found on disk on {now_iso()}, not in this record's source; "
                    f"its sha256 was added to the record then")
            record["caveats"] = [*(record.get("caveats") or []), note]
            write_provenance(ds_dir, record)
            event("note", {"message": f"{task.dataset}: {note} ({ds_dir / SOURCE_FILE}; its source is kept)"})
            how += f"; {', '.join(unrecorded)} added to it"
        return AnnotationResult(task.dataset, "present", str(src.get("url") or src.get("dataset") or ""), how, current)
    record = provenance_record(task, "local", {"kind": "local", "note": "found on disk; not fetched by cptbench"}, current)
    write_provenance(ds_dir, record)
    event("note", {"message": f"{task.dataset}: kept the annotation files already in {ds_dir} (not fetched by cptbench); "
                              f"their sha256 is now recorded in {SOURCE_FILE}"})
    return AnnotationResult(task.dataset, "present", "", "recorded now (files found on disk)", current)


def download_annotations(task, root: str | Path, *, sources: Sequence[str] = (), catalog: Catalog | None = None,
                         policy: HttpPolicy = HttpPolicy(), progress: ProgressFn = no_progress,
                         event: EventFn = no_event, force: bool = False, expect_sha256: str | None = None) -> AnnotationResult:
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
    won: tuple[_Attempt, Fetched] | None = None
    gate = HostGate()
    check = lambda p: archive_problem(p, task.dataset, task.split_by)  # noqa: E731
    for url in urls:
        attempt = _Attempt.of(task, entry, url, expect_sha256)
        event("try", {"dataset": task.dataset, "url": url})
        try:
            won = attempt, attempt.fetch(root, gate, policy, check, progress)
            break
        except FetchError as exc:
            exc.learned = attempt.learned  # type: ignore[attr-defined]
            failures.append(exc)
            event("failed", {"dataset": task.dataset, "url": url, "kind": exc.kind, "detail": exc.detail})
    if won is None:
        _raise_all_failed(task, root, entry, urls, failures)
    assert won is not None
    attempt, got = won
    how = attempt.how_checked()
    if not attempt.known.sha256 and not attempt.learned:  # first download (or a digest the user vouched for): check it from now on
        record_checksum(attempt.key, {"sha256": got.sha256, "size": got.size, "url": got.url, "recorded_at": now_iso()})
    ds_dir = root / task.dataset
    written = unpack_refer_archive(got.path, ds_dir, task.dataset, task.split_by)
    files = file_entries(ds_dir, written)
    source = {"kind": "url" if not is_local(got.url) else "file", "url": got.url, "archive": attempt.name,
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


@dataclass(frozen=True)
class _Attempt:
    """One source of an archive and what it is checked against: the known size / digest belong to
    the catalog's archive; another file (a --source of other packaging) is checked against what was
    recorded for its own name on its first download."""

    url: str
    name: str  # the archive's file name
    key: str  # "<dataset>|<name>" in the checksum store
    known: ArchiveSource
    learned: dict | None  # what the first download of this name recorded
    expect_sha256: str | None

    @classmethod
    def of(cls, task, entry: ArchiveSource, url: str, expect_sha256: str | None) -> "_Attempt":
        """The attempt of ``url`` for ``task``'s archive ``entry``."""
        name = archive_name(url) or entry.archive
        key = f"{task.dataset}|{name}"
        known = entry if name == entry.archive else ArchiveSource(task.dataset, name, ())
        learned = None if known.sha256 or expect_sha256 else recorded_checksum(key)
        return cls(url, name, key, known, learned, expect_sha256)

    @property
    def expected_sha(self) -> str | None:
        """The digest (or published prefix) the file must have."""
        return ((self.expect_sha256 or "").lower() or self.known.sha256 or (self.learned or {}).get("sha256")
                or self.known.sha256_prefix)

    @property
    def expected_size(self) -> int | None:
        """The size the file must have (none with --expect-sha256)."""
        return None if self.expect_sha256 else self.known.size or (self.learned or {}).get("size")

    def fetch(self, root: Path, gate: HostGate, policy: HttpPolicy, check, progress: ProgressFn) -> Fetched:
        """The verified archive from this source; :class:`FetchError` when it cannot be had."""
        if is_local(self.url):
            return _use_local(self.url, self.expected_size, self.expected_sha, check)
        got, _ = fetch_first([self.url], root / DOWNLOAD_DIR / self.name, gate=gate, expected_size=self.expected_size,
                             expected_sha256=self.expected_sha, policy=policy, check=check,
                             progress=lambda done, total: progress(f"{self.key.split('|')[0]}: {self.name}", done, total))
        return got

    def how_checked(self) -> str:
        """How the fetched archive was verified, in words (for the console and the provenance)."""
        if self.expect_sha256:
            return "matches the sha256 given with --expect-sha256"
        if self.known.sha256:
            return "matches the size and sha256 pinned in the sources file"
        if self.learned:
            return f"matches the sha256 recorded on its first download ({self.learned.get('recorded_at', '?')})"
        prefix = self.known.sha256_prefix
        return "no published sha256: recorded on this first download" + (
            f" (its first {len(prefix)} hex digits match the published prefix)" if prefix else "")


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
                 f"{learned.get('recorded_at')}) in {checksum_store()}; if the source legitimately changed, pass "
                 f"--expect-sha256 with the new digest (or delete the entry {task.dataset}|{archive_name(learned.get('url') or '')} there).")
    elif any(f.kind == "checksum" for f in failures):
        extra = ("\n  If the archive legitimately changed (or the known checksum is wrong), pass --expect-sha256 "
                 "with the digest you trust.")
    raise DataError(f"{task.dataset}: could not get {entry.archive} from any of its {len(failures)} sources:\n  {lines}{extra}\n{hint}")
