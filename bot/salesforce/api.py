"""The Salesforce REST API calls Handoff makes, authenticated by OAuth client credentials.

The connected app's client credentials flow gives an access token (and the org's
`instance_url`) from `{SALESFORCE_URL}/services/oauth2/token`; it is cached and
fetched again, once, when a call answers 401 (the session expired or was
revoked). Errors come out as three kinds the caller can act on, as for HubSpot:
`SalesforceUnavailable` (5xx, network, a rate limit: try again later; its
`retry_after` says when, if Salesforce did), `SalesforceRefused` (the credentials
are refused: no retry fixes that) and `SalesforceError` for any other refusal.
A 429 or a 503 with Retry-After is waited out here, for at most `max_wait` seconds.
The access token never appears in an error or a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)

API_VERSION = "62.0"
TOKEN_PATH = "/services/oauth2/token"
MODIFIED = "SystemModstamp"  # changes by users and by the system alike; indexed
BATCH_SIZE = 2000  # records a query page (Salesforce: 200 to 2,000)
QUERY_TIMEOUT = 60.0  # seconds for a page of 2,000 records (the app's client waits 10)


class SalesforceError(Exception):
    """Salesforce refused the request; retrying the same request will not help."""


class SalesforceUnavailable(SalesforceError):
    """Salesforce is down, unreachable or rate limiting us: try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SalesforceRefused(SalesforceError):
    """The connected app's credentials, or the token they gave, are refused."""


@dataclass(frozen=True)
class QueryPage:
    records: list[dict[str, Any]]
    next_url: str | None  # nextRecordsUrl; None on the last page
    total: int


