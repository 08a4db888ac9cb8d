"""A small fake of the Slack Web API, served on loopback for the real slack-sdk client.

It answers the methods Handoff calls the way Slack does (JSON bodies, `ok`,
`error`, HTTP 429 with Retry-After), records every call, and can be told to
fail: the next N calls of a method, a full outage, a per-channel rate limit
like chat.postMessage's one message a second, or a channel that refuses posts
(a user who left); and it can be slow (a delay per call of a method).

    with FakeSlack() as fake:
        client = WebClient(token="xoxb-test", base_url=fake.url)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

Answer = tuple[int, dict[str, Any], dict[str, str]]

MANIFEST = Path(__file__).parent.parent / "app_manifest.yml"
# What Slack says a token installed from our manifest may do (auth.test's X-OAuth-Scopes).
MANIFEST_SCOPES: tuple[str, ...] = tuple(
    yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["oauth_config"]["scopes"]["bot"]
)


@dataclass
class Call:
    """One request the fake received, and what it answered."""

    method: str
    args: dict[str, Any]
    at: float  # time.time() when answered
    status: int
    response: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    at_perf: float = 0.0  # time.perf_counter() when answered, for intervals in this process
    peer: tuple[str, int] | None = None  # the client's address: one per connection

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    error: str | None
    times: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops connections under load

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on kept-alive clients, as a stopped server would."""
        with self.sockets_lock:
            sockets, self.open_sockets = list(self.open_sockets), set()
        for sock in sockets:
            with contextlib.suppress(OSError):  # already gone
                sock.shutdown(socket.SHUT_RDWR)


