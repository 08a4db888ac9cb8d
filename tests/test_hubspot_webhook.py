"""POST /hubspot/webhook through the real server: HubSpot's v3 signature (computed
here, independently of bot/crm/webhook.py), the API-key mode, each record shape in
one batch, per-record outcomes, and the handed-off lead's card in the rep's DM."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot import clock
from store.models import Handoff, Lead
from tests.fakehubspot import TOKEN, FakeHubSpot

CLIENT_SECRET = "hubspot-client-secret-0123"
WEBHOOK_KEY = "hubspot-webhook-key-4567"
SOURCES = """
hubspot:
  object: contacts
  fields:
    email: email
    name: [firstname, lastname]
    company: company
    owner: hubspot_owner_id
    created_at: createdate
  attributes: {employees: numemployees, country: country, industry: industry}
  signals: {demo_request: demo_requested_at, pricing_page: last_pricing_visit}
"""


@pytest.fixture
def sources(tmp_path: Path) -> str:
    path = tmp_path / "sources.yml"
    path.write_text(SOURCES)
    return str(path)


def properties(n: int, **overrides: Any) -> dict[str, Any]:
    """A contact that qualifies (demo request + pricing visit within the window)."""
    day = clock.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    values = {
        "email": f"lead{n}@acme.example",
        "firstname": "Ana",
        "lastname": f"Ruiz{n}",
        "company": "Acme",
        "hubspot_owner_id": "",
        "createdate": "2026-01-15T08:00:00Z",
        "numemployees": "250",
        "country": "AU",
        "industry": "Software",
        "demo_requested_at": str(int(day.timestamp() * 1000)),  # epoch ms
        "last_pricing_visit": day.date().isoformat(),  # a date property
    }
    values.update(overrides)
    return values


def v3_signature(secret: str, uri: str, body: bytes, timestamp: str) -> str:
    """HubSpot's v3 scheme, as its docs define it: POST + URI + body + timestamp."""
    source = b"POST" + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), source, hashlib.sha256).digest()).decode()


def post_signed(
    app,
    payload: Any,
    *,
    secret: str = CLIENT_SECRET,
    signed_uri: str | None = None,
    query: str = "",
    age_ms: int = 0,
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    timestamp = str(int(time.time() * 1000) - age_ms)
    path = "/hubspot/webhook" + query
    uri = signed_uri or f"{app.url}{path}"
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": timestamp,
        "X-HubSpot-Signature-v3": v3_signature(secret, uri, body, timestamp),
    }
    return app.http.post(path, content=body, headers=headers)


def stored(db, model) -> list[Any]:
    with db.session() as session:
        return list(session.scalars(select(model)).all())


def test_a_batch_of_each_shape_gets_an_outcome_per_record(
    app_factory, db, fake_slack, sources
) -> None:
    app = app_factory(db, hubspot_client_secret=CLIENT_SECRET, handoff_sources=sources)
    batch = [
        {"id": "101", "properties": properties(1)},  # v3 object
        {"vid": 102, "properties": {k: {"value": v} for k, v in properties(2).items()}},
        {"hs_object_id": "103", **properties(3, email="not-an-address")},  # flat, invalid
        {"hs_object_id": "104", **properties(4, demo_requested_at="", last_pricing_visit="")},
    ]
    response = post_signed(app, batch)
    assert response.status_code == 202, response.text
    results = response.json()["results"]
    assert [(r["id"], r["outcome"]) for r in results] == [
        ("hubspot:101", "handed_off"),
        ("hubspot:102", "handed_off"),
        ("hubspot:103", "invalid"),
        ("hubspot:104", "nurture"),
    ]
    assert results[2]["errors"] == [
        {
            "field": "email (property email)",
            "message": "expected an email address like ana@acme.com",
        }
    ]
    owners = {results[0]["owner"], results[1]["owner"]}
    assert owners == {"rep1@example.com", "rep2@example.com"}

    leads = {lead.external_id: lead for lead in stored(db, Lead)}
    assert sorted(leads) == ["hubspot:101", "hubspot:102", "hubspot:104"]
    assert leads["hubspot:101"].name == "Ana Ruiz1"
    assert leads["hubspot:101"].attributes["employees"] == 250
    created = leads["hubspot:101"].created_at  # the contact's createdate, not now
    assert created.replace(tzinfo=None).isoformat() == "2026-01-15T08:00:00"
    assert len(stored(db, Handoff)) == 2

    app.drain()
    posts = fake_slack.wait_for("chat.postMessage", count=2)
    assert sorted(post.args["channel"] for post in posts) == ["U0REP1", "U0REP2"]
    assert any("Ruiz1" in json.dumps(post.args) for post in posts)

    again = post_signed(app, batch)  # HubSpot re-sends: nothing changes
    assert again.status_code == 202
    assert [r["outcome"] for r in again.json()["results"]] == [
        "unchanged",
        "unchanged",
        "invalid",
        "unchanged",
    ]
    app.drain()
    assert len(fake_slack.calls_to("chat.postMessage")) == 2
    assert len(stored(db, Handoff)) == 2


