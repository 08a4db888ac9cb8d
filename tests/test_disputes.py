"""Disputes through the wire: marketing disputes a rejection (the digest's button and
modal, or `/handoff dispute`); the rep's manager gets the lead, the rejection and the note
with Reopen / Uphold; only that manager may act, once; Reopen sends the lead back to the
rep with a fresh clock; the outcome goes to marketing and into the digest."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot import decisions, digest
from bot.blocks.disputes import DISPUTE, DISPUTE_VIEW, REOPEN, UPHOLD
from bot.digest import window_for
from store.models import Dispute, Handoff, Lead
from tests.slackreq import view_submission
from tests.test_decisions import click, wait_until
from tests.test_home import command
from tests.test_sla import MONDAY_10, hand_off

MARKETING = "U0MKT"
HOUR = timedelta(hours=1)


@pytest.fixture
def rejected(app, db, fake_slack) -> Handoff:
    """crm-1 handed off to rep1 on Monday 10:00 and rejected at 11:00 (bad timing)."""
    fake_slack.add_user(MARKETING, "mkt-lead@example.com")
    handoff = hand_off(app, db)
    decisions.reject(
        app.services,
        handoff.id,
        "U0REP1",
        reason_id="bad_timing",
        note="Budget frozen until Q2",
        now=MONDAY_10 + HOUR,
    )
    app.drain()
    return handoff


def handoffs(db) -> list[Handoff]:
    with db.session() as session:
        return list(session.scalars(select(Handoff).order_by(Handoff.id)))


def disputes(db) -> list[Dispute]:
    with db.session() as session:
        return list(session.scalars(select(Dispute)))


def dms(fake_slack, user_id: str) -> list:
    return [c for c in fake_slack.successful("chat.postMessage") if c.args["channel"] == user_id]


def blocks_of(call) -> str:
    blocks = call.args["blocks"]
    return blocks if isinstance(blocks, str) else json.dumps(blocks, ensure_ascii=False)


def submit_dispute(app, user_id: str, handoff_id: int, note: str | None):
    return app.slack(
        view_submission(
            user_id=user_id,
            callback_id=DISPUTE_VIEW,
            private_metadata=str(handoff_id),
            values={"dispute_note": {"dispute_note": {"type": "plain_text_input", "value": note}}},
        )
    )


def dispute_from_the_modal(app, db, fake_slack, handoff: Handoff, note: str) -> Dispute:
    with freeze_time(MONDAY_10 + 2 * HOUR, tick=True):
        assert submit_dispute(app, MARKETING, handoff.id, note).text == ""
        wait_until(lambda: len(disputes(db)) == 1)
        app.drain()
    return disputes(db)[0]


def decide(app, user_id: str, action: str, dispute: Dispute, at: datetime, until=None) -> None:
    """Click Reopen or Uphold at `at`; the decision is made after the ack, on a listener
    thread: `until` waits (with the clock still at `at`) for what it should do."""
    with freeze_time(at, tick=True):
        click(app, user_id, action, dispute.id, channel=f"D{user_id}")
        if until is not None:
            wait_until(until)


def test_the_digest_offers_a_dispute_button_on_each_rejection_example(
    app, db, fake_slack, rejected
):
    week = window_for(
        app.services.definition, datetime(2026, 11, 30, 9, 0, tzinfo=MONDAY_10.tzinfo)
    )
    with freeze_time(MONDAY_10 + timedelta(days=7)):
        assert digest.post_week(app.services, week, now=MONDAY_10 + timedelta(days=7))
        app.drain()
    [posted] = [
        c for c in fake_slack.successful("chat.postMessage") if c.args["channel"] == "#marketing"
    ]
    blocks = json.loads(blocks_of(posted))
    [example] = [b for b in blocks if b.get("accessory", {}).get("action_id") == DISPUTE]
    assert example["text"]["text"] == "e.g. Acme · webinar · Q4 pricing webinar — Bad timing"
    assert example["accessory"]["value"] == str(rejected.id)
    assert "e.g. Acme" not in json.dumps([b for b in blocks if b is not example])

    click(app, MARKETING, DISPUTE, rejected.id, trigger_id="trig-1", channel="C0MARKETING")
    [opened] = fake_slack.wait_for("views.open")
    view = opened.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == DISPUTE_VIEW and view["private_metadata"] == str(rejected.id)


def test_dispute_then_reopen_sends_the_lead_back_to_the_rep(app, db, fake_slack, rejected):
    dispute = dispute_from_the_modal(app, db, fake_slack, rejected, "They booked a demo again")
    [ask] = dms(fake_slack, "U0MGR")
    text = blocks_of(ask)
    assert "Bad timing" in text and "Budget frozen until Q2" in text
    assert "They booked a demo again" in text and "<@U0MKT>" in text
    assert REOPEN in text and UPHOLD in text

    reopened = MONDAY_10 + 2.5 * HOUR
    decide(app, "U0MGR", REOPEN, dispute, reopened, until=lambda: len(handoffs(db)) == 2)
    decide(app, "U0MGR", REOPEN, dispute, reopened)  # a double click: nothing more
    with freeze_time(reopened + timedelta(minutes=1)):
        app.drain()
    old, new = handoffs(db)
    assert (new.status, new.owner_email, new.previous_id) == ("open", "rep1@example.com", old.id)
    assert timedelta(0) <= new.assigned_at - reopened < timedelta(seconds=30)
    assert new.due_at - new.assigned_at == 4 * HOUR  # a fresh clock, due at 16:30
    with db.session() as session:
        assert session.scalars(select(Lead)).one().status == "handed_off"
    card = dms(fake_slack, "U0REP1")[-1]
    assert "reopened by mgr@example.com after marketing disputed the rejection" in blocks_of(card)
    [outcome] = dms(fake_slack, MARKETING)
    assert "*Reopened* by <@U0MGR>: the lead is back with <@U0REP1>" in outcome.args["text"]
    [updated] = fake_slack.successful("chat.update")[-1:]
    assert (updated.args["channel"], updated.args["ts"]) == (
        disputes(db)[0].channel,
        disputes(db)[0].ts,
    )
    assert "Reopened" in blocks_of(updated) and REOPEN not in blocks_of(updated)
    assert len(handoffs(db)) == 2 and len(dms(fake_slack, MARKETING)) == 1

    next_week = window_for(app.services.definition, MONDAY_10 + timedelta(days=7))
    summary = digest.digest_sections(digest.build_digest(db, app.services.definition, next_week))[0]
    assert "Disputed: 1, reopened: 1, upheld: 0" in summary[1]


def test_uphold_closes_the_dispute(app, db, fake_slack, rejected):
    dispute = dispute_from_the_modal(app, db, fake_slack, rejected, "Worth a second look")
    upheld = MONDAY_10 + 3 * HOUR
    decide(app, "U0MGR", UPHOLD, dispute, upheld, until=lambda: disputes(db)[0].status == "upheld")
    app.drain()
    [outcome] = dms(fake_slack, MARKETING)
    assert "*Upheld* by <@U0MGR>: the rejection stands." in outcome.args["text"]
    assert len(handoffs(db)) == 1
    decide(app, "U0MGR", REOPEN, dispute, MONDAY_10 + 4 * HOUR)  # too late to change
    [told] = fake_slack.wait_for("chat.postEphemeral")
    assert told.args["text"] == "This dispute was already upheld by <@U0MGR>."
    assert len(handoffs(db)) == 1


def test_only_the_manager_may_decide_and_only_marketing_may_dispute(app, db, fake_slack, rejected):
    click(app, "U0REP1", DISPUTE, rejected.id, trigger_id="trig-1")
    [refused] = fake_slack.wait_for("chat.postEphemeral")
    assert refused.args["text"] == (
        "Only the definition's marketing owner (<@U0MKT>) can dispute a rejection."
    )
    assert (
        submit_dispute(app, "U0STRANGER", rejected.id, "no").json()["response_action"] == "errors"
    )
    dispute = dispute_from_the_modal(app, db, fake_slack, rejected, "Please look again")
    decide(app, "U0STRANGER", REOPEN, dispute, MONDAY_10 + 3 * HOUR)
    decide(app, "U0REP1", REOPEN, dispute, MONDAY_10 + 3 * HOUR)
    told = fake_slack.wait_for("chat.postEphemeral", count=3)[1:]
    assert {t.args["text"] for t in told} == {"Only <@U0MGR> can decide on this dispute."}
    assert disputes(db)[0].status == "open" and len(handoffs(db)) == 1


def test_the_slash_command_disputes_once(app, db, fake_slack, rejected):
    with freeze_time(MONDAY_10 + 2 * HOUR, tick=True):
        answer = command(app, MARKETING, "dispute crm-1 The CFO asked for pricing yesterday")
        assert answer.startswith("Dispute sent to the rep's manager.")
        wait_until(lambda: len(disputes(db)) == 1)
        app.drain()
        assert command(app, MARKETING, "dispute crm-1 again") == (
            "This rejection was already disputed (open)."
        )
        assert command(app, "U0REP1", "dispute crm-1 mine") == (
            "Only the definition's marketing owner (<@U0MKT>) can dispute a rejection."
        )
        assert (
            command(app, MARKETING, "dispute nope note")
            == "Lead `nope` has no rejection to dispute."
        )
        assert command(app, MARKETING, "dispute crm-1").startswith("Usage: `/handoff dispute")
    [dispute] = disputes(db)
    assert dispute.note == "The CFO asked for pricing yesterday"
    assert "The CFO asked for pricing yesterday" in blocks_of(dms(fake_slack, "U0MGR")[0])
