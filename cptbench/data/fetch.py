"""HTTP downloads with the standard library (``urllib``): resumable, verified, classified failures.

:func:`fetch_url` downloads one URL to a file atomically (the file appears only complete and
verified), resuming a partial ``<file>.part`` left by an earlier attempt with an HTTP range request
(``If-Range`` guards against a resource that changed meanwhile; a server that ignores ranges is read
from the start again). A dropped connection, a timeout while reading, HTTP 429 or 5xx are retried
with exponential back-off; a DNS failure, a refused or unreachable connection or a connect timeout
are not (that is how a machine without network fails in seconds: :class:`HostGate` then skips the
host for the rest of the command); HTTP 4xx and TLS errors end the try of that URL, and so does a
malformed URL (kind ``url``).
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import random
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cptbench import __version__
from cptbench.core.errors import DataError

USER_AGENT = f"cptbench/{__version__} (python-urllib)"


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -------------------------------------------------------------------------------- callbacks
#: ``progress(label, done, total)``: how far a download is (total None when unknown)
ProgressFn = Callable[[str, int, "int | None"], None]
#: ``event(kind, info)``: a note for the console (library code never prints)
EventFn = Callable[[str, Mapping[str, Any]], None]


def no_progress(label: str, done: int, total: int | None) -> None:
    """The default :data:`ProgressFn`: reports nothing."""
    return None


def no_event(kind: str, info: Mapping[str, Any]) -> None:
    """The default :data:`EventFn`: reports nothing."""
    return None


# ----------------------------------------------------------------------------------- errors
class FetchError(DataError):
    """One URL could not be fetched. ``kind``: unreachable (DNS failure, refused, no route) | timeout
    (while connecting) | http | tls | transient | checksum | invalid (the file fails its check) | url
    (not a valid http(s) URL) | disk (this machine could not write the file: full, read-only)."""

    def __init__(self, url: str, kind: str, detail: str):
        self.url, self.kind, self.detail = url, kind, detail
        super().__init__(f"{url}: {detail}")


class OfflineError(DataError):
    """No source could even be reached (no network, DNS failure, refused connections)."""


# ------------------------------------------------------------------------------------- HTTP
@dataclass(frozen=True)
class HttpPolicy:
    """How patient the fetcher is. ``timeout`` applies to the connect and to each read."""

    timeout: float = 10.0
    retries: int = 3  # extra attempts after a transient failure
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    max_backoff: float = 8.0
    chunk: int = 1 << 16
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (from 1): doubling from ``backoff``, capped at
        ``max_backoff``, plus up to 25 % jitter."""
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * (1.0 + 0.25 * random.random())


_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN,
                       errno.EHOSTDOWN, errno.EADDRNOTAVAIL}


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, one-line detail) of an exception raised while fetching; see :class:`FetchError`."""
    if isinstance(exc, FetchError):
        return exc.kind, exc.detail
    if isinstance(exc, urllib.error.HTTPError):
        kind = "transient" if exc.code == 429 or exc.code >= 500 else "http"
        return kind, f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):  # raised while connecting
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            return "unreachable", f"cannot resolve the host name ({reason.strerror or reason})"
        if isinstance(reason, ssl.SSLError):
            return "tls", f"TLS error ({getattr(reason, 'reason', None) or reason})"
        if isinstance(reason, TimeoutError):
            return "timeout", "connection timed out"
        if isinstance(reason, OSError) and reason.errno in _UNREACHABLE_ERRNOS:
            return "unreachable", f"cannot connect ({reason.strerror or reason})"
        if isinstance(reason, OSError):
            return "transient", f"connection failed ({reason.strerror or reason})"
        return "http", str(reason)
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS error ({exc})"
    if isinstance(exc, (http.client.InvalidURL, ValueError)):  # a malformed URL (bad port, spaces, IPv6 brackets)
        return "url", f"not a valid URL ({exc}); check the URL (a --source, $CPTBENCH_DATA_MIRROR or the sources file)"
    if isinstance(exc, http.client.IncompleteRead):
        return "transient", f"connection dropped after a partial transfer ({exc.partial and len(exc.partial) or 0} bytes in the last read)"
    if isinstance(exc, (TimeoutError, ConnectionError, http.client.HTTPException, OSError)):
        return "transient", f"{type(exc).__name__}: {exc}"
    raise exc


def _is_local_write_error(exc: OSError) -> bool:
    """Whether ``exc`` is this machine's disk refusing a write (full, over quota, read-only), not the network."""
    import errno

    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES)


