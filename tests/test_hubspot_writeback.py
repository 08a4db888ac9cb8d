"""HubSpot write-back, finished: the status property and values from sources.yml
(`write_back`), the owner moved on a reassignment, and the card's "Open in HubSpot"
link. The real app takes signed Slack actions; the outbox writes to the fake HubSpot
over real HTTP, which checks what HubSpot checks (options, owners, and a lifecycle
stage that only moves forward unless cleared first)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from bot import clock
from bot.blocks.card import ACCEPT, OPEN_CRM, REASSIGN
from bot.blocks.modals import REASSIGN_VIEW
from bot.cli import main
from bot.crm.links import record_url
from bot.crm.sources import SourcesError, parse_sources
from store.models import Handoff, Outbox
from tests.conftest import DATA, lead
from tests.fakehubspot import PORTAL_ID, TOKEN, FakeHubSpot
from tests.slackreq import view_submission
from tests.test_decisions import click, status_of, submit_reject, wait_until

MAPPING = """
hubspot:
  fields: {email: email, company: company}
  attributes: {employees: numemployees, country: country}
"""


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as fake:
        fake.add_property("handoff_rejection_reason")
        fake.add_property("handoff_rejection_note")
        yield fake


def start(app_factory, db, hubspot: FakeHubSpot, tmp_path: Path, extra: str = ""):
    """The app with sources.yml = MAPPING + `extra` (more keys of the hubspot: section)."""
    path = tmp_path / "sources.yml"
    path.write_text(MAPPING + extra)
    return app_factory(
        db, hubspot_token=TOKEN, hubspot_api_url=hubspot.url, handoff_sources=str(path)
    )


def hand_off(app, db, hubspot: FakeHubSpot, *, stage: str = "", by_email: bool = False) -> int:
    """A contact in the fake and its lead handed off to rep1 (card posted); the handoff id.
    The lead's id is hubspot:<record id>, or (`by_email`) one HubSpot matches by email."""
    props = {"email": "ana@acme.example", "company": "Acme"}
    contact = hubspot.add_contact(1, **props, **({"lifecyclestage": stage} if stage else {}))
    lead_id = "crm-1" if by_email else f"hubspot:{contact}"
    assert app.post_leads(lead(lead_id, email="ana@acme.example")).status_code == 202
    app.drain()
    with db.session() as session:
        return session.scalars(select(Handoff.id)).one()


def contact(hubspot: FakeHubSpot) -> dict[str, str]:
    [record] = hubspot.contacts.values()
    return record["properties"]


def writes(hubspot: FakeHubSpot) -> list[dict[str, Any]]:
    """The property sets PATCHed onto contacts, in order."""
    return [call.body["properties"] for call in hubspot.calls_to("update_contact")]


def outbox_row(db, kind: str) -> Outbox:
    with db.session() as session:
        return session.scalars(select(Outbox).where(Outbox.kind == kind)).one()


# -- the status: lifecycle stage ----------------------------------------------------------


LIFECYCLE = "  write_back: {status: lifecyclestage}\n"


def test_an_accept_moves_the_lifecycle_stage_forward(
    app_factory, db, fake_slack, hubspot, tmp_path
):
    app = start(app_factory, db, hubspot, tmp_path, LIFECYCLE)
    handoff_id = hand_off(app, db, hubspot, stage="marketingqualifiedlead")
    click(app, "U0REP1", ACCEPT, handoff_id)
    wait_until(lambda: status_of(db, handoff_id) == "accepted")
    app.drain()
    assert writes(hubspot) == [{"lifecyclestage": "salesqualifiedlead"}]
    assert contact(hubspot)["lifecyclestage"] == "salesqualifiedlead"
    assert outbox_row(db, "hubspot").status == "sent"


