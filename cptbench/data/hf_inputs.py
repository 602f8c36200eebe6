"""Reading a Hugging Face copy of RefCOCO / RefCOCO+ / RefCOCOg: its parquet (or arrow) files, the
split each holds, and which of the known column layouts it has (read from the datasets' cards on
the hub; see docs/data.md and :mod:`cptbench.data.hf_schema` for the columns and their types):

* **jxu124** (jxu124/refcoco, refcocoplus, refcocog): one row per ref with the refer fields.
* **lmms-lab** (lmms-lab/RefCOCO, RefCOCOplus, RefCOCOg): one row per object, the image embedded.
* a **per-expression** parquet (Kangheng/refcoco, refcocop): one row per expression; its columns
  are found by name and type (:mod:`cptbench.data.expr_inputs`).

The split of a file comes from its name (``<split>-00000-of-00001[-hash].parquet``), from its folder
(a ``save_to_disk`` folder: ``<split>/data-00000-of-00001.arrow`` beside ``state.json``, the splits
listed in ``dataset_dict.json``; the hub's parquet conversion: ``default/<split>/0000.parquet``), or
from a ``datasets`` cache name (``<builder>-<split>[-00000-of-00003].arrow``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from cptbench.core.errors import DataError

KNOWN_SPLITS = ("train", "val", "validation", "test", "testA", "testB")
_SHARD = re.compile(r"^([A-Za-z][A-Za-z0-9]*)-\d{5}-of-\d{5}")
_CACHE_NAME = re.compile(r"-(" + "|".join(KNOWN_SPLITS) + r")(?:-\d{5}-of-\d{5})?$")
_SAVE_TO_DISK_FILE = re.compile(r"^data-\d{5}-of-\d{5}\.arrow$")
_BATCH = 64


def pyarrow_module():
    """pyarrow (with its parquet reader), or a :class:`DataError` saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError("reading Hugging Face parquet files needs pyarrow: `pip install pyarrow` (or cptbench[test]).") from None
    return pyarrow


@dataclass
class InputFile:
    """One parquet or arrow file of the copy: its Hugging Face split, row count and Arrow schema."""

    path: Path
    hf_split: str
    rows: int
    schema: Any  # pyarrow.Schema

    @property
    def columns(self) -> list[str]:
        """The file's column names."""
        return list(self.schema.names)

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """The file's rows as dicts, a batch at a time; ``columns`` keeps only those (of the ones the file
        has)."""
        pa = pyarrow_module()
        cols = [c for c in columns if c in self.columns] if columns is not None else None
        try:
            if self.path.suffix == ".parquet":
                import pyarrow.parquet as pq

                for batch in pq.ParquetFile(self.path).iter_batches(batch_size=_BATCH, columns=cols):
                    yield batch.to_pylist()
            else:
                with pa.memory_map(str(self.path)) as src:
                    for batch in _arrow_reader(pa, src):
                        if cols is not None:
                            batch = batch.select(cols)
                        for start in range(0, batch.num_rows, _BATCH):
                            yield batch.slice(start, _BATCH).to_pylist()
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{self.path}: cannot be read to the end ({type(exc).__name__}: {exc}); the file is damaged "
                            f"or incomplete: download it again.") from None


def _arrow_reader(pa, src):
    try:
        return pa.ipc.open_stream(src)
    except pa.ArrowInvalid:
        src.seek(0)
        reader = pa.ipc.open_file(src)
        return (reader.get_batch(i) for i in range(reader.num_record_batches))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc}); the save_to_disk folder is damaged: save it again.") from None