def test_one_record_is_one_result(app_factory, db, sources) -> None:
    app = app_factory(db, hubspot_client_secret=CLIENT_SECRET, handoff_sources=sources)
    response = post_signed(app, {"objectId": 7, "properties": properties(7)})
    assert response.status_code == 202
    [result] = response.json()["results"]
    assert (result["id"], result["outcome"]) == ("hubspot:7", "handed_off")


def test_the_uri_is_signed_as_hubspot_sees_it(app_factory, db, sources) -> None:
    app = app_factory(db, hubspot_client_secret=CLIENT_SECRET, handoff_sources=sources)
    # HubSpot decodes %3A, %2C, %40 ... before signing, and leaves %20 and %3D alone.
    query = "?portal=1&tag=a%3Ab%2Cc%40d&note=a%20b%3Dc"
    decoded = f"{app.url}/hubspot/webhook?portal=1&tag=a:b,c@d&note=a%20b%3Dc"
    response = post_signed(
        app, {"id": "8", "properties": properties(8)}, query=query, signed_uri=decoded
    )
    assert response.status_code == 202, response.text
    undecoded = post_signed(
        app,
        {"id": "8", "properties": properties(8)},
        query=query,
        signed_uri=f"{app.url}/hubspot/webhook{query}",
    )
    assert undecoded.status_code == 401


def test_behind_a_proxy_the_public_url_is_signed(app_factory, db, sources) -> None:
    public = "https://handoff.example.com/crm"
    app = app_factory(
        db,
        hubspot_client_secret=CLIENT_SECRET,
        handoff_sources=sources,
        handoff_public_url=public,
    )
    record = {"id": "9", "properties": properties(9)}
    signed = post_signed(app, record, signed_uri=f"{public}/hubspot/webhook")
    assert signed.status_code == 202, signed.text
    as_received = post_signed(app, {"id": "10", "properties": properties(10)})
    assert as_received.status_code == 401


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"age_ms": 6 * 60 * 1000}, "X-HubSpot-Request-Timestamp is more than 5 minutes from now"),
        ({"age_ms": -6 * 60 * 1000}, "X-HubSpot-Request-Timestamp is more than 5 minutes from now"),
        ({"secret": "someone-elses-secret"}, "bad X-HubSpot-Signature-v3"),
    ],
)
def test_stale_or_forged_signatures_are_refused(app_factory, db, sources, kwargs, error) -> None:
    app = app_factory(db, hubspot_client_secret=CLIENT_SECRET, handoff_sources=sources)
    response = post_signed(app, {"id": "11", "properties": properties(11)}, **kwargs)
    assert (response.status_code, response.json()) == (401, {"error": error})
    assert stored(db, Lead) == []


def test_unsigned_and_malformed_auth_are_refused(app_factory, db, sources) -> None:
    app = app_factory(db, hubspot_client_secret=CLIENT_SECRET, handoff_sources=sources)
    body = json.dumps({"id": "12", "properties": properties(12)}).encode()
    plain = app.http.post("/hubspot/webhook", content=body)
    assert (plain.status_code, plain.json()) == (401, {"error": "missing X-HubSpot-Signature-v3"})
    odd = app.http.post(
        "/hubspot/webhook",
        content=body,
        headers={"X-HubSpot-Request-Timestamp": "9" * 400, "X-HubSpot-Signature-v3": "é".encode()},
    )
    assert (odd.status_code, odd.json()["error"]) == (
        401,
        "X-HubSpot-Request-Timestamp is not epoch milliseconds",
    )
    non_ascii = app.http.post(
        "/hubspot/webhook",
        content=body,
        headers={
            "X-HubSpot-Request-Timestamp": str(int(time.time() * 1000)),
            "X-HubSpot-Signature-v3": "é".encode(),
        },
    )
    assert (non_ascii.status_code, non_ascii.json()) == (
        401,
        {"error": "bad X-HubSpot-Signature-v3"},
    )
    # The API key is not configured: a key header does not open the door.
    keyed = app.http.post("/hubspot/webhook", content=body, headers={"X-Handoff-Key": "x"})
    assert keyed.status_code == 401
    assert stored(db, Lead) == []