def test_a_recycled_lead_goes_back_to_lead_by_clearing_the_stage_first(
    app_factory, db, fake_slack, hubspot, tmp_path
):
    app = start(app_factory, db, hubspot, tmp_path, LIFECYCLE)
    handoff_id = hand_off(app, db, hubspot, stage="salesqualifiedlead")
    submit_reject(app, "U0REP1", handoff_id, "no_budget", "Budget frozen until Q3")
    wait_until(lambda: status_of(db, handoff_id) == "rejected")
    app.drain()
    # HubSpot refuses a backwards move: Handoff clears the stage, then sets it.
    assert writes(hubspot) == [
        {"lifecyclestage": ""},
        {
            "lifecyclestage": "lead",
            "handoff_rejection_reason": "No budget",
            "handoff_rejection_note": "Budget frozen until Q3",
        },
    ]
    assert contact(hubspot)["lifecyclestage"] == "lead"
    assert outbox_row(db, "hubspot").status == "sent"


def test_a_customer_keeps_its_stage_and_still_gets_the_reason(
    app_factory, db, fake_slack, hubspot, tmp_path
):
    app = start(app_factory, db, hubspot, tmp_path, LIFECYCLE)
    handoff_id = hand_off(app, db, hubspot, stage="customer")
    submit_reject(app, "U0REP1", handoff_id, "too_small", "12 staff")
    wait_until(lambda: status_of(db, handoff_id) == "rejected")
    app.drain()
    assert writes(hubspot) == [
        {"handoff_rejection_reason": "Company too small", "handoff_rejection_note": "12 staff"}
    ]
    assert contact(hubspot)["lifecyclestage"] == "customer"


# -- the status: lead status, values configured -------------------------------------------


def test_lead_status_values_come_from_sources_yml(app_factory, db, fake_slack, hubspot, tmp_path):
    extra = "  write_back:\n    status: hs_lead_status\n    values: {accepted: CONNECTED}\n"
    app = start(app_factory, db, hubspot, tmp_path, extra)
    handoff_id = hand_off(app, db, hubspot, by_email=True)
    click(app, "U0REP1", ACCEPT, handoff_id)
    wait_until(lambda: status_of(db, handoff_id) == "accepted")
    app.drain()
    [call] = hubspot.calls_to("update_contact")
    assert call.path == "/crm/v3/objects/contacts/ana%40acme.example"  # matched by email
    assert call.query == {"idProperty": "email"}
    assert contact(hubspot)["hs_lead_status"] == "CONNECTED"


def test_without_write_back_the_default_is_unchanged(
    app_factory, db, fake_slack, hubspot, tmp_path
):
    app = start(app_factory, db, hubspot, tmp_path)
    handoff_id = hand_off(app, db, hubspot, stage="marketingqualifiedlead")
    submit_reject(app, "U0REP1", handoff_id, "too_small", "12 staff")
    wait_until(lambda: status_of(db, handoff_id) == "rejected")
    app.drain()
    assert writes(hubspot) == [
        {
            "hs_lead_status": "UNQUALIFIED",
            "handoff_rejection_reason": "Company too small",
            "handoff_rejection_note": "12 staff",
        }
    ]
    assert contact(hubspot)["lifecyclestage"] == "marketingqualifiedlead"


# -- the owner on reassignment -------------------------------------------------------------


def reassign_to_rep2(app, db, fake_slack, handoff_id: int) -> None:
    """The manager reassigns through the card's button and the modal, signed."""
    click(app, "U0MGR", REASSIGN, handoff_id, trigger_id="trig-1")
    fake_slack.wait_for("views.open")
    response = app.slack(
        view_submission(
            user_id="U0MGR",
            callback_id=REASSIGN_VIEW,
            private_metadata=str(handoff_id),
            values={"assignee": {"assignee": {"type": "users_select", "selected_user": "U0REP2"}}},
        )
    )
    assert response.status_code == 200
    wait_until(lambda: status_of(db, handoff_id) == "reassigned")


