"""The sources file (``sources.yaml``): where each dataset's refer annotation archive and the COCO
train2014 images can be fetched from, in which order sources are tried, and the sha256 recorded on
the first download of an archive that has no published one (checked on every later download).
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from cptbench.core.errors import DataError
from cptbench.data.fetch import is_local, local_path, read_json, write_json

SOURCES_ENV = "CPTBENCH_SOURCES"
MIRROR_ENV = "CPTBENCH_DATA_MIRROR"
#: digests of archives without a published checksum, recorded on first download (in the cache folder)
CHECKSUMS_FILE = "download-checksums.json"


@dataclass(frozen=True)
class ArchiveSource:
    """One dataset's annotation archive in the sources file: its file name, the URLs to try in order, and
    its size and sha256 (or a published sha256 prefix) when known."""

    dataset: str
    archive: str
    urls: tuple[str, ...]
    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    note: str = ""

    @property
    def expected_sha256(self) -> str | None:
        """The full sha256 when known, else the published prefix; None when neither is."""
        return self.sha256 or self.sha256_prefix


@dataclass(frozen=True)
class Catalog:
    """The parsed sources file: the annotation archive of each dataset, the URL patterns of the COCO
    train2014 images and the name of the whole image archive."""

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


def join_url(prefix: str, name: str) -> str:
    """``name`` (URL-quoted) appended to the folder URL ``prefix``."""
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
        out.append(join_url(mirror, entry.archive))
    out += list(entry.urls)
    return entry, list(dict.fromkeys(out))


def archive_name(source: str) -> str:
    """The file name a source URL or path ends with (``refcoco.zip`` also for the archive.org copies;
    "" for a URL too malformed to split, which its fetch then reports)."""
    if is_local(source):
        return local_path(source).name
    try:
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path)).name
    except ValueError:
        return ""


# ---------------------------------------------------------------------------- checksum records
_store_lock = threading.Lock()


def checksum_store() -> Path:
    """The file of sha256 digests recorded on first downloads (in the cache folder)."""
    from cptbench.core.hashing import cache_root

    return cache_root() / CHECKSUMS_FILE


def recorded_checksum(key: str) -> dict | None:
    """The entry (sha256, size, url, recorded_at) recorded for ``key`` (``<dataset>|<archive>``) on its
    first download, or None."""
    return (read_json(checksum_store()) or {}).get(key)


def record_checksum(key: str, entry: dict) -> None:
    """Record ``entry`` for ``key`` in the checksum store (thread-safe; a store that cannot be written is
    left as it is)."""
    with _store_lock:
        data = read_json(checksum_store()) or {}
        data[key] = entry
        try:
            write_json(checksum_store(), data)
        except OSError:
            pass  # the sidecar still holds the digest