def _request(url: str, start: int, validator: str | None, policy: HttpPolicy):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
        if validator:
            headers["If-Range"] = validator
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=policy.timeout)


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when the file is missing, unreadable or holds no JSON object."""
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """``data`` as JSON, atomically (:func:`cptbench.results.store.write_atomic`: fsynced, stale temps swept)."""
    from cptbench.core.files import write_atomic

    write_atomic(Path(path), (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def _write_meta(path: Path, meta: dict) -> None:
    """The resume record of a ``.part`` file, written in place: it sits beside the images, where
    :func:`~cptbench.results.store.write_atomic`'s sweep for stale temps would list the whole (possibly
    82k-file) folder on every write. A torn write only costs a restart: :func:`read_json` then finds
    no record and the partial file is fetched again."""
    path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def sha256_of(path: Path) -> str:
    """Uncached sha256 of a file still being written (a ``.part`` download); files that stay put
    go through :func:`cptbench.run.fingerprint.file_sha256` (cached by path, size, mtime)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Fetched:
    """A file fetched and verified: the URL it came from, where it is, its size and sha256, the bytes
    resumed and the attempts made."""

    url: str
    path: Path
    size: int
    sha256: str
    resumed_from: int  # bytes already on disk when this call began (0: a fresh download)
    attempts: int


def discard(*paths: Path) -> None:
    """Delete ``paths`` (those already gone are ignored)."""
    for p in paths:
        p.unlink(missing_ok=True)


def _transfer(url: str, part: Path, meta_path: Path, meta: dict, expected_size: int | None,
              policy: HttpPolicy, progress: Callable[[int, int | None], None]) -> None:
    start = part.stat().st_size if part.exists() else 0
    if start and (start == expected_size or start == meta.get("total")):
        return  # complete already
    try:
        resp = _request(url, start, meta.get("validator") if start else None, policy)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:  # the partial file is not a prefix of what the server has now
            discard(part, meta_path)
            meta.clear()
            raise FetchError(url, "transient", "the server refused to resume the partial file; starting over") from None
        raise
    with resp:
        total: int | None
        if resp.status == 206:
            m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                discard(part, meta_path)
                meta.clear()
                raise FetchError(url, "transient", f"unexpected Content-Range {resp.headers.get('Content-Range')!r}; starting over")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:  # 200: the whole resource (the server ignores ranges, or If-Range says it changed)
            start, mode = 0, "wb"
            length = resp.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
        if expected_size is not None and total is not None and total != expected_size:
            raise FetchError(url, "checksum", f"the server offers {total:,} bytes, expected {expected_size:,} (not the known file)")
        etag = resp.headers.get("ETag") or ""
        validator = etag if etag and not etag.startswith("W/") else resp.headers.get("Last-Modified")
        meta.update(url=url, total=total, validator=validator)
        _write_meta(meta_path, meta)
        done = start
        try:
            with open(part, mode) as f:
                while True:
                    block = resp.read(policy.chunk)
                    if not block:
                        break
                    f.write(block)
                    done += len(block)
                    progress(done, total)
        except OSError as exc:
            if not _is_local_write_error(exc):
                raise
            if part.exists() and part.stat().st_size == 0:
                discard(part, meta_path)
            kept = f"; the {part.stat().st_size:,} bytes written so far are kept for a resume" if part.exists() else ""
            raise FetchError(url, "disk", f"{part}: cannot write ({exc.strerror or exc}){kept}. Free some space on "
                                          f"that disk (or download elsewhere) and run the same command again") from None
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)
        if total is None:
            meta["total"] = done
            _write_meta(meta_path, meta)


