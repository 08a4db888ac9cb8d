"""The HubSpot CRM API calls Handoff makes when it reads from HubSpot.

One client over the app's httpx.Client: the CRM search for contacts changed
since a time, the owners list (id -> email, cached by `Owners`), and the
contact properties (`handoff hubspot check`). Errors come out as three kinds
the caller can act on: `HubSpotUnavailable` (5xx, network, a rate limit that
would take too long: try again later), `HubSpotRefused` (401/403: the token or
its scopes, which no retry fixes) and `HubSpotError` for any other refusal.
A 429 is waited out here, for at most `max_wait` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from bot import clock

logger = logging.getLogger(__name__)

SEARCH_CAP = 10_000  # results one search query serves; paging past them is a 400
SEARCH_LIMIT = 100  # records a page
# HubSpot's CRM search answers 5 requests a second per account, shared by every app
# in the portal; 4 leaves room for the others.
DEFAULT_SEARCH_RATE = 4.0
MODIFIED = "lastmodifieddate"  # contacts' change time (other objects: hs_lastmodifieddate)


class HubSpotError(Exception):
    """HubSpot refused the request; retrying the same request will not help."""


class HubSpotUnavailable(HubSpotError):
    """HubSpot is down, unreachable or rate limiting us: try again later."""


class HubSpotRefused(HubSpotError):
    """The token is refused (401) or lacks a scope (403)."""


@dataclass(frozen=True)
class SearchPage:
    results: list[dict[str, Any]]
    next_after: str | None  # the `after` of the next page; None on the last one
    total: int


def _path(*segments: str) -> str:
    """A URL path from data: each segment encoded on its own."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def _error_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before retrying a 429; None when waiting is pointless (the
    portal's daily limit is spent until midnight, the portal's time)."""
    policy = str(_error_body(response).get("policyName") or "").upper()
    if policy == "DAILY":
        return None
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return 1.0 if policy == "SECONDLY" else 10.0  # the window of the limit hit


def _message(response: httpx.Response) -> str:
    """HubSpot's own error message (a JSON `message`), shortened; never the request."""
    message = _error_body(response).get("message")
    return str(message or response.reason_phrase or "")[:200]


class Pacer:
    """Starts calls a little under `rate` a second, across threads.

    Pacing under a limit beats meeting it: a 429 costs its whole Retry-After (whole
    seconds), ten times the gap between two paced calls at 10 a second. The margin
    absorbs the jitter between a call leaving here and reaching the limiter, which
    would otherwise squeeze `rate` + 1 calls into one window now and then.
    """

    MARGIN = 1.05

    def __init__(self, rate: float) -> None:
        self.interval = self.MARGIN / rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class HubSpotClient:
    """HubSpot's CRM API over `http`, authenticated with a private app's token.

    Args:
        max_wait: the longest a 429's Retry-After is waited out in here; past it (or
            after `rate_retries` waits) the call raises HubSpotUnavailable.
        search_per_second: the pace of CRM searches (their own limit, per account).
    """

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        token: str,
        *,
        max_wait: float = 30.0,
        rate_retries: int = 5,
        search_per_second: float = DEFAULT_SEARCH_RATE,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self.max_wait = max_wait
        self.rate_retries = rate_retries
        self.search_pacer = Pacer(search_per_second)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        pacer: Pacer | None = None,
    ) -> dict[str, Any]:
        what = f"HubSpot {method} {path}"
        for _attempt in range(self.rate_retries + 1):
            if pacer is not None:
                pacer.wait()
            try:
                response = self.http.request(
                    method, self.base_url + path, params=params, json=json, headers=self._headers
                )
            except httpx.HTTPError as exc:
                raise HubSpotUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 429:
                break
            wait = _retry_after(response)
            if wait is None:
                raise HubSpotUnavailable(f"{what}: the portal's daily API limit is spent")
            if wait > self.max_wait:
                raise HubSpotUnavailable(f"{what}: rate limited, retry after {wait:g} s")
            logger.info("%s: rate limited (429), waiting %g s", what, wait)
            time.sleep(wait)
        else:
            raise HubSpotUnavailable(f"{what}: still rate limited after {self.rate_retries} waits")
        status = response.status_code
        if status >= 500:
            raise HubSpotUnavailable(f"{what}: HubSpot answered {status} {_message(response)}")
        if status == 401:
            raise HubSpotRefused(f"{what}: the token was refused (401): check HUBSPOT_TOKEN")
        if status == 403:
            raise HubSpotRefused(
                f"{what}: missing scope (403): {_message(response)}; "
                "add it to the private app and use its new token"
            )
        if status >= 400:
            raise HubSpotError(f"{what}: HubSpot refused it: {status} {_message(response)}")
        try:
            body = response.json()
        except ValueError as exc:
            raise HubSpotUnavailable(f"{what}: HubSpot answered {status} without JSON") from exc
        if not isinstance(body, dict):
            raise HubSpotUnavailable(f"{what}: HubSpot answered {status} with unexpected JSON")
        return body

    def owners(self) -> dict[str, str]:
        """Every active owner, id -> email (owners without an email are left out)."""
        found: dict[str, str] = {}
        after: str | None = None
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            body = self._call("GET", _path("crm", "v3", "owners"), params=params)
            for owner in body.get("results") or []:
                if owner.get("id") is not None and owner.get("email"):
                    found[str(owner["id"])] = str(owner["email"])
            after = _next_after(body)
            if after is None:
                return found

    def search_changed(
        self,
        since_ms: int,
        properties: list[str],
        after: str | None = None,
        *,
        limit: int = SEARCH_LIMIT,
    ) -> SearchPage:
        """One page of the contacts modified at or after `since_ms`, oldest first."""
        body: dict[str, Any] = {
            "filterGroups": [
                {"filters": [{"propertyName": MODIFIED, "operator": "GTE", "value": str(since_ms)}]}
            ],
            "sorts": [{"propertyName": MODIFIED, "direction": "ASCENDING"}],
            "properties": sorted({*properties, MODIFIED}),
            "limit": limit,
        }
        if after is not None:
            body["after"] = after
        path = _path("crm", "v3", "objects", "contacts", "search")
        answer = self._call("POST", path, json=body, pacer=self.search_pacer)
        results = answer.get("results")
        if not isinstance(results, list):
            raise HubSpotUnavailable("HubSpot search answered without a results list")
        return SearchPage(results, _next_after(answer), int(answer.get("total") or 0))

    def portal_id(self) -> str:
        """The token's portal (Hub ID), from the account details."""
        body = self._call("GET", _path("account-info", "v3", "details"))
        if body.get("portalId") is None:
            raise HubSpotUnavailable("HubSpot account details answered without a portalId")
        return str(body["portalId"])

    def properties(self) -> dict[str, dict[str, Any]]:
        """The contact properties of the portal, by internal name."""
        body = self._call("GET", _path("crm", "v3", "properties", "contacts"))
        return {str(p["name"]): p for p in body.get("results") or [] if p.get("name")}

    def property_groups(self) -> set[str]:
        body = self._call("GET", _path("crm", "v3", "properties", "contacts", "groups"))
        return {str(g["name"]) for g in body.get("results") or [] if g.get("name")}

    def create_property_group(self, name: str, label: str) -> None:
        self._call(
            "POST",
            _path("crm", "v3", "properties", "contacts", "groups"),
            json={"name": name, "label": label},
        )

    def create_property(
        self,
        name: str,
        label: str,
        *,
        group: str,
        description: str = "",
        type_: str = "string",
        field_type: str = "textarea",
    ) -> None:
        self._call(
            "POST",
            _path("crm", "v3", "properties", "contacts"),
            json={
                "name": name,
                "label": label,
                "groupName": group,
                "description": description,
                "type": type_,
                "fieldType": field_type,
            },
        )


