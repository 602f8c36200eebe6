"""A local HTTP server on 127.0.0.1 for download tests: serves byte strings by path, supports
``Range`` / ``If-Range`` (206 / 416), and can misbehave per path: drop the connection half way,
ignore ranges, answer 404 or 503. Every request is logged as (path, Range header)."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one response per connection: a dropped transfer is a short body

    def log_message(self, *args):  # quiet
        return

    def do_GET(self):
        srv: "FileServer" = self.server.owner  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        rng = self.headers.get("Range")
        with srv.lock:
            srv.log.append((path, rng))
            flags = srv.flags.get(path, {})
            drop = flags.get("drop", 0)
            if drop:
                flags["drop"] = drop - 1
            fail = flags.get("fail", 0)
            if fail:
                flags["fail"] = fail - 1
        if fail:
            self.send_error(503, "try again")
            return
        if path not in srv.files:
            self.send_error(404, "Not Found")
            return
        data = srv.files[path]
        etag = '"' + hashlib.sha1(data).hexdigest() + '"'
        start, status = 0, 200
        m = re.match(r"bytes=(\d+)-$", rng or "")
        if m and not flags.get("no_range"):
            if_range = self.headers.get("If-Range")
            if not if_range or if_range == etag:
                start = int(m.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", flags.get("type", "application/octet-stream"))
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if drop:
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class FileServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.flags: dict[str, dict] = {}
        self.log: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, data: bytes, **flags) -> str:
        self.files[path] = data
        if flags:
            self.flags[path] = dict(flags)
        return self.url(path)

    def requests(self, path: str) -> list[str | None]:
        return [r for p, r in self.log if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url(path: str = "/x") -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}{path}"
