"""A small fake of Salesforce's OAuth token endpoint and REST API, served on loopback
for the real httpx client.

It answers the calls Handoff makes the way Salesforce does: the client credentials
flow (`POST /services/oauth2/token`, 400 `invalid_client` for wrong credentials),
Bearer tokens that can be expired (401 `INVALID_SESSION_ID`, as when a session
times out), a SOQL query of the one shape Handoff sends (`SELECT ... FROM Lead
WHERE SystemModstamp >= <time> ORDER BY SystemModstamp ASC, Id ASC`, unknown
fields refused with `INVALID_FIELD`, a relationship path like `Owner.Email`
resolved through the owner), paged by `nextRecordsUrl` with the
`Sforce-Query-Options: batchSize` header (200 to 2,000), the object's describe,
and a record's PATCH (204; 404 for an unknown Id; 400 for an unknown or
read-only field). It records every request and can be told to fail: the next N
calls of a route (a 429 or 503 with Retry-After, any status), or a full outage.

    with FakeSalesforce() as fake:
        client = SalesforceClient(httpx.Client(), fake.url, CLIENT_ID, CLIENT_SECRET)
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback import LoopbackFake

Answer = tuple[int, Any, dict[str, str]]

CLIENT_ID = "3MVG9-test-consumer-key"
CLIENT_SECRET = "test-consumer-secret-0123456789"
VERSION = "v62.0"
# The standard Lead fields the fake knows (type), and the relationships it resolves.
LEAD_FIELDS = {
    "Id": "id",
    "FirstName": "string",
    "LastName": "string",
    "Name": "string",
    "Title": "string",
    "Company": "string",
    "Email": "email",
    "Country": "string",
    "NumberOfEmployees": "int",
    "Industry": "picklist",
    "LeadSource": "picklist",
    "Status": "picklist",
    "OwnerId": "reference",
    "CreatedDate": "datetime",
    "LastModifiedDate": "datetime",
    "SystemModstamp": "datetime",
}
READ_ONLY = {"Id", "Name", "CreatedDate", "LastModifiedDate", "SystemModstamp"}
_QUERY = re.compile(
    r"^SELECT (?P<fields>[\w., ]+) FROM (?P<object>\w+) "
    r"WHERE SystemModstamp >= (?P<since>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) "
    r"ORDER BY SystemModstamp ASC, Id ASC$"
)


def sf_time(moment: datetime) -> str:
    """A datetime as Salesforce writes one: 2026-11-27T10:00:00.000+0000."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


@dataclass
class Call:
    """One request the fake received, and what it answered."""

    route: str  # token, query, query_more, describe, update, unknown
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    response: Any
    headers: dict[str, str] = field(default_factory=dict)
    at: float = 0.0  # time.monotonic() when answered


@dataclass
class _Failure:
    status: int
    retry_after: int | None
    times: int
    error_code: str


