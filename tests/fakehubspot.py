"""A small fake of the HubSpot CRM API, served on loopback for the real httpx client.

It holds contacts, owners and contact properties and answers the calls Handoff
makes the way HubSpot does: Bearer auth (401 for a wrong token, 403 for a
missing scope), the CRM search with a `lastmodifieddate` filter, an ascending
sort, `limit` and `after` paging, and the search's result cap (HubSpot serves
at most 10,000 results of one query; asking for a page past it is a 400), the
owners list paged by `after`, and the properties and property groups of
contacts. It records every request and can be told to fail: the next N calls
of a route, a full outage (503), or a rolling-window rate limit (429 with
Retry-After, like HubSpot's ten-second limits).

    with FakeHubSpot() as fake:
        client = HubSpotClient(httpx.Client(), fake.url, fake.token)
"""

from __future__ import annotations

import itertools
import json
import operator
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.loopback import LoopbackFake

Answer = tuple[int, dict[str, Any], dict[str, str]]

TOKEN = "pat-na1-test-token"
SEARCH_CAP = 10_000
MAX_LIMIT = 200
# What each route needs (HubSpot's granular scopes; the properties API reads with
# crm.schemas.contacts.read and creates with crm.schemas.contacts.write).
SCOPES = {
    "search": "crm.objects.contacts.read",
    "owners": "crm.objects.owners.read",
    "properties": "crm.schemas.contacts.read",
    "create_property": "crm.schemas.contacts.write",
    "groups": "crm.schemas.contacts.read",
    "create_group": "crm.schemas.contacts.write",
    "contact": "crm.objects.contacts.read",
    "update_contact": "crm.objects.contacts.write",
}
ALL_SCOPES = frozenset(SCOPES.values()) | {"crm.objects.contacts.write"}
# A few of the properties every HubSpot portal has (hubspotDefined: true).
DEFAULT_PROPERTIES = (
    "email",
    "firstname",
    "lastname",
    "jobtitle",
    "company",
    "country",
    "numemployees",
    "hubspot_owner_id",
    "hs_lead_status",
    "lifecyclestage",
    "hs_analytics_source",
    "hs_analytics_source_data_2",
    "createdate",
    "lastmodifieddate",
    "hs_object_id",
)
# The options of HubSpot's enumeration properties Handoff writes (internal values).
OPTIONS = {
    "hs_lead_status": (
        "NEW",
        "OPEN",
        "IN_PROGRESS",
        "OPEN_DEAL",
        "UNQUALIFIED",
        "ATTEMPTED_TO_CONTACT",
        "CONNECTED",
        "BAD_TIMING",
    ),
    "lifecyclestage": (
        "subscriber",
        "lead",
        "marketingqualifiedlead",
        "salesqualifiedlead",
        "opportunity",
        "customer",
        "evangelist",
        "other",
    ),
}
PORTAL_ID = 4242


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as HubSpot writes a datetime property: 2026-11-27T10:00:00.123Z."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass
class Call:
    """One request the fake received, and what it answered."""

    route: str  # search, owners, properties, create_property, groups, create_group, ...
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    response: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    at: float = 0.0  # time.monotonic() when answered


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    times: int
    policy: str | None = None


