"""The small HTTP server behind /healthz, /readyz and /metrics.

Why the standard library's ``ThreadingHTTPServer`` and not FastAPI/uvicorn: three GET routes do not need
an ASGI stack, and the server must work the same inside every workload — blocking loops (sink, execute),
asyncio ones (ingest) — without owning or sharing an event loop. Each request gets its own thread, so a
slow readiness check never delays a liveness probe or a scrape. The server runs in one daemon thread and
speaks HTTP/1.0 (one request per connection: nothing to keep alive across a shutdown).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Response = tuple[int, bytes, str]  #: status, body, content type
Endpoint = Callable[[Mapping[str, str]], Response]  #: called with the request headers

_log = logging.getLogger("tradeplane.workload.http")

JSON_TYPE = "application/json"


def json_response(status: int, body: Mapping[str, Any]) -> Response:
    return status, (json.dumps(body, default=str) + "\n").encode(), JSON_TYPE


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck request thread never holds the process at exit
    endpoints: Mapping[str, Endpoint]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "tradeplane-workload"

    def do_GET(self) -> None:  # the http.server naming convention
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        endpoint = self.server.endpoints.get(path)
        if endpoint is None:
            status, body, ctype = json_response(
                404, {"error": f"no endpoint {path}", "endpoints": sorted(self.server.endpoints)}
            )
        else:
            try:
                status, body, ctype = endpoint({k.lower(): v for k, v in self.headers.items()})
            except Exception as exc:
                _log.exception("endpoint failed", extra={"path": path})
                status, body, ctype = json_response(500, {"error": f"{type(exc).__name__}: {exc}"})
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes arrive every few seconds: access lines go to DEBUG, not into the workload's log stream.
        _log.debug("http " + format, *args)


class HttpEndpoints:
    """Serves ``endpoints`` (path → function) on ``host:port`` from a daemon thread; port 0 picks a free one."""

    def __init__(self, host: str, port: int, endpoints: Mapping[str, Endpoint]) -> None:
        self._host = host
        self._requested_port = port
        self._endpoints = dict(endpoints)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        server_cls = _Server6 if ":" in self._host else _Server  # "::" and other IPv6 literals
        try:
            server = server_cls((self._host, self._requested_port), _Handler)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {self._host}:{self._requested_port}: {exc.strerror}") from exc
        server.endpoints = self._endpoints
        self._server = server
        # A short poll interval: close() waits up to one interval for the accept loop to notice.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="tp-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was requested)."""
        if self._server is None:
            raise RuntimeError("the HTTP server is not started")
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        """Stop accepting and release the port (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