class FakeSalesforce(LoopbackFake):
    """Fake Salesforce org on 127.0.0.1; `url` is both SALESFORCE_URL and instance_url."""

    def __init__(self, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> None:
        self._lock = threading.Condition()
        self.client_id = client_id
        self.client_secret = client_secret
        self.url = ""
        self.fields: dict[str, dict[str, Any]] = {}
        for name, kind in LEAD_FIELDS.items():
            self.add_field(name, kind, updateable=name not in READ_ONLY)
        self.fields["OwnerId"].update(relationshipName="Owner", referenceTo=["Group", "User"])
        self.leads: dict[str, dict[str, Any]] = {}  # Id -> {"values", "modified"}
        self.users: dict[str, dict[str, Any]] = {}  # Id -> {"Email", "Name"}
        self.tokens: set[str] = set()
        self._ids = itertools.count(1)
        self._token_ids = itertools.count(1)
        self._locators: dict[str, tuple[list[dict[str, Any]], int]] = {}
        self._calls: list[Call] = []
        self._failures: dict[str, list[_Failure]] = {}
        self._down = False

    # -- set-up ---------------------------------------------------------------------------
    def add_field(self, name: str, kind: str = "string", *, updateable: bool = True) -> None:
        """A field on Lead (a custom one ends in __c)."""
        with self._lock:
            self.fields[name] = {
                "name": name,
                "label": name,
                "type": kind,
                "updateable": updateable,
                "custom": name.endswith("__c"),
                "relationshipName": None,
                "referenceTo": [],
            }

    def add_user(self, email: str, name: str = "") -> str:
        with self._lock:
            user_id = f"005{next(self._ids):012d}AAA"
            self.users[user_id] = {"Email": email, "Name": name or email}
            return user_id

    def add_lead(self, modified: datetime, *, lead_id: str | None = None, **values: Any) -> str:
        """Create (or replace) a Lead last modified at `modified` (to the second); its Id."""
        with self._lock:
            lead_id = lead_id or f"00Q{next(self._ids):012d}AAA"
            self.leads[lead_id] = {
                "values": dict(values),
                "modified": modified.replace(microsecond=0),
            }
            return lead_id

    def touch(self, lead_id: str, modified: datetime, **values: Any) -> None:
        """Change a Lead: new values and a new SystemModstamp."""
        with self._lock:
            lead = self.leads[lead_id]
            lead["values"].update(values)
            lead["modified"] = modified.replace(microsecond=0)

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (a session timeout, a revoke)."""
        with self._lock:
            self.tokens.clear()

    def fail_next(
        self,
        route: str,
        *,
        status: int = 503,
        retry_after: int | None = None,
        times: int = 1,
        error_code: str = "SERVER_UNAVAILABLE",
    ) -> None:
        with self._lock:
            failure = _Failure(status, retry_after, times, error_code)
            self._failures.setdefault(route, []).append(failure)

    def set_outage(self, down: bool) -> None:
        with self._lock:
            self._down = down

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, route: str) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if call.route == route]

    # -- serving --------------------------------------------------------------------------
    @staticmethod
    def _route(method: str, path: str) -> tuple[str, list[str]]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "POST" and parts == ["services", "oauth2", "token"]:
            return "token", []
        if parts[:3] != ["services", "data", VERSION]:
            return "unknown", parts
        rest = parts[3:]
        if method == "GET" and rest == ["query"]:
            return "query", []
        if method == "GET" and len(rest) == 2 and rest[0] == "query":
            return "query_more", rest[1:]
        if method == "GET" and len(rest) == 3 and rest[0] == "sobjects" and rest[2] == "describe":
            return "describe", rest[1:2]
        if method == "PATCH" and len(rest) == 3 and rest[0] == "sobjects":
            return "update", rest[1:]
        return "unknown", parts

    def _handle(self, request: BaseHTTPRequestHandler, raw: bytes) -> None:
        url = urlsplit(request.path)
        headers = {k.lower(): v for k, v in request.headers.items()}
        route, args = self._route(request.command, url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body: Any = None
        with self._lock:
            try:
                if route == "token":
                    body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
                elif raw:
                    body = json.loads(raw)
                answer = self._answer(route, args, query, body, headers)
            except Exception as exc:  # a bug here should fail the test, not hang it
                answer = (500, _error(repr(exc), "UNKNOWN_EXCEPTION"), {})
        status, response, extra = answer
        call = Call(route, request.command, url.path, query, body, status, response, headers)
        call.at = time.monotonic()
        with self._lock:
            self._calls.append(call)
            self._lock.notify_all()
        payload = b"" if response is None else json.dumps(response).encode()
        request.send_response(status)
        if payload:
            request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)

    def _answer(
        self, route: str, args: list[str], query: dict[str, str], body: Any, headers: dict[str, str]
    ) -> Answer:
        if self._down:
            return 503, _error("Service unavailable", "SERVER_UNAVAILABLE"), {}
        failure = self._take_failure(route)
        if failure is not None:
            extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
            return (
                failure.status,
                _error(f"failing as told ({failure.status})", failure.error_code),
                extra,
            )
        if route == "token":
            return self._token(body or {})
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return 401, _error("Session expired or invalid", "INVALID_SESSION_ID"), {}
        if route == "query":
            return self._query(query.get("q", ""), _batch_size(headers))
        if route == "query_more":
            return self._more(args[0])
        if route == "describe":
            if args[0] != "Lead":
                return (
                    404,
                    _error(f"The requested resource does not exist: {args[0]}", "NOT_FOUND"),
                    {},
                )
            return 200, {"name": "Lead", "fields": list(self.fields.values())}, {}
        if route == "update":
            return self._update(args[0], args[1], body)
        return 404, _error("The requested resource does not exist", "NOT_FOUND"), {}

    def _take_failure(self, route: str) -> _Failure | None:
        queue = self._failures.get(route)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _token(self, form: dict[str, str]) -> Answer:
        if form.get("grant_type") != "client_credentials":
            return (
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
                {},
            )
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return (
                400,
                {"error": "invalid_client", "error_description": "invalid client credentials"},
                {},
            )
        token = f"00DFAKE!token-{next(self._token_ids)}"
        self.tokens.add(token)
        return (
            200,
            {
                "access_token": token,
                "instance_url": self.url,
                "id": f"{self.url}/id/00DFAKE/005FAKE",
                "token_type": "Bearer",
                "issued_at": str(int(time.time() * 1000)),
                "signature": "not-checked-here",
            },
            {},
        )

    def _query(self, soql: str, batch: int) -> Answer:
        match = _QUERY.match(soql)
        if match is None:
            return (
                400,
                _error(f"this fake answers Handoff's query only: {soql[:200]}", "MALFORMED_QUERY"),
                {},
            )
        if match["object"] != "Lead":
            return (
                400,
                _error(f"sObject type '{match['object']}' is not supported.", "INVALID_TYPE"),
                {},
            )
        selected = [name.strip() for name in match["fields"].split(",")]
        lowered = [name.lower() for name in selected]
        if len(set(lowered)) != len(lowered):
            return 400, _error("duplicate field selected", "DUPLICATE_FIELD"), {}
        for name in selected:
            head = name.split(".")[0]
            known = head in self.fields if "." not in name else head == "Owner"
            if not known:
                message = f"No such column '{name}' on entity 'Lead'."
                return 400, _error(message, "INVALID_FIELD"), {}
        since = datetime.strptime(match["since"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        matching = sorted(
            (lead["modified"], lead_id)
            for lead_id, lead in self.leads.items()
            if lead["modified"] >= since
        )
        records = [self._record(lead_id, selected) for _, lead_id in matching]
        locator = f"01gFAKE{next(self._ids):08d}"
        self._locators[locator] = (records, batch)  # a snapshot, as a query locator is
        return 200, self._page(locator, 0), {}

    def _more(self, name: str) -> Answer:
        locator, _, offset = name.rpartition("-")
        if locator not in self._locators or not offset.isdigit():
            return 400, _error("invalid query locator", "INVALID_QUERY_LOCATOR"), {}
        return 200, self._page(locator, int(offset)), {}

    def _page(self, locator: str, offset: int) -> dict[str, Any]:
        records, size = self._locators[locator]
        page = records[offset : offset + size]
        done = offset + len(page) >= len(records)
        answer: dict[str, Any] = {"totalSize": len(records), "done": done, "records": page}
        if not done:
            answer["nextRecordsUrl"] = (
                f"/services/data/{VERSION}/query/{locator}-{offset + len(page)}"
            )
        return answer

    def _record(self, lead_id: str, selected: list[str]) -> dict[str, Any]:
        lead = self.leads[lead_id]
        values = {**lead["values"], "Id": lead_id, "SystemModstamp": sf_time(lead["modified"])}
        record: dict[str, Any] = {
            "attributes": {
                "type": "Lead",
                "url": f"/services/data/{VERSION}/sobjects/Lead/{lead_id}",
            }
        }
        for name in selected:
            if name.startswith("Owner."):
                owner = self.users.get(values.get("OwnerId") or "")
                if owner is None:
                    record["Owner"] = None
                else:
                    record.setdefault("Owner", {"attributes": {"type": "User"}})
                    record["Owner"][name.split(".", 1)[1]] = owner.get(name.split(".", 1)[1])
            else:
                record[name] = values.get(name)
        return record

    def _update(self, sobject: str, lead_id: str, body: Any) -> Answer:
        if sobject != "Lead" or lead_id not in self.leads:
            return 404, _error("The requested resource does not exist", "NOT_FOUND"), {}
        if not isinstance(body, dict):
            return 400, _error("expected a JSON object", "JSON_PARSER_ERROR"), {}
        for name in body:
            if name not in self.fields:
                return (
                    400,
                    _error(f"No such column '{name}' on sobject of type Lead", "INVALID_FIELD"),
                    {},
                )
            if not self.fields[name]["updateable"]:
                message = f"Unable to create/update fields: {name}."
                return 400, _error(message, "INVALID_FIELD_FOR_INSERT_UPDATE"), {}
        self.leads[lead_id]["values"].update(body)
        return 204, None, {}


def _batch_size(headers: dict[str, str]) -> int:
    """Sforce-Query-Options: batchSize=N (Salesforce: 200 to 2,000; 2,000 by default)."""
    option = headers.get("sforce-query-options", "")
    found = re.search(r"batchSize=(\d+)", option, re.IGNORECASE)
    size = int(found.group(1)) if found else 2000
    return min(max(size, 200), 2000)


def _error(message: str, code: str) -> list[dict[str, Any]]:
    return [{"message": message, "errorCode": code}]
