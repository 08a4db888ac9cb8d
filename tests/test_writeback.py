"""Decisions flowing upstream: the signed webhook and HubSpot, retried through the outbox
without ever holding up Slack. The outside services are httpx MockTransports that
record the exact requests."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from bot import clock
from bot.blocks.card import ACCEPT
from bot.cli import main
from bot.definition import parse_definition
from bot.signing import intake_signature
from store.models import Handoff, Outbox
from tests.conftest import lead
from tests.slackreq import block_actions
from tests.test_decisions import status_of, submit_reject, wait_until

WEBHOOK_URL = "https://hooks.example.test/handoff"
WEBHOOK_SECRET = "webhook-secret"


class Upstream:
    """Answers from a script (then 200), recording every request."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0) if self.answers else httpx.Response(200, json={})


def start(app_factory, db, upstream: Upstream, **settings: Any):
    app = app_factory(db, **settings)
    app.services.http = httpx.Client(transport=httpx.MockTransport(upstream))
    app.post_leads(lead("crm-1"))
    app.drain()
    return app


def accept(app, db) -> int:
    with db.session() as session:
        handoff_id = session.scalars(select(Handoff.id)).one()
    app.slack(block_actions(user_id="U0REP1", action_id=ACCEPT, value=str(handoff_id)))
    wait_until(lambda: outbox_rows(db, "webhook") or outbox_rows(db, "hubspot"))
    return handoff_id


def outbox_rows(db, kind: str) -> list[Outbox]:
    with db.session() as session:
        return list(session.scalars(select(Outbox).where(Outbox.kind == kind)))


def drain_later(app, minutes: float) -> None:
    with freeze_time(clock.now() + timedelta(minutes=minutes)):
        app.drain()


def test_webhook_is_signed_and_retried_after_500_and_429(app_factory, db, fake_slack):
    upstream = Upstream(httpx.Response(500), httpx.Response(429, headers={"Retry-After": "30"}))
    app = start(
        app_factory,
        db,
        upstream,
        handoff_webhook_url=WEBHOOK_URL,
        handoff_webhook_secret=WEBHOOK_SECRET,
    )
    accept(app, db)
    app.drain()
    [row] = outbox_rows(db, "webhook")
    assert (row.status, row.attempts, row.last_error) == (
        "pending",
        1,
        "the webhook answered 500",
    )
    drain_later(app, 1)
    [row] = outbox_rows(db, "webhook")
    assert row.status == "pending" and "429" in row.last_error
    assert row.next_attempt_at - clock.now() > timedelta(seconds=80)  # 1 min + Retry-After 30 s
    drain_later(app, 2)
    [row] = outbox_rows(db, "webhook")
    assert (row.status, row.attempts) == ("sent", 2)  # the 429 was no attempt

    first, _, last = upstream.requests
    assert (last.method, str(last.url)) == ("POST", WEBHOOK_URL)
    assert last.content == first.content  # the same event each time
    expected = intake_signature(WEBHOOK_SECRET, last.headers["X-Handoff-Timestamp"], last.content)
    assert last.headers["X-Handoff-Signature"] == expected
    event = json.loads(last.content)
    assert event["event"] == "handoff.accepted"
    assert event["lead"]["id"] == "crm-1" and event["handoff"]["owner"] == "rep1@example.com"


def test_webhook_names_the_definition_the_lead_was_judged_under(
    app_factory, db, fake_slack, definition
):
    upstream = Upstream()
    webhook = {"handoff_webhook_url": WEBHOOK_URL, "handoff_webhook_secret": WEBHOOK_SECRET}
    start(app_factory, db, upstream, **webhook)  # handed off under version 3
    assert definition.version == 3
    # The file moves on to version 4 and the app restarts before the rep decides.
    data = yaml.safe_load(Path(definition.source).read_text())
    data["version"] = 4
    newer = parse_definition(data)
    app = app_factory(db, defn=newer, **webhook)
    app.services.http = httpx.Client(transport=httpx.MockTransport(upstream))
    # An update while with sales is judged again, under 4, but hands nothing off.
    updated = app.post_leads(lead("crm-1", title="COO")).json()["results"][0]
    assert updated["outcome"] == "updated"
    accept(app, db)
    app.drain()
    [request] = upstream.requests
    assert json.loads(request.content)["definition_version"] == 3


