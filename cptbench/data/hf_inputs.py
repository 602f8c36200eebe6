"""Reading a Hugging Face copy of RefCOCO / RefCOCO+ / RefCOCOg: its parquet (or ``save_to_disk``
arrow) files, the split each holds, and which of the known column layouts it has (read from the
datasets' cards on the hub; see docs/data.md):

* **jxu124** (jxu124/refcoco, jxu124/refcocoplus, jxu124/refcocog): one row per ref with the refer
  fields (ref_id, ann_id, image_id, split, sentences = [{raw, sent, sent_id, tokens}], sent_ids,
  category_id, file_name) plus raw_anns (JSON of the referred object's COCO annotation),
  raw_image_info (JSON of its COCO image record), raw_sentences, image_path, bbox, captions,
  global_image_id (, anns_id). Splits train / validation / test / testB (refcocog: train /
  validation / test). No images.
* **lmms-lab** (lmms-lab/RefCOCO, RefCOCOplus, RefCOCOg): one row per ref: question_id, image
  (embedded {bytes, path}), question, answer (the referring expressions), segmentation (one
  flattened polygon), bbox ([x, y, w, h]), iscrowd, file_name. Splits val / test / testA / testB
  (RefCOCOg: val / test). No train split, no ref / annotation / sentence ids, no category.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from cptbench.core.errors import DataError

LAYOUT_COLUMNS = {
    "jxu124": {"ref_id", "ann_id", "image_id", "sentences"},
    "lmms-lab": {"question_id", "answer", "bbox", "file_name"},
}
_KNOWN_SPLITS = {"train", "val", "validation", "test", "testA", "testB"}
_BATCH = 64


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError("reading Hugging Face parquet files needs pyarrow: `pip install pyarrow` (or cptbench[test]).") from None
    import pyarrow

    return pyarrow


@dataclass
class InputFile:
    """One parquet or arrow file of the copy: its Hugging Face split, row count and column names."""

    path: Path
    hf_split: str
    rows: int
    columns: list[str]

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """The file's rows as dicts, a batch at a time; ``columns`` keeps only those (of the ones the file
        has)."""
        pa = _pyarrow()
        cols = [c for c in columns if c in self.columns] if columns is not None else None
        if self.path.suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=_BATCH, columns=cols):
                yield batch.to_pylist()
        else:
            with pa.memory_map(str(self.path)) as src:
                for batch in _arrow_reader(pa, src):
                    if cols is not None:
                        batch = batch.select(cols)
                    yield batch.to_pylist()


def _arrow_reader(pa, src):
    try:
        return pa.ipc.open_stream(src)
    except pa.ArrowInvalid:
        src.seek(0)
        reader = pa.ipc.open_file(src)
        return (reader.get_batch(i) for i in range(reader.num_record_batches))


def _split_of(path: Path) -> str:
    m = re.match(r"^([A-Za-z][A-Za-z0-9]*)-\d{5}-of-\d{5}", path.name)
    if m:
        return m.group(1)
    if path.parent.name in _KNOWN_SPLITS:
        return path.parent.name
    return path.stem


def scan_inputs(paths: Sequence[str | Path]) -> list[InputFile]:
    """The parquet (or ``save_to_disk`` arrow) files under ``paths``, with their split and row count."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    found: list[Path] = []
    for p in map(Path, paths):
        p = p.expanduser()
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix in (".parquet", ".arrow") and q.is_file()
                            and not any(part.startswith(".") for part in q.relative_to(p).parts))
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; pass parquet files or a Hugging Face dataset folder.")
    if not found:
        raise DataError(f"no .parquet or .arrow files under {', '.join(map(str, paths))}; pass the dataset's parquet "
                        f"files (e.g. a `huggingface-cli download --repo-type dataset` folder).")
    out = []
    for f in found:
        try:
            if f.suffix == ".parquet":
                meta = pq.ParquetFile(f)
                out.append(InputFile(f, _split_of(f), meta.metadata.num_rows, list(meta.schema_arrow.names)))
            else:
                with pa.memory_map(str(f)) as src:
                    reader = _arrow_reader(pa, src)
                    batches = list(reader)
                rows = sum(b.num_rows for b in batches)
                names = list(batches[0].schema.names) if batches else []
                out.append(InputFile(f, _split_of(f), rows, names))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{f}: not a readable parquet / arrow file ({type(exc).__name__}: {exc}).") from None
    return out


def detect_layout(files: Sequence[InputFile]) -> str:
    """The column layout (``jxu124`` or ``lmms-lab``) every file has; raises :class:`DataError` when a file
    matches none or the files mix layouts."""
    layouts = set()
    for f in files:
        got = [name for name, cols in LAYOUT_COLUMNS.items() if cols <= set(f.columns)]
        if not got:
            raise DataError(f"{f.path}: columns {sorted(f.columns)} match no known layout (jxu124: "
                            f"{sorted(LAYOUT_COLUMNS['jxu124'])} ...; lmms-lab: {sorted(LAYOUT_COLUMNS['lmms-lab'])} ...).")
        layouts.add(got[0])
    if len(layouts) > 1:
        raise DataError(f"the input mixes layouts {sorted(layouts)}; import one Hugging Face dataset at a time.")
    return layouts.pop()


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
