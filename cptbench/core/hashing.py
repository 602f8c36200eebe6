"""Content hashing: file digests cached like git's index, and digests of JSON-able values.

:func:`file_sha256` hashes a file once and remembers the digest under its (path, size, mtime,
inode) in a small JSON cache (``<cache>/fingerprints.json``): a file is read again only when one of
those changes. :func:`cache_root` is cptbench's cache folder (``$CPTBENCH_CACHE`` or
``~/.cache/cptbench``), shared by this cache, synthref's generated data and the auto batch sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

#: the environment variable naming cptbench's cache folder
CACHE_ENV = "CPTBENCH_CACHE"


def cache_root() -> Path:
    """The cptbench cache folder: ``$CPTBENCH_CACHE``, else ``~/.cache/cptbench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cptbench")


_CACHE_NAME = "fingerprints.json"
_lock = threading.Lock()
_memory: dict[str, dict[str, Any]] = {}
_loaded_from: Path | None = None


def _cache_file() -> Path:
    return cache_root() / _CACHE_NAME


def _load_cache() -> None:
    global _loaded_from
    path = _cache_file()
    if _loaded_from == path:
        return
    _memory.clear()
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            _memory.update({k: v for k, v in data.items() if isinstance(v, dict)})
    except (OSError, ValueError):
        pass
    _loaded_from = path


def _save_cache() -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_memory, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache: failing to write it only costs a re-hash next time


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, cached by (absolute path, size, mtime_ns, inode)."""
    p = Path(path).resolve()
    st = p.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    key = str(p)
    with _lock:
        _load_cache()
        hit = _memory.get(key)
        if hit and hit.get("stamp") == stamp:
            return hit["sha256"]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _lock:
        _memory[key] = {"stamp": stamp, "sha256": digest}
        _save_cache()
    return digest


def digest_of(obj: Any, n: int = 16) -> str:
    """The first ``n`` hex digits of the sha256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:n]
