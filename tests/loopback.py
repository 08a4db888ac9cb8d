"""The HTTP server under the fake CRM APIs: real HTTP on 127.0.0.1, kept-alive
connections, a thread per connection. A fake subclasses `LoopbackFake` and answers
in `_handle(request, raw_body)`; `url` is its base URL once started."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections under load


class LoopbackFake:
    url = ""
    _server: ThreadingHTTPServer | None = None

    def _handle(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs do
            wbufsize = 1 << 16  # headers and body leave in one write (no delayed-ACK stall)
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                fake._handle(self, b"")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, self.rfile.read(length))

            do_PATCH = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
