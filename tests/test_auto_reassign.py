"""Auto-reassign after a breach (`handoff.sla.reassign_at`) through the running app: the
lead moves to the next rep of its pool with a fresh clock, skipping everyone who had
it, also after a restart and with two instances sweeping at once; the old card and
the manager are told; when nobody is left the manager is asked to decide."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time
from sqlalchemy import select

from bot import decisions, reminders
from bot.blocks.card import REASSIGN
from bot.definition import DefinitionError
from store.models import Audit, Handoff
from tests.conftest import lead, run_together
from tests.test_routing_depth import definition_with, dms_to

SYDNEY = ZoneInfo("Australia/Sydney")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SYDNEY)  # 4h: due 14:00, 150% at 16:00
POOL = ["rep1@example.com", "rep2@example.com", "rep3@example.com"]


@pytest.fixture
def defn():
    managers = {rep: "mgr@example.com" for rep in (*POOL[:2], "nz-rep@example.com", POOL[2])}
    return definition_with([{"round_robin": POOL}], managers=managers, reassign_at="150%")


@pytest.fixture
def with_rep3(fake_slack):
    fake_slack.add_user("U0REP3", "rep3@example.com")


def chain(db, lead_id: int) -> list[tuple[str, str]]:
    with db.session() as session:
        rows = session.scalars(
            select(Handoff).where(Handoff.lead_id == lead_id).order_by(Handoff.id)
        ).all()
    return [(h.owner_email, h.status) for h in rows]


def tick(app, at: datetime) -> None:
    with freeze_time(at):
        reminders.sweep(app.services)
        app.drain()


def test_a_breached_lead_moves_on_skipping_earlier_owners_across_a_restart(
    app_factory, db, fake_slack, defn, with_rep3
):
    first = app_factory(db, defn=defn)
    with freeze_time(MONDAY_10):
        first.post_leads(lead("crm-1"))
        first.drain()
    tick(first, datetime(2026, 11, 23, 15, 59, tzinfo=SYDNEY))
    assert chain(db, 1) == [("rep1@example.com", "open")]
    tick(first, datetime(2026, 11, 23, 16, 0, tzinfo=SYDNEY))
    assert chain(db, 1) == [("rep1@example.com", "reassigned"), ("rep2@example.com", "open")]
    [moved] = [c for c in dms_to(fake_slack, "U0MGR") if "moved to" in c.args["text"]]
    assert moved.args["text"] == (
        "↪️ *Acme* had no decision from <@U0REP1> by 150% of its response time: it moved "
        "to <@U0REP2> with a fresh clock."
    )
    # The old card's last update (the ones before are its clock at the reminders).
    update = fake_slack.successful("chat.update")[-1]
    assert "Reassigned* to <@U0REP2> by Handoff (no decision in time)" in json.dumps(
        update.args["blocks"]
    )
    assert len(dms_to(fake_slack, "U0REP2")) == 1  # its card

    # Another lead takes rep3's turn, so the rotation now points at rep1 again.
    with freeze_time(datetime(2026, 11, 23, 16, 30, tzinfo=SYDNEY)):
        [second] = first.post_leads(lead("crm-2")).json()["results"]
        assert second["owner"] == "rep3@example.com"
        first.drain()
        decisions.accept(first.services, _open_id(db, 2), "U0REP3")
    first.server.stop()

    # A restart: new instances on the same database (two, sweeping at once).
    again, other = app_factory(db, defn=defn), app_factory(db, defn=defn)
    with freeze_time(datetime(2026, 11, 24, 14, 0, tzinfo=SYDNEY)):  # 6 business hours on
        run_together(
            lambda: reminders.sweep(again.services), lambda: reminders.sweep(other.services)
        )
        again.drain()
    # rep1 is next in the rotation but had it: rep3 gets it, exactly once.
    assert chain(db, 1) == [
        ("rep1@example.com", "reassigned"),
        ("rep2@example.com", "reassigned"),
        ("rep3@example.com", "open"),
    ]
    third = _open_id(db, 1)
    with db.session() as session:
        new = session.get(Handoff, third)
    assert new.routed_by == (
        "no decision from rep2@example.com in time; next in the rotation of 3 reps"
    )
    assert new.due_at == datetime(2026, 11, 25, 10, 0, tzinfo=SYDNEY)  # a fresh clock

    # Nobody left who has not had it: the manager is asked, the lead stays put.
    tick(again, datetime(2026, 11, 25, 12, 0, tzinfo=SYDNEY))
    assert chain(db, 1)[-1] == ("rep3@example.com", "open")
    [asked] = [c for c in dms_to(fake_slack, "U0MGR") if "nobody else" in c.args["text"]]
    assert asked.args["text"].startswith(
        "🚨 *Acme* has had no decision from <@U0REP3> by 150% of its response time, and "
        "nobody else in its pool is left to take it"
    )
    buttons = [e for b in asked.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (buttons[0]["action_id"], buttons[0]["value"]) == (REASSIGN, str(third))
    with db.session() as session:
        actions = session.scalars(select(Audit.action).where(Audit.lead_id == 1)).all()
    assert actions.count("reassigned") == 2 and actions.count("reassign_stuck") == 1


def test_an_explicit_owner_moves_within_the_managers_team(app_factory, db, fake_slack, defn):
    app = app_factory(db, defn=defn)
    with freeze_time(MONDAY_10):
        app.post_leads(lead("crm-1", owner="rep2@example.com"))
        app.drain()
    tick(app, datetime(2026, 11, 23, 16, 0, tzinfo=SYDNEY))
    # mgr's team in the definition's order: rep1, rep2, nz-rep, rep3; next after rep2.
    assert chain(db, 1)[-1] == ("nz-rep@example.com", "open")
    with db.session() as session:
        routed_by = session.get(Handoff, _open_id(db, 1)).routed_by
    assert routed_by == "no decision from rep2@example.com in time; next on mgr@example.com's team"


def test_a_decision_before_the_breach_keeps_the_lead(app_factory, db, fake_slack, defn):
    app = app_factory(db, defn=defn)
    with freeze_time(MONDAY_10):
        app.post_leads(lead("crm-1"))
        app.drain()
        decisions.accept(app.services, _open_id(db, 1), "U0REP1")
    tick(app, datetime(2026, 11, 23, 16, 0, tzinfo=SYDNEY))
    assert chain(db, 1) == [("rep1@example.com", "accepted")]


@pytest.mark.parametrize("value", ["150", "-50%", "soon", True])
def test_reassign_at_is_validated_like_escalate_at(value):
    with pytest.raises(DefinitionError) as caught:
        definition_with([{"round_robin": POOL}], reassign_at=value)
    assert any(
        p.startswith("handoff.sla.reassign_at: expected a percentage like")
        for p in (caught.value.problems)
    ), caught.value.problems


def _open_id(db, lead_id: int) -> int:
    with db.session() as session:
        return session.scalars(
            select(Handoff.id).where(Handoff.lead_id == lead_id, Handoff.status == "open")
        ).one()