def _save_to_disk_split(path: Path) -> str:
    """The split of ``<folder>/data-0000N-of-0000M.arrow`` in a ``save_to_disk`` folder: the folder's
    name, checked against ``state.json`` and the parent's ``dataset_dict.json``."""
    folder = path.parent
    state = _read_json(folder / "state.json") if (folder / "state.json").is_file() else {}
    listed = [f.get("filename") for f in state.get("_data_files") or [] if isinstance(f, dict)] if isinstance(state, dict) else []
    if listed and path.name not in listed:
        raise DataError(f"{path}: not one of the files {folder / 'state.json'} lists ({', '.join(map(str, listed))}); "
                        f"a stale file of an earlier save: delete it or save the dataset again.")
    dict_file = folder.parent / "dataset_dict.json"
    if dict_file.is_file():
        meta = _read_json(dict_file)
        splits = meta.get("splits") if isinstance(meta, dict) else None
        if not isinstance(splits, list) or folder.name not in splits:
            raise DataError(f"{path}: its folder {folder.name!r} is not a split {dict_file} lists ({splits}); "
                            f"pass the save_to_disk folder as it was saved.")
        return folder.name
    named = state.get("_split") if isinstance(state, dict) else None
    if isinstance(named, str) and named:
        return named
    if folder.name in KNOWN_SPLITS:
        return folder.name
    raise DataError(f"{path}: a save_to_disk file whose split is not recorded (no dataset_dict.json above it, no "
                    f"'_split' in state.json, folder {folder.name!r}); put it in a folder named after its split "
                    f"(e.g. val/).")


def split_of(path: Path) -> str:
    """The Hugging Face split a parquet / arrow file holds, from its name or folder (module doc)."""
    if _SAVE_TO_DISK_FILE.match(path.name):
        return _save_to_disk_split(path)
    m = _SHARD.match(path.name)
    if m:
        return m.group(1)
    if path.parent.name in KNOWN_SPLITS:
        return path.parent.name
    m = _CACHE_NAME.search(path.stem)
    if m:
        return m.group(1)
    return path.stem


def table_files(paths: Sequence[str | Path]) -> list[Path]:
    """The parquet / arrow files named or under the folders named (hidden folders such as
    ``.cache/huggingface`` left out)."""
    found: list[Path] = []
    for p in map(Path, paths):
        p = p.expanduser()
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix in (".parquet", ".arrow") and q.is_file()
                            and not any(part.startswith(".") for part in q.relative_to(p).parts))
        elif p.is_file():
            if p.suffix in (".parquet", ".arrow"):
                found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; pass parquet files or a Hugging Face dataset folder.")
    return found


def scan_inputs(paths: Sequence[str | Path]) -> list[InputFile]:
    """The parquet (or arrow) files under ``paths``, with their split, row count and schema."""
    pa = pyarrow_module()
    import pyarrow.parquet as pq

    found = table_files(paths)
    if not found:
        raise DataError(f"no .parquet or .arrow files (nor per-expression <dataset>_<split>.jsonl / MDETR finetune_*.json "
                        f"files) under {', '.join(map(str, paths))}; pass the dataset's files (e.g. a `huggingface-cli "
                        f"download --repo-type dataset` folder).")
    out = []
    for f in found:
        try:
            if f.suffix == ".parquet":
                meta = pq.ParquetFile(f)
                out.append(InputFile(f, split_of(f), meta.metadata.num_rows, meta.schema_arrow))
            else:
                with pa.memory_map(str(f)) as src:
                    reader = _arrow_reader(pa, src)
                    batches = list(reader)
                    schema = reader.schema if hasattr(reader, "schema") else (batches[0].schema if batches else pa.schema([]))
                out.append(InputFile(f, split_of(f), sum(b.num_rows for b in batches), schema))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{f}: not a readable parquet / arrow file ({type(exc).__name__}: {exc}); download it again.") from None
    return out


def hub_identity(paths: Sequence[str | Path]) -> tuple[str | None, str | None]:
    """(dataset id, revision) from a Hugging Face cache path (``datasets--OWNER--NAME/snapshots/REV``)
    or a ``--local-dir`` download's ``.cache/huggingface`` metadata, when there is one."""
    for p in map(lambda q: Path(q).expanduser().resolve(), paths):
        m = re.search(r"datasets--([^/]+?)--([^/]+)/snapshots/([0-9a-f]{40})", str(p))
        if m:
            return f"{m.group(1)}/{m.group(2)}", m.group(3)
        root = p if p.is_dir() else p.parent
        for base in (root, *root.parents[:2]):
            meta = base / ".cache" / "huggingface" / "download"
            if meta.is_dir():
                for f in sorted(meta.rglob("*.metadata")):
                    first = f.read_text(errors="replace").splitlines()[:1]
                    if first and re.fullmatch(r"[0-9a-f]{40}", first[0].strip()):
                        return None, first[0].strip()
    return None, None
