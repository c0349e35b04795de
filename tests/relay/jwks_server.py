"""A JWKS endpoint the tests control: which keys it serves, whether it fails, and a count.

It runs in a thread of its own (the standard library's HTTP server), so that it answers
relay processes even while a test blocks its event loop (waiting for `/readyz`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.keys import ed25519_jwk

JWKS_PATH = "/.well-known/jwks.json"


class JwksServer:
    def __init__(self) -> None:
        self.keys: list[Ed25519PrivateKey] = []
        self.failing = False
        self._fetches = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{JWKS_PATH}"

    @property
    def fetches(self) -> int:
        with self._lock:
            return self._fetches

    def body(self) -> bytes:
        return orjson.dumps({"keys": [ed25519_jwk(key.public_key()) for key in self.keys]})

    def _count(self) -> None:
        with self._lock:
            self._fetches += 1

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._count()
                if server.failing or self.path != JWKS_PATH:
                    self.send_error(503 if server.failing else 404)
                    return
                body = server.body()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test asserts on counts, not on an access log."""

        return Handler

    @contextmanager
    def serving(self) -> Iterator[JwksServer]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