def test_a_reassignment_makes_the_new_rep_the_hubspot_owner(
    app_factory, db, fake_slack, hubspot, tmp_path
):
    hubspot.add_owner("61", "rep1@example.com")
    hubspot.add_owner("77", "Rep2@Example.com")  # HubSpot keeps the case it was given
    app = start(app_factory, db, hubspot, tmp_path, "  write_back: {owner: true}\n")
    handoff_id = hand_off(app, db, hubspot)
    reassign_to_rep2(app, db, fake_slack, handoff_id)
    app.drain()
    assert writes(hubspot) == [{"hubspot_owner_id": "77"}]
    assert contact(hubspot)["hubspot_owner_id"] == "77"
    row = outbox_row(db, "hubspot_owner")
    assert row.status == "sent"
    with db.session() as session:
        assert session.get(Handoff, row.handoff_id).owner_email == "rep2@example.com"


def test_without_owner_true_a_reassignment_writes_nothing(
    app_factory, db, fake_slack, hubspot, tmp_path
):
    hubspot.add_owner("77", "rep2@example.com")
    app = start(app_factory, db, hubspot, tmp_path)
    handoff_id = hand_off(app, db, hubspot)
    reassign_to_rep2(app, db, fake_slack, handoff_id)
    app.drain()
    assert writes(hubspot) == []
    with db.session() as session:
        assert not session.scalars(select(Outbox).where(Outbox.kind == "hubspot_owner")).all()


def test_a_rep_who_is_not_a_hubspot_owner_fails_visibly_once(
    app_factory, db, fake_slack, hubspot, tmp_path, caplog
):
    hubspot.add_owner("61", "rep1@example.com")  # rep2 has no HubSpot seat
    app = start(app_factory, db, hubspot, tmp_path, "  write_back: {owner: true}\n")
    handoff_id = hand_off(app, db, hubspot)
    reassign_to_rep2(app, db, fake_slack, handoff_id)
    with caplog.at_level(logging.WARNING):
        app.drain()
    row = outbox_row(db, "hubspot_owner")
    assert row.status == "failed"
    assert "rep2@example.com is not a HubSpot owner" in row.last_error
    assert any(
        "HubSpot owner not written back" in r.getMessage() and "rep2@example.com" in r.getMessage()
        for r in caplog.records
    )
    # No retry loop: an hour later nothing more is tried.
    calls = len(hubspot.calls)
    with freeze_time(clock.now() + timedelta(hours=1)):
        app.drain()
    assert len(hubspot.calls) == calls
    assert writes(hubspot) == []
    assert outbox_row(db, "hubspot_owner").status == "failed"
    # The reassignment itself stands: rep2 has the lead and its card.
    assert [c.args["channel"] for c in fake_slack.calls_to("chat.postMessage")] == [
        "U0REP1",
        "U0REP2",
    ]


# -- the link on the card ------------------------------------------------------------------


def crm_buttons(blocks: Any) -> list[dict[str, Any]]:
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return [
        element
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == OPEN_CRM
    ]


def test_the_card_opens_the_record_in_hubspot(app_factory, db, fake_slack, hubspot, tmp_path):
    app = start(app_factory, db, hubspot, tmp_path, f"  portal_id: {PORTAL_ID}\n")
    handoff_id = hand_off(app, db, hubspot)
    [record_id] = hubspot.contacts
    [card] = fake_slack.calls_to("chat.postMessage")
    [button] = crm_buttons(card.args["blocks"])
    assert button["text"]["text"] == "Open in HubSpot"
    assert button["url"] == f"https://app.hubspot.com/contacts/{PORTAL_ID}/record/0-1/{record_id}"
    # Slack posts the click too: acked, nothing else happens.
    click(app, "U0REP1", OPEN_CRM, handoff_id)
    click(app, "U0REP1", ACCEPT, handoff_id)
    wait_until(lambda: status_of(db, handoff_id) == "accepted")
    app.drain()
    [update] = fake_slack.calls_to("chat.update")
    assert [b["url"] for b in crm_buttons(update.args["blocks"])] == [button["url"]]


