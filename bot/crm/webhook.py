"""`POST /hubspot/webhook`: records from a HubSpot workflow's "Send a webhook" action.

Authenticated by HubSpot's v3 request signature (the client secret) or by an
API key header. HubSpot retries a 5xx or 429 for three days and gives up on any
4xx, so the answers are chosen for that: a bad record is reported in a 202 and
kept out (never retried forever); a transient failure (database busy, too many
requests at once, a sources.yml that does not load) is a 503, retried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from bot import clock, metrics
from bot.crm.mapping import OwnerEmail, record_id, to_lead
from bot.crm.sources import CrmSource
from bot.intake import DatabaseBusy, Intake, report_received
from bot.leads import InvalidLeads, LeadIn
from bot.logs import lead_event
from bot.settings import secret
from bot.wsgi import BodyRefused, Response, read_body

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

CRM = "hubspot"
SIGNATURE_WINDOW_MS = 5 * 60 * 1000
INVALID = "invalid"
# HubSpot's v3 rules: these escapes in the URI are decoded before signing; others stay.
_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def signed_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the escapes of its table decoded, any case."""
    out, i = [], 0
    while i < len(uri):
        escape = uri[i : i + 3].upper()
        if escape in _DECODED:
            out.append(_DECODED[escape])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def signature_v3(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(client secret, method + URI + body + timestamp))."""
    message = (method + signed_uri(uri)).encode() + body + timestamp.encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_v3(
    client_secret: str,
    *,
    method: str,
    uri: str,
    body: bytes,
    timestamp: str,
    signature: str,
    now_ms: int,
) -> str | None:
    """None when the request is genuine, else why not (never the expected value)."""
    if not (0 < len(timestamp) <= 15 and timestamp.isascii() and timestamp.isdigit()):
        return "X-HubSpot-Request-Timestamp is not epoch milliseconds"
    if abs(now_ms - int(timestamp)) > SIGNATURE_WINDOW_MS:
        return "X-HubSpot-Request-Timestamp is more than 5 minutes from now"
    expected = signature_v3(client_secret, method, uri, body, timestamp)
    # WSGI headers are latin-1 strings: compared as bytes, any header is comparable.
    if not hmac.compare_digest(expected.encode(), signature.encode("latin-1", "replace")):
        return "bad X-HubSpot-Signature-v3"
    return None


def request_uri(environ: dict[str, Any], public_url: str | None) -> str:
    """The full URI HubSpot called: behind a proxy, HANDOFF_PUBLIC_URL + the path and
    query as received; else rebuilt from the request (scheme, Host)."""
    raw = environ.get("REQUEST_URI")  # waitress: the path and query as sent, undecoded
    if not raw:
        query = environ.get("QUERY_STRING", "")
        raw = quote(environ.get("PATH_INFO", "")) + (f"?{query}" if query else "")
    if public_url:
        return public_url.rstrip("/") + raw
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{raw}"


class OwnersUnavailable(Exception):  # noqa: N818 - a condition the caller answers
    """The owners lookup failed: the batch is refused (503) rather than routed as if
    its owners were unknown, which would hand leads to the wrong reps."""


def _owner_lookup(services: Any) -> OwnerEmail | None:
    """The owners API's id -> email, when the app has one (with HUBSPOT_TOKEN)."""
    owners = services.hubspot_owners
    if owners is None:
        return None
    lookup = owners.email_of

    def owner_email(owner_id: str) -> str | None:
        try:
            return lookup(owner_id)
        except Exception as exc:
            raise OwnersUnavailable(str(exc)) from exc

    return owner_email