def fetch_url(url: str, dest: Path, *, expected_size: int | None = None, expected_sha256: str | None = None,
              policy: HttpPolicy = HttpPolicy(), progress: Callable[[int, int | None], None] | None = None,
              check: Callable[[Path], str | None] | None = None) -> Fetched:
    """Download ``url`` to ``dest``, resuming ``dest.part``; verify size, sha256 (a full digest or a
    leading part of one) and ``check(path) -> problem or None``, then move it into place.
    Raises :class:`FetchError`; a file that fails verification is deleted, a partial transfer that
    gave up is kept for the next call to resume."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    meta_path = dest.with_name(dest.name + ".part.json")
    meta = read_json(meta_path) or {}
    if part.exists() and meta.get("url") != url:  # a partial file from another source: start over
        discard(part, meta_path)
        meta = {}
    resumed_from = part.stat().st_size if part.exists() else 0
    report = progress or (lambda done, total: None)
    attempts = 0
    while True:
        attempts += 1
        try:
            _transfer(url, part, meta_path, meta, expected_size, policy, report)
            break
        except Exception as exc:  # noqa: BLE001 - classified; unknown kinds re-raise
            kind, detail = classify(exc)
            if kind != "transient":
                if kind not in ("unreachable", "timeout", "disk"):  # offline or disk full now: keep it for a resume
                    discard(part, meta_path)
                raise FetchError(url, kind, detail) from None
            if attempts > policy.retries:
                raise FetchError(url, kind, f"{detail}; gave up after {attempts} attempts (the partial file is kept: "
                                            f"the next run resumes it)") from None
            policy.sleep(policy.delay(attempts))
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        discard(part, meta_path)
        raise FetchError(url, "checksum", f"got {size:,} bytes, expected {expected_size:,}; the file was deleted")
    digest = sha256_of(part)
    if expected_sha256 and not digest.startswith(expected_sha256.lower()):
        discard(part, meta_path)
        raise FetchError(url, "checksum", f"sha256 {digest} does not match the expected {expected_sha256}; the file was deleted")
    problem = check(part) if check else None
    if problem:
        discard(part, meta_path)
        raise FetchError(url, "invalid", problem)
    os.replace(part, dest)
    discard(meta_path)
    return Fetched(url, dest, size, digest, resumed_from, attempts)


class HostGate:
    """Hosts found unreachable during one command: later fetches skip them at once (fail fast).
    A DNS failure or a refused connection marks a host down at once; connect timeouts do after
    :attr:`TIMEOUTS` of them with no success in between (one slow connect is no outage)."""

    TIMEOUTS = 3

    def __init__(self):
        self._down: dict[str, str] = {}
        self._timeouts: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def host(url: str) -> str:
        """The host (netloc) of ``url``; the URL itself when it is too malformed to split."""
        try:
            return urllib.parse.urlsplit(url).netloc
        except ValueError:  # a malformed URL: fetch_url says so (kind "url")
            return url

    def why_down(self, url: str) -> str | None:
        """Why ``url``'s host was marked down, or None when it was not."""
        with self._lock:
            return self._down.get(self.host(url))

    def failed(self, exc: "FetchError") -> None:
        """Count the failure ``exc`` against its host: a host that cannot be reached is marked down at
        once, one that times out after :attr:`TIMEOUTS` timeouts."""
        host = self.host(exc.url)
        with self._lock:
            if exc.kind == "timeout":
                self._timeouts[host] = self._timeouts.get(host, 0) + 1
                if self._timeouts[host] < self.TIMEOUTS:
                    return
            if exc.kind in ("unreachable", "timeout"):
                self._down.setdefault(host, exc.detail)

    def succeeded(self, url: str) -> None:
        """Forget the timeouts counted against ``url``'s host."""
        with self._lock:
            self._timeouts.pop(self.host(url), None)

    @property
    def down(self) -> dict[str, str]:
        """The hosts marked down, each with why."""
        with self._lock:
            return dict(self._down)


def fetch_first(urls: Sequence[str], dest: Path, *, gate: HostGate | None = None, **kwargs) -> tuple[Fetched, list[FetchError]]:
    """Try ``urls`` in order; the first that gives a verified file wins. Returns it and the
    failures before it; raises :class:`FetchError` (the last failure, with ``.failures``) if none works."""
    failures: list[FetchError] = []
    for url in urls:
        why = gate.why_down(url) if gate else None
        if why:
            failures.append(FetchError(url, "unreachable", f"{why} (host unreachable earlier in this run)"))
            continue
        try:
            got = fetch_url(url, dest, **kwargs)
        except FetchError as exc:
            if exc.kind == "disk":  # no other source can help a full disk
                exc.failures = failures + [exc]  # type: ignore[attr-defined]
                raise
            failures.append(exc)
            if gate is not None:
                gate.failed(exc)
            continue
        if gate is not None:
            gate.succeeded(url)
        return got, failures
    err = failures[-1] if failures else FetchError("", "http", "no source to try")
    err.failures = failures  # type: ignore[attr-defined]
    raise err


def is_local(source: str) -> bool:
    """Whether ``source`` is a local file (a ``file://`` URL or a path) rather than a remote URL."""
    return source.startswith("file://") or "://" not in source


def local_path(source: str) -> Path:
    """The file a local ``source`` names (``~`` expanded)."""
    if source.startswith("file://"):
        return Path(urllib.request.url2pathname(urllib.parse.urlsplit(source).path))
    return Path(source).expanduser()