def test_a_lead_not_from_hubspot_or_without_portal_id_has_no_link(
    app_factory, db, fake_slack, hubspot, tmp_path
):
    app = start(app_factory, db, hubspot, tmp_path, f"  portal_id: {PORTAL_ID}\n")
    hand_off(app, db, hubspot, by_email=True)  # crm-1: not a HubSpot record id
    [card] = fake_slack.calls_to("chat.postMessage")
    assert crm_buttons(card.args["blocks"]) == []
    sources = parse_sources(yaml_of(MAPPING))
    assert record_url("hubspot:1001", sources) is None  # no portal_id: no link


def test_an_injected_record_id_stays_one_path_segment(
    app_factory, db, fake_slack, hubspot, tmp_path
):
    app = start(app_factory, db, hubspot, tmp_path, f"  portal_id: {PORTAL_ID}\n")
    record_id = "1/../../evil.test/x?next=https://evil.test#<!channel>|Click"
    response = app.post_leads(lead(f"hubspot:{record_id}", email="ana@acme.example"))
    assert response.status_code == 202
    app.drain()
    [card] = fake_slack.calls_to("chat.postMessage")
    [button] = crm_buttons(card.args["blocks"])
    url = urlsplit(button["url"])
    assert (url.scheme, url.netloc, url.query, url.fragment) == ("https", "app.hubspot.com", "", "")
    prefix = f"/contacts/{PORTAL_ID}/record/0-1/"
    assert url.path.startswith(prefix)
    segment = url.path.removeprefix(prefix)
    assert "/" not in segment and unquote(segment) == record_id


def test_eu_portals_link_to_their_app_host() -> None:
    extra = f"  portal_id: '{PORTAL_ID}'\n  app_url: https://app-eu1.hubspot.com/\n"
    sources = parse_sources(yaml_of(MAPPING + extra))
    assert record_url("hubspot:55", sources) == (
        f"https://app-eu1.hubspot.com/contacts/{PORTAL_ID}/record/0-1/55"
    )
    assert record_url("salesforce:00Q1", sources) is None
    assert record_url("hubspot:", sources) is None