class HubSpotWebhook:
    """Authenticates, maps and hands each record to intake; one outcome per record."""

    def __init__(self, services: Services, intake: Intake, slots: threading.Semaphore) -> None:
        settings = services.settings
        self.services = services
        self.intake = intake
        self.slots = slots
        self.client_secret = secret(settings.hubspot_client_secret)
        self.api_key = secret(settings.hubspot_webhook_key)
        self.public_url = settings.handoff_public_url
        self.source: CrmSource | None = None
        self.source_problem: str | None = None
        if self.enabled:
            self._load_source()

    @property
    def enabled(self) -> bool:
        return bool(self.client_secret or self.api_key)

    def _load_source(self) -> None:
        sources = self.services.sources  # read and checked at start-up (handoff run)
        self.source = sources.hubspot if sources is not None else None
        if self.source is None:
            self.source_problem = "no hubspot: mapping in sources.yml"
            logger.error("the HubSpot webhook is configured but sources.yml maps no hubspot:")

    def __call__(self, environ: dict[str, Any]) -> Response:
        if not self.enabled:
            return 404, {"error": "not found"}
        try:
            body = read_body(environ)
        except BodyRefused as refused:
            return refused.response
        problem = self._authenticate(environ, body)
        if problem:
            logger.warning("rejected POST /hubspot/webhook: %s", problem)
            return 401, {"error": problem}
        if self.source is None:  # fixed by an operator: HubSpot keeps retrying meanwhile
            return 503, {"error": self.source_problem}
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            return 400, {"error": f"body is not valid JSON: {_json_problem(exc)}"}
        if not self.slots.acquire(blocking=False):
            return 503, {"error": "too many lead requests at once"}
        try:
            results = self.receive(data if isinstance(data, list) else [data])
        except DatabaseBusy as exc:
            logger.warning("POST /hubspot/webhook answered 503: %s", exc)
            return 503, {"error": "database busy, nothing stored"}
        except OwnersUnavailable:
            logger.exception("POST /hubspot/webhook answered 503: the owners lookup failed")
            return 503, {"error": "HubSpot owners unavailable, nothing stored"}
        finally:
            self.slots.release()
        return 202, {"results": results}

    def _authenticate(self, environ: dict[str, Any], body: bytes) -> str | None:
        key = environ.get("HTTP_X_HANDOFF_KEY")
        if key is not None and self.api_key:
            if hmac.compare_digest(key.encode("latin-1", "replace"), self.api_key.encode()):
                return None
            return "bad X-Handoff-Key"
        signature = environ.get("HTTP_X_HUBSPOT_SIGNATURE_V3")
        if signature is not None and self.client_secret:
            return verify_v3(
                self.client_secret,
                method=environ.get("REQUEST_METHOD", "POST"),
                uri=request_uri(environ, self.public_url),
                body=body,
                timestamp=environ.get("HTTP_X_HUBSPOT_REQUEST_TIMESTAMP", ""),
                signature=signature,
                now_ms=int(time.time() * 1000),
            )
        wanted = [
            name
            for name, configured in (
                ("X-HubSpot-Signature-v3", self.client_secret),
                ("X-Handoff-Key", self.api_key),
            )
            if configured
        ]
        return f"missing {' or '.join(wanted)}"

    def receive(self, records: list[Any]) -> list[dict[str, Any]]:
        """Map every record, ingest the valid ones in one go; results in the records' order."""
        assert self.source is not None
        return ingest_records(self.services, self.intake, self.source, records)


def ingest_records(
    services: Any, intake: Intake, source: CrmSource, records: list[Any]
) -> list[dict[str, Any]]:
    """Map CRM records to leads and ingest the valid ones in one go (a webhook's body, a
    poll's page); one result per record, in order, an invalid record reported as such."""
    # HubSpot names an owner by id (its owners API); Salesforce's mapping reads the email.
    owner_email = _owner_lookup(services) if source.crm == CRM else None
    results: list[dict[str, Any] | None] = [None] * len(records)
    leads: list[LeadIn] = []
    positions: list[int] = []
    for index, record in enumerate(records):
        try:
            leads.append(to_lead(record, source, owner_email=owner_email))
            positions.append(index)
        except InvalidLeads as exc:
            rid = record_id(record)
            results[index] = {
                "id": f"{source.crm}:{rid}" if rid else None,
                "outcome": INVALID,
                "errors": [{"field": e.field, "message": e.message} for e in exc.errors],
            }
    outcomes = intake.ingest(leads, now=clock.now()) if leads else []
    for index, outcome in zip(positions, outcomes, strict=True):
        results[index] = outcome.to_json()
    done = [result for result in results if result is not None]
    for index, result in enumerate(done):
        _count(result, index, source.crm)
    return done


_NAMES = {"hubspot": "HubSpot", "salesforce": "Salesforce"}


def _count(result: dict[str, Any], index: int, crm: str = CRM) -> None:
    """The record's count in the metrics and its line in the log."""
    outcome = result["outcome"]
    name = _NAMES.get(crm, crm)
    metrics.CRM_RECORDS.labels(crm, outcome).inc()
    if outcome == INVALID:
        fields = ", ".join(error["field"] or "record" for error in result["errors"])
        lead_event(result["id"] or f"{crm} record #{index}", "invalid", f"from {name}: {fields}")
        return
    report_received(result, via=f"from {name}: ")


def _json_problem(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 ({exc.reason} at byte {exc.start})"
    return f"a number has more than {sys.get_int_max_str_digits()} digits"
