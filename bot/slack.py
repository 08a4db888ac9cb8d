"""The Slack Web API client and the email <-> Slack user directory."""

from __future__ import annotations

import http.client
import logging
import re
import select as select_module
import ssl
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import BytesIO
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from bot import clock
from bot.metrics import SLACK_CALLS, SLACK_RATE_LIMITED
from store.db import Database
from store.models import SlackUser

logger = logging.getLogger(__name__)

# How long a users.lookupByEmail answer is trusted before asking Slack again.
DIRECTORY_TTL = timedelta(hours=12)


class KeepAliveWebClient(WebClient):
    """slack-sdk's WebClient, reusing one HTTP/1.1 connection per thread.

    The stock transport is urllib, which sends `Connection: close` and so pays a TCP
    (and TLS) handshake on every call. This replaces only the single-request step:
    request building, retry handlers and error handling stay slack-sdk's. As with
    urllib, a failure to send is a URLError and a failure to read is raised as is.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._auth_answer: Any = None
        self._local = threading.local()
        # Each thread's connections, by id, forgotten when the thread ends.
        self._every_thread: weakref.WeakValueDictionary[int, _Connections] = (
            weakref.WeakValueDictionary()
        )

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        """Every Web API call, counted by method and result for /metrics."""
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            SLACK_CALLS.labels(api_method, _result(exc.response)).inc()
            raise
        except Exception:
            SLACK_CALLS.labels(api_method, "network_error").inc()
            raise
        SLACK_CALLS.labels(api_method, "ok").inc()
        return response

    def auth_test(self, **kwargs: Any) -> Any:
        """Who the token belongs to. Slack's first yes is kept: it does not change while the
        process runs, and Bolt asks again on its first request (bot/app.py)."""
        if kwargs or self._auth_answer is None:
            answer = super().auth_test(**kwargs)
            if not kwargs:
                self._auth_answer = answer
            return answer
        return self._auth_answer

    def close(self) -> None:
        """Close every thread's connections (a thread that calls again reconnects)."""
        for connections in list(self._every_thread.values()):
            for connection in connections.values():
                connection.close()

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if self.proxy is not None:
            return super()._perform_urllib_http_request_internal(url, req)
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {name.title(): value for name, value in req.header_items()}
        connection = self._connection(parts.scheme, parts.netloc)
        try:
            try:
                connection.request(req.get_method(), target, req.data, headers)
            except OSError as exc:
                raise URLError(exc) from exc
            response = connection.getresponse()
            body = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        if not 200 <= response.status < 300:
            raise HTTPError(url, response.status, response.reason, response.msg, BytesIO(body))
        charset = response.msg.get_content_charset() or "utf-8"
        return {"status": response.status, "headers": response.msg, "body": body.decode(charset)}

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        """This thread's connection to `netloc`, reopened if the server hung up."""
        connections: _Connections | None = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = _Connections()
            self._every_thread[id(connections)] = connections
        key = f"{scheme}://{netloc}"
        connection = connections.get(key)
        if connection is not None and _hung_up(connection):
            connection.close()
        if connection is None:
            if scheme == "https":
                context = self.ssl or ssl.create_default_context()
                connection = http.client.HTTPSConnection(
                    netloc, timeout=self.timeout, context=context
                )
            else:
                connection = http.client.HTTPConnection(netloc, timeout=self.timeout)
            connections[key] = connection
        return connection


_ERROR_CODE = re.compile(r"[a-z_]{1,40}")


def _result(response: Any) -> str:
    """A bounded label for a failed call: http_429, or Slack's error code."""
    if response.status_code == 429:
        return "http_429"
    error = str(response.get("error") or "")
    return error if _ERROR_CODE.fullmatch(error) else f"http_{response.status_code}"


class _Connections(dict[str, http.client.HTTPConnection]):
    """One thread's connections, closed when the thread ends and drops them."""

    def __del__(self) -> None:
        for connection in self.values():
            connection.close()


def _hung_up(connection: http.client.HTTPConnection) -> bool:
    """An idle kept-alive socket that is readable has been closed by the server."""
    sock = connection.sock
    if sock is None:
        return False
    readable, _, _ = select_module.select([sock], [], [], 0)
    return bool(readable)


def make_client(token: str, base_url: str, *, timeout: int = 10) -> WebClient:
    """A WebClient that keeps connections alive and retries connection errors, 5xx
    and 429 (after Retry-After)."""
    if not base_url.endswith("/"):
        base_url += "/"
    return KeepAliveWebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
            CountedRateLimitRetryHandler(max_retry_count=3),
        ],
    )


class CountedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handling (wait Retry-After, try again), counting every 429 for
    /metrics: a call is counted once, by how it ended, so a 429 it got past would not show."""

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None and response.status_code == 429:
            method = urlsplit(request.url).path.rsplit("/", 1)[-1]
            SLACK_RATE_LIMITED.labels(method).inc()
        return super().can_retry(state=state, request=request, response=response, error=error)


@dataclass(frozen=True)
class SlackPerson:
    email: str
    user_id: str
    tz: str | None
    name: str | None


@dataclass(frozen=True)
class _Entry:
    person: SlackPerson | None  # None: Slack does not know the email
    fetched_at: datetime


_slack_user = SlackUser.__table__  # type: ignore[attr-defined]
_ALL_ENTRIES = select(
    _slack_user.c.email,
    _slack_user.c.user_id,
    _slack_user.c.tz,
    _slack_user.c.name,
    _slack_user.c.found,
    _slack_user.c.fetched_at,
)


def _upsert(insert_for: Any) -> Any:
    statement = insert_for(_slack_user)
    return statement.on_conflict_do_update(
        index_elements=[_slack_user.c.email],
        set_={
            name: statement.excluded[name]
            for name in ("user_id", "tz", "name", "found", "fetched_at")
        },
    )


_UPSERT = {"sqlite": _upsert(sqlite_insert), "postgresql": _upsert(pg_insert)}


class Directory:
    """Resolves emails to Slack users via users.lookupByEmail, cached in the store
    (including "not in Slack", so an unknown owner costs one call, not one per lead).

    The stored entries (one per rep) are read into memory on first use; after that
    memory is this process's copy, so a message costs no directory read. What
    by_email and by_user_id learn is written by `save(session)`, which the outbox
    worker and decisions call in transactions of their own: sender threads, and
    listeners before their ack, never take SQLite's write lock for a cache entry.
    An entry another process learned later, or one lost in a crash, costs one more
    users.lookupByEmail or users.info, nothing else.
    """

    def __init__(self, db: Database, client: WebClient) -> None:
        self.db = db
        self.client = client
        self._memo: dict[str, _Entry] | None = None
        self._unsaved: dict[str, dict[str, Any]] = {}
        self._emails: dict[str, str] = {}  # user id -> email, as learned by this process
        self._lock = threading.Lock()

    def by_email(self, email: str) -> SlackPerson | None:
        now = clock.now()
        entry = self._entries().get(email)
        if entry is not None and now - entry.fetched_at < DIRECTORY_TTL:
            return entry.person
        try:
            user = self.client.users_lookupByEmail(email=email)["user"]
        except SlackApiError as exc:
            if exc.response.get("error") != "users_not_found":
                raise
            return self._learn(email, None, None, None, now)
        if user.get("deleted"):
            # A deactivated account is still found, and Slack accepts a DM to it without
            # an error: nobody would ever read it. Treated as not in Slack (the pool).
            return self._learn(email, None, None, None, now)
        return self._learn(email, user["id"], user.get("tz"), _display_name(user), now)

    def by_user_id(self, user_id: str) -> SlackPerson | None:
        """users.info for a user picked in Slack (reassign): we need their email."""
        try:
            user = self.client.users_info(user=user_id)["user"]
        except SlackApiError as exc:
            if exc.response.get("error") == "user_not_found":
                return None
            raise
        email = (user.get("profile") or {}).get("email")
        if not email:
            return None
        return self._learn(
            email.lower(), user["id"], user.get("tz"), _display_name(user), clock.now()
        )

    def save(self, session: Session) -> None:
        """Write the answers learned since the last save, in the caller's transaction."""
        with self._lock:
            rows, self._unsaved = list(self._unsaved.values()), {}
        if rows:
            session.execute(_UPSERT[session.get_bind().dialect.name], rows)

    def email_of(self, user_id: str) -> str | None:
        """The email of a Slack user we have seen (here or in the store), else ask Slack."""
        email = self._emails.get(user_id)
        if email:
            return email
        with self.db.session() as session:
            email = session.scalars(
                select(SlackUser.email).where(SlackUser.user_id == user_id)
            ).first()
        if email:
            return email
        person = self.by_user_id(user_id)
        return person.email if person else None

    def _entries(self) -> dict[str, _Entry]:
        if self._memo is None:
            with self.db.session() as session:
                rows = session.execute(_ALL_ENTRIES).all()
            stored = {
                row.email: _Entry(
                    SlackPerson(row.email, row.user_id, row.tz, row.name) if row.found else None,
                    row.fetched_at,
                )
                for row in rows
            }
            with self._lock:
                if self._memo is None:
                    self._memo = stored
        return self._memo

    def _learn(
        self, email: str, user_id: str | None, tz: str | None, name: str | None, now: datetime
    ) -> SlackPerson | None:
        person = SlackPerson(email, user_id, tz, name) if user_id else None
        entries = self._entries()
        with self._lock:
            entries[email] = _Entry(person, now)
            if user_id is not None:
                self._emails[user_id] = email
            self._unsaved[email] = {
                "email": email,
                "user_id": user_id,
                "tz": tz,
                "name": name,
                "found": user_id is not None,
                "fetched_at": now,
            }
        return person


def _display_name(user: dict[str, Any]) -> str | None:
    profile = user.get("profile") or {}
    return profile.get("real_name") or user.get("real_name") or user.get("name")