def test_handoff_lead_prints_the_link(app_factory, db, fake_slack, hubspot, tmp_path, monkeypatch):
    app = start(app_factory, db, hubspot, tmp_path, f"  portal_id: {PORTAL_ID}\n")
    hand_off(app, db, hubspot)
    [record_id] = hubspot.contacts
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    monkeypatch.setenv("HANDOFF_SOURCES", str(tmp_path / "sources.yml"))
    result = CliRunner().invoke(main, ["lead", f"hubspot:{record_id}"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    url = f"https://app.hubspot.com/contacts/{PORTAL_ID}/record/0-1/{record_id}"
    assert f"Open in HubSpot: {url}" in result.stdout


# -- sources.yml: the keys, validated with their paths --------------------------------------


def yaml_of(text: str) -> Any:
    return yaml.safe_load(text)


def test_write_back_keys_are_checked_with_their_paths() -> None:
    extra = (
        "  portal_id: acme\n"
        "  app_url: http://app.hubspot.com\n"
        "  write_back:\n"
        "    status: lifecycle stage\n"
        "    values: {accepted: 12, recyle: lead, disqualify: ''}\n"
        "    owner: yes please\n"
        "    onwer: true\n"
    )
    with pytest.raises(SourcesError) as caught:
        parse_sources(yaml_of(MAPPING + extra))
    problems = caught.value.problems
    assert problems == [
        "hubspot.portal_id: expected the portal's Hub ID (a number like 12345678), got 'acme'",
        "hubspot.app_url: expected an https URL like https://app-eu1.hubspot.com, "
        "got 'http://app.hubspot.com'",
        "hubspot.write_back.onwer: unknown key; did you mean 'owner'?",
        "hubspot.write_back.status: expected a property name (hs_lead_status, lifecyclestage "
        "or a custom property's internal name), got 'lifecycle stage'",
        "hubspot.write_back.values.recyle: unknown key; did you mean 'recycle'?",
        "hubspot.write_back.values.accepted: expected the property's internal value (text), "
        "or null to leave it, got 12",
        "hubspot.write_back.values.disqualify: expected the property's internal value (text), "
        "or null to leave it, got ''",
        "hubspot.write_back.owner: expected true or false, got 'yes please'",
    ]


def test_hubspot_keys_belong_to_hubspot_only() -> None:
    text = "salesforce:\n  fields: {email: Email}\n  portal_id: 1\n  write_back: {owner: true}\n"
    with pytest.raises(SourcesError) as caught:
        parse_sources(yaml_of(text))
    problems = caught.value.problems
    assert any(p.startswith("salesforce.portal_id: unknown key") for p in problems), problems
    assert any(p.startswith("salesforce.write_back.owner: unknown key") for p in problems)


def test_a_value_set_to_null_leaves_the_status_alone() -> None:
    text = MAPPING + "  write_back: {status: lifecyclestage, values: {disqualify: null}}\n"
    write_back = parse_sources(yaml_of(text)).hubspot.hubspot.write_back
    assert write_back.value("lifecyclestage", "disqualify") is None
    assert write_back.value("lifecyclestage", "recycle") == "lead"  # the default remains
    assert write_back.value("custom_status", "accepted") == "accepted"


# -- handoff hubspot check -----------------------------------------------------------------


def check(hubspot: FakeHubSpot, tmp_path: Path, monkeypatch, extra: str):
    path = tmp_path / "sources.yml"
    path.write_text(MAPPING + extra)
    monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
    monkeypatch.setenv("HUBSPOT_API_URL", hubspot.url)
    monkeypatch.setenv("HANDOFF_SOURCES", str(path))
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    return CliRunner().invoke(main, ["hubspot", "check"], catch_exceptions=False)


def test_check_covers_values_owner_property_and_portal(hubspot, tmp_path, monkeypatch) -> None:
    extra = (
        f"  portal_id: {PORTAL_ID}\n"
        "  write_back:\n"
        "    status: lifecyclestage\n"
        "    values: {recycle: nurture}\n"
        "    owner: true\n"
    )
    result = check(hubspot, tmp_path, monkeypatch, extra)
    assert result.exit_code == 2, result.output
    out = result.stdout
    assert "ok          property lifecyclestage: written back (write_back.status)" in out
    assert "ok          property hubspot_owner_id: written back (write_back.owner)" in out
    assert "ok          value lifecyclestage=salesqualifiedlead: written on accepted" in out
    assert "invalid     value lifecyclestage=nurture: written on recycle" in out
    assert "not one of the property's options: subscriber, lead," in out
    assert f"ok          portal_id: {PORTAL_ID}" in out
    assert "1 problem(s) with HubSpot" in result.stderr


def test_check_names_the_portal_to_add_or_the_wrong_one(hubspot, tmp_path, monkeypatch) -> None:
    result = check(hubspot, tmp_path, monkeypatch, "")
    assert result.exit_code == 0, result.output
    assert f"add `portal_id: {PORTAL_ID}` under hubspot:" in result.stdout
    result = check(hubspot, tmp_path, monkeypatch, "  portal_id: 999\n")
    assert result.exit_code == 2
    assert f"sources.yml says 999 but the token belongs to portal {PORTAL_ID}" in result.stdout


def test_the_examples_commented_write_back_keys_validate() -> None:
    text = (DATA.parent.parent / "sources.example.yml").read_text()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # portal_id:"))
    uncommented = [line.replace("  # ", "  ", 1) for line in lines[start:]]
    hub = parse_sources(yaml_of("\n".join([*lines[:start], *uncommented]))).hubspot
    assert hub.hubspot.portal_id == "12345678"
    assert hub.hubspot.write_back.status == "lifecyclestage"
    assert hub.hubspot.write_back.owner is True