def test_api_key_mode(app_factory, db, sources) -> None:
    app = app_factory(db, hubspot_webhook_key=WEBHOOK_KEY, handoff_sources=sources)
    body = json.dumps({"id": "13", "properties": properties(13)}).encode()
    good = app.http.post("/hubspot/webhook", content=body, headers={"X-Handoff-Key": WEBHOOK_KEY})
    assert good.status_code == 202
    assert good.json()["results"][0]["outcome"] == "handed_off"
    bad = app.http.post("/hubspot/webhook", content=body, headers={"X-Handoff-Key": "guess"})
    assert (bad.status_code, bad.json()) == (401, {"error": "bad X-Handoff-Key"})
    signed = post_signed(app, {"id": "14", "properties": properties(14)})  # no client secret
    assert signed.status_code == 401
    assert [lead.external_id for lead in stored(db, Lead)] == ["hubspot:13"]


def test_owner_ids_are_resolved_through_the_owners_api(app_factory, db, sources) -> None:
    with FakeHubSpot() as hubspot:
        hubspot.add_owner("41", "rep2@example.com")
        settings = {
            "hubspot_client_secret": CLIENT_SECRET,
            "handoff_sources": sources,
            "hubspot_token": TOKEN,
            "hubspot_api_url": hubspot.url,
        }
        app = app_factory(db, **settings)
        record = {"id": "21", "properties": properties(21, hubspot_owner_id="41")}
        [result] = post_signed(app, record).json()["results"]
        assert (result["outcome"], result["owner"]) == ("handed_off", "rep2@example.com")

        # A process that never got the owners list (HubSpot down since it started)
        # answers 503, which HubSpot retries, rather than route the lead to the wrong rep.
        hubspot.set_outage(True)
        fresh = app_factory(db, **settings)
        record = {"id": "22", "properties": properties(22, hubspot_owner_id="41")}
        assert post_signed(fresh, record).status_code == 503
    assert [lead.external_id for lead in stored(db, Lead)] == ["hubspot:21"]


def test_neither_configured_is_not_found(app, db) -> None:
    response = post_signed(app, {"id": "15", "properties": properties(15)})
    assert (response.status_code, response.json()) == (404, {"error": "not found"})
    assert app.http.get("/hubspot/webhook").status_code == 405


def test_too_large_and_not_json(app_factory, db, sources) -> None:
    app = app_factory(db, hubspot_client_secret=CLIENT_SECRET, handoff_sources=sources)
    huge = post_signed(app, b"[" + b" " * (1024 * 1024) + b"]")
    assert huge.status_code == 413
    broken = post_signed(app, b'{"id": "16", "properties": ')
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("body is not valid JSON")
    not_records = post_signed(app, [1, "two", None])  # JSON, but no records: each invalid
    assert not_records.status_code == 202
    assert [r["outcome"] for r in not_records.json()["results"]] == ["invalid"] * 3
    assert stored(db, Lead) == []


def test_no_hubspot_mapping_is_retried_not_dropped(app_factory, db, tmp_path) -> None:
    path = tmp_path / "only-salesforce.yml"
    path.write_text("salesforce:\n  fields: {email: Email}\n")
    app = app_factory(db, hubspot_client_secret=CLIENT_SECRET, handoff_sources=str(path))
    response = post_signed(app, {"id": "17", "properties": properties(17)})
    assert response.status_code == 503  # HubSpot retries a 5xx; a 4xx would lose the record
    assert response.headers["Retry-After"] == "5"


def test_secrets_never_reach_the_log(app_factory, db, sources, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    app = app_factory(
        db,
        hubspot_client_secret=CLIENT_SECRET,
        hubspot_webhook_key=WEBHOOK_KEY,
        handoff_sources=sources,
    )
    post_signed(app, {"id": "18", "properties": properties(18)})
    post_signed(app, {"id": "19", "properties": properties(19)}, secret="wrong-secret-000")
    body = json.dumps({"id": "20", "properties": properties(20)}).encode()
    app.http.post("/hubspot/webhook", content=body, headers={"X-Handoff-Key": "wrong-key-0000"})
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "rejected POST /hubspot/webhook: bad X-Handoff-Key" in text
    assert "lead hubspot:18 received" in text
    for value in (CLIENT_SECRET, WEBHOOK_KEY, "wrong-key-0000", "lead19@acme.example"):
        assert value not in text
