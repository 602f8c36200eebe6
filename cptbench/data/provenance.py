"""The provenance record beside a dataset's annotation files
(:data:`SOURCE_FILE`, written by ``data download`` and ``data import``):
where the files came from and their sha256, checked by ``data check`` and before files already on
disk are reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cptbench import __version__
from cptbench.core.errors import DataError
from cptbench.data.fetch import now_iso, read_json, write_json
from cptbench.core.hashing import file_sha256

#: written beside the annotations by `cptbench data download` / `data import`: where they came from
SOURCE_FILE = "cptbench-source.json"


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
        """False only when the file changed since it was recorded."""
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
    """Write ``record`` as ``ds_dir``'s provenance record (atomically); returns its path."""
    path = Path(ds_dir) / SOURCE_FILE
    write_json(path, dict(record))
    return path


def file_entries(ds_dir: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The size and sha256 of each named file of ``ds_dir`` (a record's ``files``)."""
    out = {}
    for name in names:
        p = Path(ds_dir) / name
        out[name] = {"size": p.stat().st_size, "sha256": file_sha256(p)}
    return out


def provenance_record(task, method: str, source: Mapping[str, Any], files: Mapping[str, Any],
                      caveats: Sequence[str] = ()) -> dict[str, Any]:
    """A new provenance record: the task, how the files were made (``method``: download, import, local),
    where from (``source``), the ``files``, caveats, the time and the cptbench version."""
    return {"format": 1, "task": task.name, "dataset": task.dataset, "split_by": task.split_by, "method": method,
            "source": dict(source), "files": dict(files), "caveats": list(caveats),
            "created_at": now_iso(), "cptbench_version": __version__}


def update_image_provenance(ds_dir: Path, summary: Mapping[str, Any]) -> None:
    """Set the ``images`` summary of ``ds_dir``'s provenance record (nothing when there is no record)."""
    record = read_provenance(ds_dir)
    if record is not None:
        record["images"] = {**dict(summary), "updated_at": now_iso()}
        write_provenance(ds_dir, record)