def test_hubspot_gets_the_rejection_on_the_contact(app_factory, db, fake_slack):
    upstream = Upstream()
    app = start(
        app_factory,
        db,
        upstream,
        hubspot_token="pat-test-token",
        hubspot_api_url="https://api.hubapi.test",
    )
    with db.session() as session:
        handoff_id = session.scalars(select(Handoff.id)).one()
    submit_reject(app, "U0REP1", handoff_id, "too_small", "12 staff")
    wait_until(lambda: status_of(db, handoff_id) == "rejected")  # written after the ack
    app.drain()
    [request] = upstream.requests
    assert request.method == "PATCH"
    assert request.url.path == "/crm/v3/objects/contacts/crm-1@acme.example"
    assert request.url.params["idProperty"] == "email"
    assert request.headers["Authorization"] == "Bearer pat-test-token"
    assert json.loads(request.content) == {
        "properties": {
            "hs_lead_status": "UNQUALIFIED",
            "handoff_rejection_reason": "Company too small",
            "handoff_rejection_note": "12 staff",
        }
    }
    [row] = outbox_rows(db, "hubspot")
    assert row.status == "sent"


def test_hubspot_429_waits_for_retry_after(app_factory, db, fake_slack):
    upstream = Upstream(httpx.Response(429, headers={"Retry-After": "10"}))
    app = start(app_factory, db, upstream, hubspot_token="pat-test-token")
    accept(app, db)
    app.drain()
    [row] = outbox_rows(db, "hubspot")
    assert row.status == "pending" and "429" in row.last_error
    app.drain()
    assert len(upstream.requests) == 1  # not before Retry-After
    drain_later(app, 1)
    assert len(upstream.requests) == 2 and outbox_rows(db, "hubspot")[0].status == "sent"


def test_write_back_down_does_not_hold_up_slack(app_factory, db, fake_slack):
    upstream = Upstream(*[httpx.Response(503)] * 5)
    app = start(
        app_factory,
        db,
        upstream,
        handoff_webhook_url=WEBHOOK_URL,
        handoff_webhook_secret=WEBHOOK_SECRET,
    )
    accept(app, db)
    app.drain()
    assert len(fake_slack.calls_to("chat.update")) == 1  # the card shows the decision
    [row] = outbox_rows(db, "webhook")
    assert row.status == "pending" and "503" in row.last_error
    for minutes in (1, 3, 6, 12, 30):
        drain_later(app, minutes)
    assert outbox_rows(db, "webhook")[0].status == "sent"
    assert len(upstream.requests) == 6


@pytest.fixture
def cli_env(db, monkeypatch):
    from tests.conftest import DATA

    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))


def test_lead_history_tells_the_whole_story(app_factory, db, fake_slack, cli_env):
    upstream = Upstream(httpx.Response(500))
    app = start(
        app_factory,
        db,
        upstream,
        handoff_webhook_url=WEBHOOK_URL,
        handoff_webhook_secret=WEBHOOK_SECRET,
    )
    accept(app, db)
    app.drain()
    drain_later(app, 1)
    result = CliRunner().invoke(main, ["lead", "crm-1"], catch_exceptions=False)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Lead crm-1: Acme <crm-1@acme.example>, status accepted")
    kinds = [line.split()[3] for line in lines[1:] if not line.startswith(" ")]  # not details
    assert kinds[:2] == ["judged", "handed"]
    assert "accepted" in kinds and "webhook" in kinds and "handoff" in kinds  # the card
    assert "definition v3" in lines[1]
    assert any("webhook" in line and "sent after 2 attempt(s)" in line for line in lines)
    missing = CliRunner().invoke(main, ["lead", "nope"])
    assert missing.exit_code == 2 and "no lead with id 'nope'" in missing.stderr
