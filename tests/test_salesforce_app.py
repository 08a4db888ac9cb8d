"""Salesforce wired into the running app: the `salesforce-poll` job maps each changed
Lead and hands the qualified ones to their owner in Slack (a bad record named and
kept out, never holding up the others), and the rep's decision is written back to
the Lead through the outbox (PATCH against the fake Salesforce)."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot import clock
from bot.blocks.card import ACCEPT
from bot.crm.webhook import ingest_records
from bot.intake import Intake
from bot.salesforce.poll import as_record
from bot.scheduler import SALESFORCE_POLL_JOB, build_scheduler, salesforce_poll
from store.models import Handoff, Lead, Outbox
from tests.conftest import lead
from tests.fakesalesforce import CLIENT_ID, CLIENT_SECRET, FakeSalesforce
from tests.slackreq import block_actions
from tests.test_decisions import status_of, submit_reject, wait_until

SOURCES = """
salesforce:
  fields:
    email: Email
    name: [FirstName, LastName]
    company: Company
    owner: Owner.Email
  attributes: {employees: NumberOfEmployees, country: Country}
  signals: {demo_request: Demo_Requested__c, pricing_page: Pricing_Visit__c}
  poll_every: 30s
"""


@pytest.fixture(autouse=True)
def _no_salesforce_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SALESFORCE_URL", "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def salesforce() -> Any:
    with FakeSalesforce() as fake:
        for name in ("Demo_Requested__c", "Pricing_Visit__c"):
            fake.add_field(name, "datetime")
        fake.add_field("Handoff_Status__c", "picklist")
        fake.add_field("Handoff_Reason__c")
        fake.add_field("Handoff_Note__c", "textarea")
        yield fake


def start(app_factory, db, salesforce, tmp_path: Path, sources: str = SOURCES):
    path = tmp_path / "sources.yml"
    path.write_text(sources)
    return app_factory(
        db,
        handoff_sources=str(path),
        salesforce_url=salesforce.url,
        salesforce_client_id=CLIENT_ID,
        salesforce_client_secret=CLIENT_SECRET,
    )


def qualifying(salesforce: FakeSalesforce, owner_email: str = "rep2@example.com", **values):
    """A Lead that qualifies (demo request + pricing visit yesterday), changed a minute
    from now: after the cursor the first poll starts from."""
    yesterday = (clock.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    owner = salesforce.add_user(owner_email)
    fields = {
        "Email": "ana@acme.example",
        "FirstName": "Ana",
        "LastName": "Ruiz",
        "Company": "Acme",
        "NumberOfEmployees": 250,
        "Country": "AU",
        "Demo_Requested__c": yesterday,
        "Pricing_Visit__c": yesterday,
        "OwnerId": owner,
        **values,
    }
    return salesforce.add_lead(clock.now() + timedelta(minutes=1), **fields)


def poll(app) -> None:
    """What the `salesforce-poll` job does, run here rather than on the scheduler thread."""
    found = salesforce_poll(app.services)
    assert found is not None
    seconds, job = found
    assert seconds == 30
    job()
    app.drain()


def outbox_rows(db) -> list[Outbox]:
    with db.session() as session:
        return list(session.scalars(select(Outbox).where(Outbox.kind == "salesforce")))


def invalid_count(app) -> float:
    """handoff_crm_records_total{outcome="invalid",source="salesforce"}, as /metrics says."""
    text = app.http.get("/metrics").text
    pattern = r'^handoff_crm_records_total\{outcome="invalid",source="salesforce"\} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def handoff_of(db, external_id: str) -> Handoff:
    with db.session() as session:
        lead_row = session.scalars(select(Lead).where(Lead.external_id == external_id)).one()
        return session.scalars(select(Handoff).where(Handoff.lead_id == lead_row.id)).one()


def test_a_polled_lead_is_handed_to_its_owner_and_a_bad_one_is_named_apart(
    app_factory, db, fake_slack, salesforce, tmp_path, caplog
) -> None:
    bad = qualifying(salesforce, Email="ana at acme")
    good = qualifying(salesforce, Email="bea@acme.example", FirstName="Bea", LastName="Ng")
    app = start(app_factory, db, salesforce, tmp_path)
    before = invalid_count(app)
    with caplog.at_level(logging.INFO):
        poll(app)
    [card] = fake_slack.calls_to("chat.postMessage")
    assert card.args["channel"] == "U0REP2"  # the Lead's owner, by the owner's email
    assert "Bea Ng" in card.args["text"]
    blocks = card.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    links = [
        element
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if "url" in element
    ]
    assert [(b["text"]["text"], b["url"]) for b in links] == [
        ("Open in Salesforce", f"{salesforce.url}/lightning/r/Lead/{good}/view")
    ]
    with db.session() as session:
        assert session.scalars(select(Lead.external_id)).all() == [f"salesforce:{good}"]
    assert invalid_count(app) == before + 1
    assert f"salesforce:{bad}" in caplog.text
    assert "from Salesforce: email (property Email)" in caplog.text
    assert "ana at acme" not in caplog.text  # the field, never its value

    poll(app)  # nothing changed in Salesforce: nothing more
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_each_record_of_a_page_gets_its_outcome_the_bad_one_named(
    app_factory, db, fake_slack, salesforce, tmp_path
) -> None:
    app = start(app_factory, db, salesforce, tmp_path)
    records = [
        {"Id": "00Q000000000001AAA", "SystemModstamp": "2026-11-27T09:00:00.000+0000"},
        {"Id": "00Q000000000002AAA", "Email": "bad@", "Company": "Acme"},
        {"Id": "00Q000000000003AAA", "Email": "c@acme.example", "Company": "Acme"},
    ]
    services = app.services
    intake = Intake(services.db, services.definition, delivery=services.delivery)
    source = services.sources.salesforce
    results = ingest_records(services, intake, source, [as_record(r) for r in records])
    assert [(r["id"], r["outcome"]) for r in results] == [
        ("salesforce:00Q000000000001AAA", "nurture"),
        ("salesforce:00Q000000000002AAA", "invalid"),
        ("salesforce:00Q000000000003AAA", "nurture"),
    ]
    assert results[1]["errors"][0]["field"] == "email (property Email)"


def test_acceptance_is_written_to_the_lead(app_factory, db, fake_slack, salesforce, tmp_path):
    lead_id = qualifying(salesforce, owner_email="rep1@example.com")
    app = start(app_factory, db, salesforce, tmp_path)
    poll(app)
    handoff = handoff_of(db, f"salesforce:{lead_id}")
    app.slack(block_actions(user_id="U0REP1", action_id=ACCEPT, value=str(handoff.id)))
    wait_until(lambda: outbox_rows(db))
    app.drain()
    [patch] = salesforce.calls_to("update")
    assert patch.path == f"/services/data/v62.0/sobjects/Lead/{lead_id}"
    assert patch.body == {"Handoff_Status__c": "Accepted", "Handoff_Reason__c": None}
    assert patch.status == 204
    assert outbox_rows(db)[0].status == "sent"


def test_a_rejection_writes_status_reason_and_note_to_the_configured_fields(
    app_factory, db, fake_slack, salesforce, tmp_path
):
    sources = SOURCES + (
        "  write_back: {status: Handoff_Status__c, reason: Handoff_Reason__c, "
        "note: Handoff_Note__c}\n"
    )
    lead_id = qualifying(salesforce, owner_email="rep1@example.com")
    app = start(app_factory, db, salesforce, tmp_path, sources)
    poll(app)
    handoff = handoff_of(db, f"salesforce:{lead_id}")
    submit_reject(app, "U0REP1", handoff.id, "too_small", "12 staff")
    wait_until(lambda: status_of(db, handoff.id) == "rejected")
    wait_until(lambda: outbox_rows(db))
    app.drain()
    values = salesforce.leads[lead_id]["values"]
    assert {
        k: values[k] for k in ("Handoff_Status__c", "Handoff_Reason__c", "Handoff_Note__c")
    } == {
        "Handoff_Status__c": "Disqualified",
        "Handoff_Reason__c": "Company too small",
        "Handoff_Note__c": "12 staff",
    }


def test_a_rate_limited_write_back_waits_in_the_outbox_for_retry_after(
    app_factory, db, fake_slack, salesforce, tmp_path
):
    lead_id = qualifying(salesforce, owner_email="rep1@example.com")
    app = start(app_factory, db, salesforce, tmp_path)
    poll(app)
    handoff = handoff_of(db, f"salesforce:{lead_id}")
    salesforce.fail_next("update", status=429, retry_after=30, error_code="REQUEST_LIMIT_EXCEEDED")
    app.slack(block_actions(user_id="U0REP1", action_id=ACCEPT, value=str(handoff.id)))
    wait_until(lambda: outbox_rows(db))
    app.drain()
    [row] = outbox_rows(db)
    assert row.status == "pending" and "429" in row.last_error
    assert row.next_attempt_at - clock.now() >= timedelta(seconds=25)
    assert len(salesforce.calls_to("update")) == 1  # no waiting on the worker


def test_a_write_back_field_salesforce_refuses_gives_up_with_its_name(
    app_factory, db, fake_slack, salesforce, tmp_path
):
    sources = SOURCES + "  write_back: {status: Sales_Verdict__c}\n"
    lead_id = qualifying(salesforce, owner_email="rep1@example.com")
    app = start(app_factory, db, salesforce, tmp_path, sources)
    poll(app)
    handoff = handoff_of(db, f"salesforce:{lead_id}")
    app.slack(block_actions(user_id="U0REP1", action_id=ACCEPT, value=str(handoff.id)))
    wait_until(lambda: outbox_rows(db))
    app.drain()
    [row] = outbox_rows(db)
    assert row.status == "failed"
    assert "INVALID_FIELD: No such column 'Sales_Verdict__c'" in row.last_error


def test_a_lead_from_elsewhere_is_not_written_to_salesforce(
    app_factory, db, fake_slack, salesforce, tmp_path
):
    app = start(app_factory, db, salesforce, tmp_path)
    app.post_leads(lead("crm-1"))
    app.drain()
    with db.session() as session:
        handoff_id = session.scalars(select(Handoff.id)).one()
    app.slack(block_actions(user_id="U0REP1", action_id=ACCEPT, value=str(handoff_id)))
    wait_until(lambda: status_of(db, handoff_id) == "accepted")
    app.drain()
    assert outbox_rows(db) == []  # nothing queued: the lead has no Salesforce record
    assert salesforce.calls_to("update") == [] and salesforce.calls_to("token") == []


def test_the_poll_job_is_scheduled_only_with_the_credentials(
    app_factory, db, fake_slack, salesforce, tmp_path, caplog
):
    app = start(app_factory, db, salesforce, tmp_path)
    assert build_scheduler(app.services).get_job(SALESFORCE_POLL_JOB) is not None
    path = tmp_path / "sources.yml"
    unconnected = app_factory(db, handoff_sources=str(path))
    with caplog.at_level(logging.ERROR):
        assert build_scheduler(unconnected.services).get_job(SALESFORCE_POLL_JOB) is None
    assert "sources.yml polls Salesforce but SALESFORCE_URL" in caplog.text
    assert unconnected.services.salesforce_write_back == {}