class FakeHubSpot(LoopbackFake):
    """Fake HubSpot API on 127.0.0.1; `url` is the base URL (HUBSPOT_API_URL)."""

    def __init__(
        self,
        token: str = TOKEN,
        *,
        scopes: frozenset[str] = ALL_SCOPES,
        search_cap: int = SEARCH_CAP,
        next_past_cap: bool = True,
        owners_page: int = 100,
    ) -> None:
        self.token = token
        self.scopes = set(scopes)
        self.search_cap = search_cap
        # HubSpot offers a next page at the cap (which then answers 400); False: it
        # offers none, and only `total` tells that more records matched.
        self.next_past_cap = next_past_cap
        self.owners_page = owners_page
        self.url = ""
        self.contacts: dict[str, dict[str, Any]] = {}  # id -> {"properties", "modified_ms"}
        self.owners: dict[str, str] = {}  # id -> email
        self.properties: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {
            "contactinformation": {"name": "contactinformation", "label": "Contact information"}
        }
        for name in DEFAULT_PROPERTIES:
            self._define(name, "contactinformation", hubspot_defined=True)
        self.portal_id = PORTAL_ID
        self._ids = itertools.count(1001)
        self._calls: list[Call] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._down = False
        self._window: tuple[int, float, int] | None = None  # requests, seconds, retry_after
        self._recent: deque[float] = deque()
        self.rate_limited = 0
        self._lock = threading.Condition()

    # -- set-up -----------------------------------------------------------------------------
    def add_contact(
        self, modified_ms: int, *, contact_id: str | None = None, **properties: str
    ) -> str:
        """Create (or replace) a contact last modified at `modified_ms`; its id."""
        with self._lock:
            contact_id = contact_id or str(next(self._ids))
            self.contacts[contact_id] = {
                "properties": {k: str(v) for k, v in properties.items()},
                "modified_ms": modified_ms,
                "created_ms": modified_ms,
            }
            return contact_id

    def touch(self, contact_id: str, modified_ms: int, **properties: str) -> None:
        """Change a contact: new properties and a new lastmodifieddate."""
        with self._lock:
            contact = self.contacts[contact_id]
            contact["properties"].update({k: str(v) for k, v in properties.items()})
            contact["modified_ms"] = modified_ms

    def add_owner(self, owner_id: str, email: str) -> None:
        with self._lock:
            self.owners[owner_id] = email

    def add_property(self, name: str, group: str = "contactinformation") -> None:
        """A custom property someone created in the portal (hubspotDefined false)."""
        with self._lock:
            self._define(name, group, hubspot_defined=False)

    def remove_property(self, name: str) -> None:
        with self._lock:
            self.properties.pop(name, None)

    def fail_next(
        self,
        route: str,
        *,
        status: int = 500,
        retry_after: int | None = None,
        times: int = 1,
        policy: str | None = None,
    ) -> None:
        """Answer the next `times` calls of `route` with `status` (Retry-After if given;
        a 429's policyName, e.g. DAILY or TEN_SECONDLY_ROLLING, if given)."""
        failure = _Failure(status, retry_after, times, policy)
        with self._lock:
            self._failures.setdefault(route, []).append(failure)

    def set_outage(self, down: bool) -> None:
        """While down, every route answers 503."""
        with self._lock:
            self._down = down

    def rate_limit(self, requests: int | None, seconds: float = 10.0, retry_after: int = 1) -> None:
        """At most `requests` answered per rolling `seconds`; past it a 429 (None: no limit)."""
        with self._lock:
            self._window = None if requests is None else (requests, seconds, retry_after)
            self._recent.clear()

    # -- inspection -------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, route: str) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if call.route == route]

    # -- serving ----------------------------------------------------------------------------
    def _define(self, name: str, group: str, *, hubspot_defined: bool) -> None:
        self.properties[name] = {
            "name": name,
            "label": name,
            "type": "string",
            "fieldType": "text",
            "groupName": group,
            "hubspotDefined": hubspot_defined,
        }
        if name in OPTIONS:
            self.properties[name].update(
                type="enumeration",
                fieldType="select",
                options=[
                    {"label": value, "value": value, "displayOrder": i, "hidden": False}
                    for i, value in enumerate(OPTIONS[name])
                ],
            )

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, list[str]]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "POST" and parts == ["crm", "v3", "objects", "contacts", "search"]:
            return "search", []
        if method == "GET" and parts == ["crm", "v3", "owners"]:
            return "owners", []
        if parts == ["account-info", "v3", "details"] and method == "GET":
            return "account", []
        if parts[:4] == ["crm", "v3", "objects", "contacts"] and len(parts) == 5:
            if method == "GET":
                return "contact", parts[4:]
            if method == "PATCH":
                return "update_contact", parts[4:]
        if parts[:4] == ["crm", "v3", "properties", "contacts"]:
            rest = parts[4:]
            if rest == [] and method == "GET":
                return "properties", []
            if rest == [] and method == "POST":
                return "create_property", []
            if rest == ["groups"] and method == "GET":
                return "groups", []
            if rest == ["groups"] and method == "POST":
                return "create_group", []
            if len(rest) == 1 and method == "GET":
                return "property", rest
        return "unknown", parts

    def _handle(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        url = urlsplit(request.path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        route, args = self._route(request.command, url.path)
        query = dict(parse_qsl(url.query))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
            answer: Answer = (400, _error("Invalid input JSON", "VALIDATION_ERROR"), {})
        else:
            with self._lock:
                try:
                    answer = self._answer(route, args, query, body, headers)
                except Exception as exc:  # a bug here should fail the test, not hang it
                    answer = (500, _error(repr(exc), "INTERNAL_ERROR"), {})
        status, response, extra = answer
        call = Call(route, request.command, url.path, query, body, status, response, headers)
        call.at = time.monotonic()
        with self._lock:
            self._calls.append(call)
            self._lock.notify_all()
        payload = json.dumps(response).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)

    def _answer(
        self,
        route: str,
        args: list[str],
        query: dict[str, str],
        body: Any,
        headers: dict[str, str],
    ) -> Answer:
        if self._down:
            return 503, _error("Service unavailable", "SERVICE_UNAVAILABLE"), {}
        if headers.get("authorization") != f"Bearer {self.token}":
            message = "Authentication credentials not found."
            return 401, _error(message, "INVALID_AUTHENTICATION"), {}
        limited = self._rate_limited()
        if limited is not None:
            return limited
        failure = self._take_failure(route)
        if failure is not None:
            extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            category = "RATE_LIMITS" if failure.status == 429 else "INTERNAL_ERROR"
            answer = _error(f"failing as told ({failure.status})", category)
            if failure.policy:
                answer["policyName"] = failure.policy
            return failure.status, answer, extra
        needed = SCOPES.get(route if route != "property" else "properties")
        if needed and needed not in self.scopes:
            message = f"This app hasn't been granted all required scopes: {needed}"
            return 403, _error(message, "MISSING_SCOPES"), {}
        if route == "search":
            return self._search(body or {})
        if route == "owners":
            return self._owners(query)
        if route == "properties":
            return 200, {"results": list(self.properties.values())}, {}
        if route == "property":
            found = self.properties.get(args[0])
            if found is None:
                return 404, _error(f"Unable to find property {args[0]}", "OBJECT_NOT_FOUND"), {}
            return 200, found, {}
        if route == "create_property":
            return self._create_property(body or {})
        if route == "groups":
            return 200, {"results": list(self.groups.values())}, {}
        if route == "create_group":
            return self._create_group(body or {})
        if route == "account":
            return 200, {"portalId": self.portal_id, "timeZone": "US/Eastern"}, {}
        if route == "contact":
            return self._contact(args[0], query)
        if route == "update_contact":
            return self._update_contact(args[0], query, body or {})
        return 404, _error("Not found", "OBJECT_NOT_FOUND"), {}

    def _rate_limited(self) -> Answer | None:
        if self._window is None:
            return None
        requests, seconds, retry_after = self._window
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= seconds:
            self._recent.popleft()
        if len(self._recent) >= requests:
            self.rate_limited += 1
            message = "You have reached your ten_secondly_rolling limit."
            answer = _error(message, "RATE_LIMITS")
            answer["policyName"] = "TEN_SECONDLY_ROLLING"
            return 429, answer, {"Retry-After": str(retry_after)}
        self._recent.append(now)
        return None

    def _take_failure(self, route: str) -> _Failure | None:
        queue = self._failures.get(route)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _search(self, body: dict[str, Any]) -> Answer:
        try:
            limit = int(body.get("limit", 10))
            offset = int(body.get("after") or 0)
        except (TypeError, ValueError):
            return 400, _error("limit and after must be integers", "VALIDATION_ERROR"), {}
        if not 0 < limit <= MAX_LIMIT:
            return 400, _error(f"limit must be 1 to {MAX_LIMIT}", "VALIDATION_ERROR"), {}
        if offset >= self.search_cap:
            # HubSpot: a query serves at most 10,000 results; paging past them is refused.
            message = f"paging is limited to {self.search_cap} results for one search query"
            return 400, _error(message, "VALIDATION_ERROR"), {}
        sorts = body.get("sorts") or []
        if sorts not in (
            [],
            [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        ):
            return 400, _error(f"this fake sorts by lastmodifieddate only: {sorts}", "FAKE"), {}
        matches = _predicate(body.get("filterGroups") or [])
        matching = [
            (contact["modified_ms"], contact_id)
            for contact_id, contact in self.contacts.items()
            if matches(contact["modified_ms"])
        ]
        # HubSpot breaks ties in its own order; ascending id here, so tests are deterministic.
        matching.sort(key=lambda pair: (pair[0], int(pair[1])))
        wanted = body.get("properties") or ["email", "firstname", "lastname"]
        page = matching[offset : min(offset + limit, self.search_cap)]
        results = [self._record(contact_id, wanted) for _, contact_id in page]
        answer: dict[str, Any] = {"total": len(matching), "results": results}
        past_cap = offset + len(page) >= self.search_cap
        if offset + len(page) < len(matching) and (self.next_past_cap or not past_cap):
            answer["paging"] = {"next": {"after": str(offset + len(page))}}
        return 200, answer, {}

    def _record(self, contact_id: str, wanted: list[str]) -> dict[str, Any]:
        contact = self.contacts[contact_id]
        modified, created = iso_ms(contact["modified_ms"]), iso_ms(contact["created_ms"])
        properties = {name: contact["properties"].get(name) for name in wanted}
        properties.update(hs_object_id=contact_id, lastmodifieddate=modified, createdate=created)
        return {
            "id": contact_id,
            "properties": properties,
            "createdAt": created,
            "updatedAt": modified,
            "archived": False,
        }

    def _owners(self, query: dict[str, str]) -> Answer:
        ordered = sorted(self.owners.items(), key=lambda pair: pair[0])
        limit = min(int(query.get("limit", self.owners_page)), self.owners_page)
        offset = int(query.get("after") or 0)
        page = ordered[offset : offset + limit]
        answer: dict[str, Any] = {
            "results": [{"id": i, "email": e, "type": "PERSON", "archived": False} for i, e in page]
        }
        if offset + limit < len(ordered):
            answer["paging"] = {"next": {"after": str(offset + limit)}}
        return 200, answer, {}

    def _find(self, key: str, query: dict[str, str]) -> str | None:
        """The contact id addressed by the path: the id, or `idProperty=email`."""
        if query.get("idProperty") == "email":
            for contact_id, contact in self.contacts.items():
                if str(contact["properties"].get("email", "")).lower() == key.lower():
                    return contact_id
            return None
        return key if key in self.contacts else None

    def _contact(self, key: str, query: dict[str, str]) -> Answer:
        contact_id = self._find(key, query)
        if contact_id is None:
            return 404, _error("Object not found", "OBJECT_NOT_FOUND"), {}
        wanted = [p for p in query.get("properties", "").split(",") if p]
        return 200, self._record(contact_id, wanted or ["email"]), {}

    def _update_contact(self, key: str, query: dict[str, str], body: dict[str, Any]) -> Answer:
        """PATCH a contact's properties the way HubSpot checks them: the property must
        exist, an enumeration takes one of its options, an owner id must be an owner,
        and the lifecycle stage only moves forward unless it is cleared first (refused
        here, loudly, so a test notices a write-back that forgot to clear it)."""
        contact_id = self._find(key, query)
        if contact_id is None:
            return 404, _error("Object not found", "OBJECT_NOT_FOUND"), {}
        given = body.get("properties")
        if not isinstance(given, dict):
            return 400, _error("properties: expected an object", "VALIDATION_ERROR"), {}
        current = self.contacts[contact_id]["properties"]
        for name, value in given.items():
            value = "" if value is None else str(value)
            if name not in self.properties:
                message = f'Property "{name}" does not exist'
                return 400, _error(message, "VALIDATION_ERROR"), {}
            options = self.properties[name].get("options")
            if value and options and value not in [o["value"] for o in options]:
                message = f"{value} was not one of the allowed options for {name}"
                return 400, _error(message, "VALIDATION_ERROR"), {}
            if name == "hubspot_owner_id" and value and value not in self.owners:
                message = f"{value} is not a valid owner id"
                return 400, _error(message, "VALIDATION_ERROR"), {}
            if name == "lifecyclestage" and value and current.get(name):
                order = OPTIONS["lifecyclestage"]
                if order.index(value) < order.index(current[name]):
                    message = f"lifecyclestage cannot move backwards from {current[name]}"
                    return 400, _error(message, "VALIDATION_ERROR"), {}
        current.update({k: "" if v is None else str(v) for k, v in given.items()})
        self.contacts[contact_id]["modified_ms"] += 1
        return 200, self._record(contact_id, list(given)), {}

    def _create_property(self, body: dict[str, Any]) -> Answer:
        name, group = body.get("name"), body.get("groupName")
        required = ("name", "label", "type", "fieldType", "groupName")
        missing = [key for key in required if not body.get(key)]
        if missing:
            return 400, _error(f"missing {', '.join(missing)}", "VALIDATION_ERROR"), {}
        if name in self.properties:
            return 409, _error(f"A property named '{name}' already exists.", "CONFLICT"), {}
        if group not in self.groups:
            return 400, _error(f"group '{group}' does not exist", "VALIDATION_ERROR"), {}
        self._define(name, group, hubspot_defined=False)
        self.properties[name].update(
            {k: body[k] for k in ("label", "type", "fieldType", "description") if k in body}
        )
        return 201, self.properties[name], {}

    def _create_group(self, body: dict[str, Any]) -> Answer:
        name = body.get("name")
        if not name or not body.get("label"):
            return 400, _error("name and label are required", "VALIDATION_ERROR"), {}
        if name in self.groups:
            return 409, _error(f"A group named '{name}' already exists.", "CONFLICT"), {}
        self.groups[name] = {"name": name, "label": body["label"]}
        return 201, self.groups[name], {}


def _error(message: str, category: str) -> dict[str, Any]:
    return {"status": "error", "message": message, "category": category}


OPERATORS: dict[str, Callable[[int, int], bool]] = {
    "GTE": operator.ge,
    "GT": operator.gt,
    "LTE": operator.le,
    "LT": operator.lt,
    "EQ": operator.eq,
}


def _predicate(groups: list[dict[str, Any]]) -> Callable[[int], bool]:
    """Filter groups are ORed, the filters of a group ANDed (lastmodifieddate only here)."""
    tests = []
    for group in groups:
        conditions = []
        for condition in group.get("filters", []):
            if condition.get("propertyName") != "lastmodifieddate":
                raise NotImplementedError(
                    f"this fake filters on lastmodifieddate only: {condition}"
                )
            conditions.append((OPERATORS[condition["operator"]], int(condition["value"])))
        tests.append(conditions)
    if not tests:
        return lambda _modified: True
    return lambda modified: any(all(op(modified, v) for op, v in group) for group in tests)