class FakeSlack:
    """Fake Slack Web API on 127.0.0.1; `url` is the base_url to give WebClient."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.users: dict[str, dict[str, Any]] = {}
        self._user_by_email: dict[str, str] = {}
        self.uploads: dict[str, bytes] = {}
        self.rate_limited = 0
        self.url = ""
        self._calls: list[Call] = []
        # By method, so that inspecting one method does not rescan every call.
        self._calls_by_method: defaultdict[str, list[Call]] = defaultdict(list)
        self._ok_by_method: defaultdict[str, list[Call]] = defaultdict(list)
        self._failures: dict[str, list[_Failure]] = {}
        self._down: tuple[int, str] | None = None
        self._refused: dict[str, str] = {}
        self._delays: dict[str, float] = {}
        self._auth_error: str | None = None
        self._scopes: tuple[str, ...] | None = MANIFEST_SCOPES
        self._received: defaultdict[str, int] = defaultdict(int)
        self._per_second: float | None = None
        self._retry_after = 1
        self._last_post: dict[str, float] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        # One lock guards all state; handling is cheap, so requests are served under it.
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "users.lookupByEmail": self._users_lookup_by_email,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.update": self._view,
            "views.push": self._view,
            "views.publish": self._view,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        """Serve on a free loopback port in a daemon thread."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Slack's API servers do
            wbufsize = 1 << 16  # headers and body leave in one write, flushed per request
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, self.rfile.read(length))

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self, b"")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/api/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- set-up -----------------------------------------------------------------------------
    def add_user(
        self,
        user_id: str,
        email: str,
        *,
        tz: str = "Australia/Sydney",
        name: str | None = None,
        tz_offset: int | None = None,
        deleted: bool = False,
    ) -> None:
        """Make a user findable by users.lookupByEmail and users.info (a deactivated
        one too, flagged `deleted`, as Slack does)."""
        name = name or email.split("@")[0]
        with self._lock:
            self._user_by_email[email.lower()] = user_id
            self.users[user_id] = {
                "id": user_id,
                "name": name,
                "real_name": name,
                "tz": tz,
                "tz_offset": 39600 if tz_offset is None else tz_offset,
                "profile": {"email": email, "real_name": name, "display_name": name},
                "deleted": deleted,
            }

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        retry_after: int | None = None,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with `status` (or 200 + `error`)."""
        with self._lock:
            self._failures.setdefault(method, []).append(
                _Failure(status, retry_after, error, times)
            )

    def answer_auth_test(
        self, *, error: str | None = None, scopes: Iterable[str] | None = MANIFEST_SCOPES
    ) -> None:
        """How auth.test answers: `error` (e.g. invalid_auth) with ok false, else ok with
        `scopes` in its X-OAuth-Scopes header (None: no such header, as behind some
        proxies). Default: ok, with every scope of app_manifest.yml."""
        with self._lock:
            self._auth_error = error
            self._scopes = None if scopes is None else tuple(scopes)

    def set_outage(
        self, down: bool, *, status: int = 503, error: str = "service_unavailable"
    ) -> None:
        """While down, every method answers HTTP `status` with `error`."""
        with self._lock:
            self._down = (status, error) if down else None

    def refuse_posts(self, channel: str, error: str) -> None:
        """Answer every chat.postMessage to `channel` (a user id: their DM) 200 with `error`,
        as Slack does for a message it will never deliver."""
        with self._lock:
            self._refused[self._dm_channel(channel)] = error

    def set_delay(self, method: str, seconds: float) -> None:
        """Wait `seconds` before answering each call of `method` (calls still overlap)."""
        with self._lock:
            self._delays[method] = seconds

    def rate_limit_per_channel(self, per_second: float | None, retry_after: int = 1) -> None:
        """Answer chat.postMessage 429 when its channel got a message under 1/per_second ago."""
        with self._lock:
            self._per_second = per_second
            self._retry_after = retry_after
            self._last_post.clear()

    def reset(self) -> None:
        """Forget recorded calls; users, uploads and failure settings stay."""
        with self._lock:
            self._calls.clear()
            self._calls_by_method.clear()
            self._ok_by_method.clear()

    # -- inspection -------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        """Every call in arrival order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        """Every call of a method in arrival order, failed ones included."""
        with self._lock:
            return list(self._calls_by_method[method])

    def successful(self, method: str) -> list[Call]:
        """Calls of a method answered HTTP 200 with ok true."""
        with self._lock:
            return list(self._ok_by_method[method])

    def in_flight(self, method: str) -> int:
        """Calls of a method received and not answered yet (see set_delay)."""
        with self._lock:
            return self._received[method] - len(self._calls_by_method[method])

    def wait_for(self, method: str, *, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Block until `count` successful calls of `method` were recorded; return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            done = self._ok_by_method[method]
            while len(done) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} successful {method} call(s) within {timeout}s, "
                        f"got {len(done)} ({len(self._calls_by_method[method])} in all)"
                    )
                self._lock.wait(left)
            return list(done)

    # -- serving ----------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        url = urlsplit(request.path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if url.path.startswith("/upload/"):
            with self._lock:
                self.uploads[url.path.rsplit("/", 1)[1]] = body
            self._reply(request, 200, b"OK", "text/plain")
            return
        method = url.path.removeprefix("/api/")
        with self._lock:
            self._received[method] += 1
            delay = self._delays.get(method)
        if delay:
            time.sleep(delay)  # outside the lock: a slow Slack still serves calls in parallel
        try:
            args = self._args(headers, body, url.query)
        except ValueError:
            args = {}
            status, response, extra = 200, {"ok": False, "error": "invalid_form_data"}, {}
        else:
            with self._lock:
                try:
                    status, response, extra = self._answer(method, args, headers)
                except Exception as exc:  # a bug here should fail the test, not hang it
                    status, response, extra = 500, {"ok": False, "error": repr(exc)}, {}
        call = Call(
            method,
            args,
            time.time(),
            status,
            response,
            headers,
            at_perf=time.perf_counter(),
            peer=request.client_address,
        )
        with self._lock:
            self._calls.append(call)
            self._calls_by_method[method].append(call)
            if call.ok:
                self._ok_by_method[method].append(call)
            self._lock.notify_all()
        self._reply(request, status, json.dumps(response).encode(), "application/json", extra)

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler,
        status: int,
        payload: bytes,
        kind: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(payload)))
        for name, value in (extra or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)

    @staticmethod
    def _args(headers: dict[str, str], body: bytes, query: str) -> dict[str, Any]:
        """Query string plus a JSON or form-encoded body (form values stay strings)."""
        args: dict[str, Any] = dict(parse_qsl(query))
        if body and headers.get("content-type", "").startswith("application/json"):
            args.update(json.loads(body))
        elif body:
            args.update(parse_qsl(body.decode()))
        return args

    def _answer(self, method: str, args: dict[str, Any], headers: dict[str, str]) -> Answer:
        """Status, JSON and extra headers for one call; runs under the lock."""
        if self._down is not None:
            status, error = self._down
            return status, {"ok": False, "error": error}, {}
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        failure = self._take_failure(method)
        if failure is not None:
            extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            error = failure.error or ("ratelimited" if failure.status == 429 else "internal_error")
            return failure.status, {"ok": False, "error": error}, extra
        if method == "auth.test":
            return self._auth_test_answer()
        handler = self._methods.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        duplicate = self._duplicate_block_id(args)
        if duplicate is not None:
            message = f"[ERROR] duplicate block_id '{duplicate}'"
            return 200, {"ok": False, "error": "invalid_blocks", "errors": [message]}, {}
        refused = self._refused.get(self._dm_channel(args.get("channel")))
        if method == "chat.postMessage" and refused:
            return 200, {"ok": False, "error": refused}, {}
        if method == "chat.postMessage" and self._per_second:
            return self._rate_limited_post(args)
        return 200, handler(args), {}

    @staticmethod
    def _duplicate_block_id(args: dict[str, Any]) -> str | None:
        """Slack refuses a message or view in which two blocks share a block_id."""
        blocks = args.get("blocks")
        view = args.get("view")
        if view is not None:
            view = json.loads(view) if isinstance(view, str) else view
            blocks = view.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        seen: set[str] = set()
        for block in blocks or []:
            block_id = block.get("block_id")
            if block_id in seen:
                return block_id
            if block_id is not None:
                seen.add(block_id)
        return None

    def _rate_limited_post(self, args: dict[str, Any]) -> Answer:
        channel = self._dm_channel(args.get("channel"))
        now = time.monotonic()
        last = self._last_post.get(channel)
        if last is not None and now - last < 1 / (self._per_second or 1):
            self.rate_limited += 1
            retry = {"Retry-After": str(self._retry_after)}
            return 429, {"ok": False, "error": "ratelimited"}, retry
        response = self._chat_post_message(args)
        if response["ok"]:
            self._last_post[channel] = now
        return 200, response, {}

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _next_ts(self) -> str:
        return f"{1700000000 + next(self._ts)}.000100"

    @staticmethod
    def _dm_channel(channel: Any) -> str:
        """A user id as channel means the DM with that user: "U1" -> "DU1"."""
        channel = str(channel or "")
        return "D" + channel if channel[:1] in ("U", "W") else channel

    # -- the methods ------------------------------------------------------------------------
    def _auth_test_answer(self) -> Answer:
        if self._auth_error is not None:
            return 200, {"ok": False, "error": self._auth_error}, {}
        headers = {} if self._scopes is None else {"X-OAuth-Scopes": ",".join(self._scopes)}
        return 200, self._auth_test({}), headers

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "user_id": "UBOT",
            "bot_id": "BBOT",
            "team_id": "T0TEAM",
            "team": "Test",
            "url": "https://test.slack.com/",
        }

    def _users_lookup_by_email(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = self._user_by_email.get(str(args.get("email", "")).lower())
        if user_id is None:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": self.users[user_id]}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("users", "")).split(",")[0]
        return {"ok": True, "channel": {"id": "D" + user_id}}

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        ts = self._next_ts()
        message = {"text": args.get("text"), "blocks": args.get("blocks"), "ts": ts}
        return {
            "ok": True,
            "channel": self._dm_channel(args["channel"]),
            "ts": ts,
            "message": message,
        }

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "channel": args.get("channel"),
            "ts": args.get("ts"),
            "text": args.get("text"),
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel"), str(args.get("message_ts", ""))
        return {
            "ok": True,
            "channel": channel,
            "permalink": f"https://test.slack.com/archives/{channel}/p{ts.replace('.', '')}",
        }

    def _view(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        view = json.loads(view) if isinstance(view, str) else dict(view or {})
        return {"ok": True, "view": {**view, "id": f"V{next(self._ids):04d}"}}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_arguments"}
        return self._view(args)

    def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):04d}"
        return {
            "ok": True,
            "upload_url": f"{self.url.removesuffix('api/')}upload/{file_id}",
            "file_id": file_id,
        }

    def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        files = json.loads(files) if isinstance(files, str) else files or []
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
