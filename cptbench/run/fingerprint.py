"""Content fingerprints: what decides a result, hashed cheaply, so a changed input makes a new run.

* File digests are :func:`cptbench.core.hashing.file_sha256`'s (cached like git's index).
* :func:`model_fingerprint`: a local or bundled model folder -> the hashes of the files that
  loading reads (config, weights, tokenizer, image processor; not READMEs or logs); a hub id -> its
  resolved commit and the content addresses of the snapshot's files (the blob names of the local
  Hugging Face cache, which are the files' own hashes).
* :func:`data_fingerprint`: the annotation files' hashes, and the list of the task's image files
  with their byte sizes (stat only: an image replaced by one of another size changes the run;
  images are not read in full).

The digests go into every run id (:mod:`cptbench.run.engine`) together with the method config and
:data:`RESULTS_VERSION`; paths do not, so a moved folder keeps its runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from cptbench.core.errors import ModelError
from cptbench.core.hashing import digest_of, file_sha256
from cptbench.data.provenance import SOURCE_FILE

#: Bump when a change in cptbench's code changes results for the same inputs (part of every run id).
RESULTS_VERSION = 2

#: files of a model folder that loading reads (others, e.g. README.md or training logs, do not count)
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".txt", ".model", ".msgpack", ".h5")
MODEL_FILE_EXCLUDE = ("pretrain_summary.json", "trainer_state.json", "training_args.json")

@dataclass(frozen=True)
class Fingerprint:
    """A content digest and where it came from (recorded with every run)."""

    digest: str
    source: dict[str, Any] = field(default_factory=dict)


NO_MODEL = Fingerprint("none", {"kind": "none"})


def _model_files(folder: Path) -> list[Path]:
    files = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES and p.name not in MODEL_FILE_EXCLUDE \
                and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            files.append(p)
    return files


def folder_fingerprint(folder: Path, kind: str) -> Fingerprint:
    """The fingerprint of a model folder: the hashes of the files loading reads (a folder without
    ``config.json`` is a :class:`ModelError`)."""
    files = _model_files(folder)
    if not any(p.name == "config.json" for p in files):
        raise ModelError(f"{folder}: not a model folder (no config.json). Pass a hub id or a folder written by save_pretrained.")
    hashes = {str(p.relative_to(folder)): file_sha256(p) for p in files}
    return Fingerprint(digest_of(hashes), {"kind": kind, "files": hashes})


def hub_snapshot(repo_id: str) -> Path:
    """The local snapshot folder of a hub model (downloaded unless offline; offline it must be cached)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.model"]))
    except Exception as exc:  # offline and not cached, unknown repo, no network
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false")
        hint = ("HF_HUB_OFFLINE is set and the model is not in the local Hugging Face cache: download it once with "
                f"network (`huggingface-cli download {repo_id}`) or pass --model with a local folder"
                if offline else "check the id, the network, or pass --model with a local folder")
        raise ModelError(f"model {repo_id!r}: not a local folder and not found on the Hugging Face hub ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); {hint}.") from exc


def snapshot_fingerprint(snapshot: Path, repo_id: str) -> Fingerprint:
    """Hub snapshot: commit = the snapshot folder's name; file hashes = the cache's blob names."""
    files = {}
    for p in _model_files(snapshot):
        real = p.resolve()
        blob = real.name if real.parent.name == "blobs" else file_sha256(p)
        files[str(p.relative_to(snapshot))] = blob
    if "config.json" not in files:
        raise ModelError(f"model {repo_id!r}: its hub snapshot {snapshot} has no config.json; not a transformers model.")
    return Fingerprint(digest_of(files), {"kind": "hub", "repo": repo_id, "commit": snapshot.name, "files": files})


def model_fingerprint(name_or_path: str | None) -> tuple[Fingerprint, str | None]:
    """(fingerprint, the local folder to load) of a model name: ``bundled:<name>``, a local folder or
    a hub id. Raises :class:`~cptbench.core.errors.ModelError` with the fix when it cannot be found."""
    if not name_or_path or name_or_path == "none":
        return NO_MODEL, None
    from cptbench.models.loading import BUNDLED_PREFIX, resolve_model_path

    try:
        path = resolve_model_path(name_or_path)
    except (FileNotFoundError, ValueError) as exc:
        raise ModelError(str(exc)) from exc
    local = Path(path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelError(f"--model {name_or_path}: {local} is a file; a model is a folder (config.json, weights, tokenizer) or a hub id.")
        kind = "bundled" if str(name_or_path).startswith(BUNDLED_PREFIX) else "local"
        return folder_fingerprint(local, kind), str(local)
    if str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") > 1:
        raise ModelError(f"--model {name_or_path}: no such folder. Pass an existing model folder or a hub id like dandelin/vilt-b32-mlm.")
    snap = hub_snapshot(str(name_or_path))
    return snapshot_fingerprint(snap, str(name_or_path)), str(snap)


def image_list_fingerprint(paths: Iterable[Path]) -> dict[str, Any]:
    """Names and byte sizes of image files (stat only); a missing file counts with size -1."""
    entries = []
    total = 0
    for p in sorted(set(paths), key=lambda q: q.name):
        try:
            size = p.stat().st_size
        except OSError:
            size = -1
        total += max(size, 0)
        entries.append([p.name, size])
    return {"count": len(entries), "bytes": total, "digest": digest_of(entries)}


def data_fingerprint(ds) -> Fingerprint:
    """A refer-layout dataset: its annotation files and the images its refs use."""
    annotations = {ds.refs_path.name: file_sha256(ds.refs_path), ds.instances_path.name: file_sha256(ds.instances_path)}
    images = image_list_fingerprint(ds.image_path(i) for i in {int(r["image_id"]) for r in ds.refs})
    source: dict[str, Any] = {"annotations": annotations, "images": images, "image_layout": ds.image_layout}
    sidecar = ds.dir / SOURCE_FILE
    if sidecar.is_file():
        try:
            source["provenance"] = json.loads(sidecar.read_text())
        except ValueError:
            source["provenance"] = {"error": f"{sidecar} is not valid JSON"}
    return Fingerprint(digest_of({"annotations": annotations, "images": images["digest"]}), source)