def _path(*segments: str) -> str:
    """A URL path from data: each segment encoded on its own."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def data_path(*segments: str) -> str:
    return _path("services", "data", f"v{API_VERSION}", *segments)


def soql_datetime(moment: datetime) -> str:
    """A SOQL dateTime literal, to the second (Salesforce keeps no finer time), UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def changed_since_soql(sobject: str, fields: list[str], since: datetime) -> str:
    """The poll's query. `sobject` and `fields` are API names checked by sources.yml's
    validation (letters, digits, _ and dots only) and the time is formatted here, so
    nothing from a record or a user reaches the query text."""
    wanted: dict[str, str] = {"id": "Id", MODIFIED.lower(): MODIFIED}
    for name in fields:
        wanted.setdefault(name.lower(), name)  # SOQL refuses a field selected twice
    return (
        f"SELECT {', '.join(wanted.values())} FROM {sobject} "
        f"WHERE {MODIFIED} >= {soql_datetime(since)} ORDER BY {MODIFIED} ASC, Id ASC"
    )


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    """Salesforce's error list (`[{"message", "errorCode"}]`), or an OAuth error object."""
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, dict):
        body = [body]
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def _message(response: httpx.Response) -> str:
    """Salesforce's own error code and message, shortened; never the request."""
    parts = []
    for item in _errors(response)[:3]:
        code = item.get("errorCode") or item.get("error") or ""
        text = item.get("message") or item.get("error_description") or ""
        parts.append(f"{code}: {text}" if code and text else str(code or text))
    return ("; ".join(parts) or response.reason_phrase or "")[:300]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class SalesforceClient:
    """Salesforce's REST API over `http`, for one connected app.

    Args:
        login_url: SALESFORCE_URL, the org's My Domain URL (the token endpoint's host).
        max_wait: the longest a 429's or 503's Retry-After is waited out in here; past
            it (or after `rate_retries` waits) the call raises SalesforceUnavailable.
    """

    def __init__(
        self,
        http: httpx.Client,
        login_url: str,
        client_id: str,
        client_secret: str,
        *,
        max_wait: float = 30.0,
        rate_retries: int = 5,
    ) -> None:
        self.http = http
        self.login_url = login_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self.max_wait = max_wait
        self.rate_retries = rate_retries
        self._token: str | None = None
        self._instance_url: str | None = None
        self._lock = threading.Lock()

    # -- the token ------------------------------------------------------------------------
    @property
    def instance_url(self) -> str:
        """The org's API base URL, as the token endpoint named it (SALESFORCE_URL until then)."""
        return self._instance_url or self.login_url

    def _current_token(self) -> str:
        with self._lock:
            if self._token is None:
                self._token, self._instance_url = self._fetch_token()
            return self._token

    def _drop_token(self, token: str) -> None:
        with self._lock:
            if self._token == token:  # another thread may have fetched a new one already
                self._token = None

    def _fetch_token(self) -> tuple[str, str]:
        what = f"Salesforce POST {TOKEN_PATH}"
        try:
            response = self.http.post(
                self.login_url + TOKEN_PATH,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self._client_id,
                    "client_secret": self._client_secret,
                },
            )
        except httpx.HTTPError as exc:
            raise SalesforceUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status >= 500 or status == 429:
            raise SalesforceUnavailable(
                f"{what}: Salesforce answered {status} {_message(response)}",
                _retry_after(response),
            )
        if status >= 400:
            raise SalesforceRefused(
                f"{what}: the client credentials were refused ({status} {_message(response)}): "
                "check SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET and the connected "
                "app's client credentials flow and run-as user"
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SalesforceUnavailable(f"{what}: Salesforce answered {status} without a token")
        instance = body.get("instance_url")
        if not (isinstance(instance, str) and instance.startswith(("https://", "http://"))):
            instance = self.login_url
        return token, instance.rstrip("/")

    def token_check(self) -> str:
        """Fetch a fresh token (`handoff salesforce check`); the instance URL it names."""
        with self._lock:
            self._token, self._instance_url = self._fetch_token()
        return self.instance_url

    # -- calls ----------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Any:
        """One API call; the parsed JSON (None for a 204). `wait=False` raises on a rate
        limit at once, with its `retry_after` (the outbox waits, not the worker)."""
        what = f"Salesforce {method} {path.split('?')[0]}"
        refreshed = False
        attempts = 0
        while True:
            token = self._current_token()
            try:
                response = self.http.request(
                    method,
                    self.instance_url + path,
                    params=params,
                    json=json,
                    headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                    **({"timeout": timeout} if timeout else {}),
                )
            except httpx.HTTPError as exc:
                raise SalesforceUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
            status = response.status_code
            if status == 401 and not refreshed:
                # The session expired or was revoked: one new token, then the call again.
                self._drop_token(token)
                refreshed = True
                continue
            wait_for = _retry_after(response) if status in (429, 503) else None
            if status == 429 or (status == 503 and wait_for is not None):
                if wait_for is None:
                    wait_for = 10.0
                if not wait or wait_for > self.max_wait or attempts >= self.rate_retries:
                    raise SalesforceUnavailable(
                        f"{what}: Salesforce answered {status}, retry after {wait_for:g} s",
                        wait_for,
                    )
                attempts += 1
                logger.info("%s: %d, waiting %g s (Retry-After)", what, status, wait_for)
                time.sleep(wait_for)
                continue
            break
        return self._answer(what, response)

    def _answer(self, what: str, response: httpx.Response) -> Any:
        status = response.status_code
        if status >= 500:
            raise SalesforceUnavailable(
                f"{what}: Salesforce answered {status} {_message(response)}"
            )
        if status == 401:
            raise SalesforceRefused(
                f"{what}: a new access token was refused too (401): check the connected "
                "app's run-as user and its API access"
            )
        codes = {str(item.get("errorCode") or "") for item in _errors(response)}
        if status == 403 and "REQUEST_LIMIT_EXCEEDED" in codes:
            raise SalesforceUnavailable(f"{what}: the org's API request limit is spent")
        if status >= 400:
            raise SalesforceError(f"{what}: Salesforce refused it: {status} {_message(response)}")
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise SalesforceUnavailable(
                f"{what}: Salesforce answered {status} without JSON"
            ) from exc

    # -- what Handoff asks ----------------------------------------------------------------
    def query_changed(
        self, sobject: str, fields: list[str], since: datetime, *, batch_size: int = BATCH_SIZE
    ) -> QueryPage:
        """The first page of the records changed at or after `since` (to the second),
        oldest first; the next pages come from `query_more`."""
        soql = changed_since_soql(sobject, fields, since)
        body = self._call(
            "GET",
            data_path("query"),
            params={"q": soql},
            headers={"Sforce-Query-Options": f"batchSize={batch_size}"},
            timeout=QUERY_TIMEOUT,
        )
        return _page(body)

    def query_more(self, next_url: str, *, batch_size: int = BATCH_SIZE) -> QueryPage:
        """The page `nextRecordsUrl` names. Only a path of this API is followed: the
        token is never sent to another host."""
        prefix = data_path("query") + "/"
        if not next_url.startswith(prefix) or ".." in next_url or "?" in next_url:
            raise SalesforceError(f"unexpected nextRecordsUrl {next_url[:100]!r}")
        body = self._call(
            "GET",
            next_url,
            headers={"Sforce-Query-Options": f"batchSize={batch_size}"},
            timeout=QUERY_TIMEOUT,
        )
        return _page(body)

    def describe(self, sobject: str) -> dict[str, dict[str, Any]]:
        """The object's fields by API name (`handoff salesforce check`)."""
        body = self._call("GET", data_path("sobjects", sobject, "describe"))
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, list):
            raise SalesforceUnavailable(f"Salesforce described {sobject} without fields")
        return {str(f["name"]): f for f in fields if isinstance(f, dict) and f.get("name")}

    def update(
        self, sobject: str, record_id: str, values: dict[str, Any], *, wait: bool = True
    ) -> None:
        """PATCH the record's fields (the decision's write-back)."""
        self._call("PATCH", data_path("sobjects", sobject, record_id), json=values, wait=wait)


def _page(body: Any) -> QueryPage:
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise SalesforceUnavailable("Salesforce answered a query without a records list")
    next_url = body.get("nextRecordsUrl")
    done = bool(body.get("done", True))
    return QueryPage(
        body["records"],
        str(next_url) if next_url and not done else None,
        int(body.get("totalSize") or 0),
    )