def _next_after(body: dict[str, Any]) -> str | None:
    after = ((body.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after not in (None, "") else None


class Owners:
    """HubSpot owner ids -> emails, cached.

    The list is fetched on first use, again once it is `ttl` old, and again on an
    unknown id (a rep added since) but at most every `miss_every`, so a record naming
    a deleted owner cannot turn every lookup into an API call. If HubSpot cannot be
    reached the last list is kept. Safe to share between threads: one refresh at a
    time, and lookups meanwhile read the current list.
    """

    def __init__(
        self,
        client: HubSpotClient,
        *,
        ttl: timedelta = timedelta(minutes=10),
        miss_every: timedelta = timedelta(minutes=1),
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.miss_every = miss_every
        self._emails: dict[str, str] = {}
        self._ids: dict[str, str] = {}  # lower-cased email -> id (the reverse of _emails)
        self._fetched_at: datetime | None = None
        self._lock = threading.Lock()

    def email_of(self, owner_id: str) -> str | None:
        owner_id = str(owner_id).strip()
        if not owner_id:
            return None
        self._fresh(owner_id in self._emails)
        return self._emails.get(owner_id)

    def id_of(self, email: str) -> str | None:
        """The owner id of a HubSpot user by email (any case); None if no owner has it.
        Write-back uses it to move a contact to the rep Handoff reassigned it to."""
        email = str(email).strip().lower()
        if not email:
            return None
        self._fresh(email in self._ids)
        return self._ids.get(email)

    def _fresh(self, known: bool) -> None:
        now = clock.now()
        fetched = self._fetched_at
        if (
            fetched is None
            or now - fetched >= self.ttl
            or (not known and now - fetched >= self.miss_every)
        ):
            self._refresh(fetched, now)

    def _refresh(self, seen: datetime | None, now: datetime) -> None:
        with self._lock:
            if self._fetched_at != seen:
                return  # another thread refreshed the list while this one waited
            try:
                emails = self.client.owners()
            except HubSpotError:
                if seen is None:  # no list at all: the caller must not route without one
                    raise
                logger.exception("cannot refresh the HubSpot owners; keeping the last list")
                self._fetched_at = now  # try again after miss_every, not on every lookup
                return
            ids = {email.lower(): owner_id for owner_id, email in sorted(emails.items())}
            self._emails, self._ids, self._fetched_at = emails, ids, now
