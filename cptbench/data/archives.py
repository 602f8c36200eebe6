"""Refer annotation archives (zip or tar): checking that one holds a dataset's refer files
(``instances.json`` and ``refs(<splitBy>).p``) and unpacking them into the dataset's folder."""

from __future__ import annotations

import contextlib
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from cptbench.core.errors import DataError

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
    from cptbench.core.files import write_atomic

    written = []
    with _open_archive(archive) as (_, members):
        _, files = _refer_folder(archive, members, dataset, split_by)
        ds_dir.mkdir(parents=True, exist_ok=True)
        for base, opener in sorted(files.items()):
            with opener() as src:
                write_atomic(ds_dir / base, src.read())
            written.append(base)
    return written
