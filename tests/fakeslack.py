"""A small fake of the Slack Web API, served on loopback for the real slack-sdk client.

It answers the methods Handoff calls the way Slack does (JSON bodies, `ok`,
`error`, HTTP 429 with Retry-After), records every call, and can be told to
fail: the next N calls of a method, a full outage, or a per-channel rate limit
like chat.postMessage's one message a second.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int
    response: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    error: str | None
    times: int


class FakeSlack:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.users: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, bytes] = {}
        self.rate_limited = 0
        self._calls: list[Call] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._down = False
        self._per_second: float | None = None
        self._retry_after = 1
        self._last_post: dict[str, float] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                fake._handle(self, self.rfile.read(length))

            def do_GET(self) -> None:  # noqa: N802
                fake._handle(self, b"")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/api/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- set-up and inspection --------------------------------------------------------------
    def add_user(
        self,
        user_id: str,
        email: str,
        *,
        tz: str = "Australia/Sydney",
        name: str | None = None,
        tz_offset: int | None = None,
    ) -> None:
        name = name or email.split("@")[0]
        self.users[user_id] = {
            "id": user_id,
            "name": name,
            "real_name": name,
            "tz": tz,
            "tz_offset": 39600 if tz_offset is None else tz_offset,
            "profile": {"email": email, "real_name": name, "display_name": name},
        }

    @property
    def calls(self) -> list[Call]:
        with self._changed:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        """Every call of a method in arrival order, failed ones included."""
        return [call for call in self.calls if call.method == method]

    def successful(self, method: str) -> list[Call]:
        return [call for call in self.calls_to(method) if call.ok]

    def wait_for(self, method: str, *, count: int = 1, timeout: float = 10.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                done = [c for c in self._calls if c.method == method and c.ok]
                if len(done) >= count:
                    return done
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} successful {method} call(s) within {timeout}s, "
                        f"got {len(done)}"
                    )
                self._changed.wait(left)

    def reset(self) -> None:
        with self._changed:
            self._calls.clear()

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        retry_after: int | None = None,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        with self._changed:
            self._failures.setdefault(method, []).append(
                _Failure(status, retry_after, error, times)
            )

    def set_outage(self, down: bool) -> None:
        self._down = down

    def rate_limit_per_channel(self, per_second: float | None, retry_after: int = 1) -> None:
        self._per_second = per_second
        self._retry_after = retry_after

    # -- serving ------------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        url = urlsplit(request.path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if url.path.startswith("/upload/"):
            self.uploads[url.path.rsplit("/", 1)[1]] = body
            self._reply(request, 200, b"OK", "text/plain")
            return
        method = url.path.removeprefix("/api/")
        args = self._args(headers, body, url.query)
        status, response, extra = self._answer(method, args, headers)
        call = Call(method, args, time.time(), status, response, headers)
        with self._changed:
            self._calls.append(call)
            self._changed.notify_all()
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
        args: dict[str, Any] = dict(parse_qsl(query))
        if body and headers.get("content-type", "").startswith("application/json"):
            args.update(json.loads(body))
        elif body:
            args.update(parse_qsl(body.decode()))
        return args

    def _answer(
        self, method: str, args: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self._down:
            return 503, {"ok": False, "error": "service_unavailable"}, {}
        if self.token and headers.get("authorization") != f"Bearer {self.token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        with self._changed:
            failure = self._take_failure(method)
            if failure is None and method == "chat.postMessage" and self._per_second:
                channel = str(args.get("channel"))
                now = time.monotonic()
                last = self._last_post.get(channel)
                if last is not None and now - last < 1 / self._per_second:
                    self.rate_limited += 1
                    return (
                        429,
                        {"ok": False, "error": "ratelimited"},
                        {"Retry-After": str(self._retry_after)},
                    )
                self._last_post[channel] = now
        if failure is not None:
            extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            error = failure.error or ("ratelimited" if failure.status == 429 else "internal_error")
            return failure.status, {"ok": False, "error": error}, extra
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        return 200, handler(args), {}

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

    # -- the methods ----------------------------------------------------------------------------
    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "user_id": "UBOT",
            "bot_id": "BBOT",
            "team_id": "T0TEAM",
            "team": "Test",
            "url": "https://test.slack.com/",
        }

    def _users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        email = str(args.get("email", "")).lower()
        for user in self.users.values():
            if user["profile"]["email"].lower() == email:
                return {"ok": True, "user": user}
        return {"ok": False, "error": "users_not_found"}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "channel": {"id": "D" + str(args.get("users", "")).split(",")[0]}}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel[0] in "UW":
            channel = "D" + channel
        ts = self._next_ts()
        message = {"text": args.get("text"), "blocks": args.get("blocks"), "ts": ts}
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "channel": args.get("channel"),
            "ts": args.get("ts"),
            "text": args.get("text"),
        }

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
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

    _views_update = _views_push = _views_publish = _view

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        file_id = f"F{next(self._ids):04d}"
        return {
            "ok": True,
            "upload_url": f"{self.url.removesuffix('api/')}upload/{file_id}",
            "file_id": file_id,
        }

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        files = args.get("files")
        files = json.loads(files) if isinstance(files, str) else files or []
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
