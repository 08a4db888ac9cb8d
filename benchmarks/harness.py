"""Processes for benchmarks that must not share a GIL with the app they measure.

`serve_app` runs Handoff the way `handoff run` does (waitress + Bolt, the outbox
worker and the scheduler) in a process of its own. `send_requests` is the other
side of the wire, the way Slack is another machine: threads, each on its own
keep-alive connection, sending requests (Slack ones signed just before they
leave, as Slack signs them) and timing each round trip. Start both with the
"spawn" context, so neither inherits the benchmark's threads or state.
"""

from __future__ import annotations

import gc
import http.client
import logging
import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.slackreq import sign  # noqa: E402


@dataclass(frozen=True)
class Request:
    """GET `path`, or POST `body` to it (a Slack request: signed on sending when `secret`)."""

    path: str
    body: str | None = None
    secret: str | None = None
    content_type: str = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Sample:
    sent: float  # wall clock (time.time()) as the request left, comparable across processes
    seconds: float  # until the whole response was read
    status: int


def serve_app(
    settings: Any,
    definition_path: str,
    db_url: str,
    conn: Connection,
    sources_path: str | None = None,
) -> None:
    """The app, started and stopped as `handoff run` does it: sends its port, serves until
    SIGTERM, then finishes in-flight work and exits."""
    from bot.app import build_services
    from bot.crm.sources import load_sources
    from bot.definition import load_definition
    from bot.server import HandoffServer
    from store.db import Database

    # "Task queue depth is N": every waitress thread busy, the request waits its turn.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    definition = load_definition(Path(definition_path))
    sources = load_sources(sources_path) if sources_path else None
    services = build_services(settings, definition, Database(db_url), sources)
    server = HandoffServer(services, host="127.0.0.1", port=0)
    conn.send(server.port)
    conn.close()
    server.run()


def start_app_process(
    settings: Any, definition_path: Path, db_url: str, sources_path: Path | None = None
) -> tuple[Any, str]:
    """`serve_app` in a spawned process; returns the process and the app's base URL.
    Stop it with terminate() (SIGTERM: it finishes in-flight work) and join()."""
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    sources = str(sources_path) if sources_path else None
    process = spawn.Process(
        target=serve_app, args=(settings, str(definition_path), db_url, send, sources)
    )
    process.start()
    send.close()
    if not receive.poll(60):
        raise SystemExit("the app did not start")
    return process, f"http://127.0.0.1:{receive.recv()}"


def send_requests(base_url: str, requests: list[Request], threads: int) -> list[Sample]:
    """Send every request, `threads` at a time (each thread takes the next one when its
    answer is in); one Sample per request, in sending order."""
    # This process imported the benchmark's modules too; a full collection over them
    # would stall every clicker for tens of milliseconds in the middle of the timings.
    gc.collect()
    gc.freeze()
    host, port = base_url.removeprefix("http://").split(":")
    samples: list[Sample | None] = [None] * len(requests)
    lock = threading.Lock()
    queue = iter(range(len(requests)))

    def worker() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            while True:
                with lock:
                    index = next(queue, None)
                if index is None:
                    return
                samples[index] = _send(connection, requests[index])
        finally:
            connection.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return [sample for sample in samples if sample is not None]


def _send(connection: http.client.HTTPConnection, request: Request) -> Sample:
    headers: dict[str, str] = {}
    body = request.body.encode() if request.body is not None else None
    if request.body is not None:
        headers["Content-Type"] = request.content_type
        if request.secret is not None:
            headers.update(sign(request.body, request.secret))
    sent, start = time.time(), time.perf_counter()
    connection.request("POST" if body is not None else "GET", request.path, body, headers)
    response = connection.getresponse()
    response.read()
    return Sample(sent, time.perf_counter() - start, response.status)
