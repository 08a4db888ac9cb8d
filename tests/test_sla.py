"""The response clock through the running app: reminders at 50%, escalation at 100%,
nothing after a decision, a fresh clock on reassignment, and restarts and several
processes sharing one database sending each message exactly once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from freezegun import freeze_time
from sqlalchemy import select

from bot import decisions, reminders
from bot.definition import load_definition
from bot.scheduler import SLA_SWEEP_JOB, build_scheduler
from store.models import Handoff, SlaTimer
from tests.conftest import DATA, lead, run_together

SYDNEY = ZoneInfo("Australia/Sydney")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SYDNEY)  # due Monday 14:00 (4h)


def hand_off(app, db) -> Handoff:
    with freeze_time(MONDAY_10):
        app.post_leads(lead("crm-1"))
        app.drain()
    with db.session() as session:
        return session.scalars(select(Handoff)).one()


def tick(app, at: datetime) -> int:
    """One scheduler tick at `at`, then whatever it queued is sent."""
    with freeze_time(at):
        fired = reminders.sweep(app.services)
        app.drain()
    return fired


def dms(fake_slack, user_id: str) -> list[str]:
    return [
        c.args["text"]
        for c in fake_slack.successful("chat.postMessage")
        if c.args["channel"] == user_id
    ]


def test_deadline_is_in_business_hours(app, db):
    handoff = hand_off(app, db)
    assert handoff.due_at == datetime(2026, 11, 23, 14, 0, tzinfo=SYDNEY)
    with db.session() as session:
        timers = session.scalars(select(SlaTimer).order_by(SlaTimer.due_at)).all()
    assert [(t.kind, t.fraction, t.due_at.astimezone(SYDNEY).hour) for t in timers] == [
        ("remind", 0.5, 12),
        ("remind", 1.0, 14),
        ("escalate", 1.0, 14),
    ]


def test_reminder_at_half_and_escalation_at_the_deadline(app, db, fake_slack):
    hand_off(app, db)
    assert tick(app, MONDAY_10 + timedelta(hours=1, minutes=59)) == 0
    assert tick(app, MONDAY_10 + timedelta(hours=2)) == 1
    card, nudge = dms(fake_slack, "U0REP1")
    assert "Acme" in card
    assert nudge == (
        "⏰ <https://test.slack.com/archives/DU0REP1/p1700000001000100|Acme> is "
        "waiting for your decision: 2h 00m of business time left "
        "(due Mon 23 Nov, 14:00 AEDT)."
    )
    assert tick(app, MONDAY_10 + timedelta(hours=4, seconds=20)) == 2
    assert "less than a minute of business time late" in dms(fake_slack, "U0REP1")[2]
    [escalation] = [
        c for c in fake_slack.successful("chat.postMessage") if c.args["channel"] == "U0MGR"
    ]
    assert escalation.args["text"] == (
        "No decision on Acme from <@U0REP1>: less than a minute of business time late "
        "(was due Mon 23 Nov, 14:00 AEDT)."
    )
    buttons = json.dumps(escalation.args["blocks"])
    assert "handoff_reassign" in buttons and "Open the card" in buttons
    assert "Sent late" not in buttons
    assert tick(app, MONDAY_10 + timedelta(hours=6)) == 0  # each exactly once
    assert len(fake_slack.successful("chat.postMessage")) == 4


def test_nothing_after_a_decision(app, db, fake_slack):
    handoff = hand_off(app, db)
    with freeze_time(MONDAY_10 + timedelta(hours=1)):
        decisions.accept(app.services, handoff.id, "U0REP1")
    assert tick(app, MONDAY_10 + timedelta(days=2)) == 0
    assert dms(fake_slack, "U0MGR") == [] and len(dms(fake_slack, "U0REP1")) == 1
    with db.session() as session:
        decided = session.get(Handoff, handoff.id)
    assert (decided.business_seconds, decided.wall_seconds, decided.breached) == (3600, 3600, False)


def test_a_decision_after_the_timer_fired_but_before_sending_sends_nothing(app, db, fake_slack):
    handoff = hand_off(app, db)
    with freeze_time(MONDAY_10 + timedelta(hours=2)):
        assert reminders.sweep(app.services) == 1
        decisions.accept(app.services, handoff.id, "U0REP1")
        app.drain()
    assert len(dms(fake_slack, "U0REP1")) == 1  # only the card


def test_reassignment_restarts_the_clock_for_the_new_owner(app, db, fake_slack):
    handoff = hand_off(app, db)
    app.services.directory.by_user_id("U0MGR")
    with freeze_time(MONDAY_10 + timedelta(hours=1)):
        successor = decisions.reassign(app.services, handoff.id, "U0MGR", to_user_id="U0REP2")
        app.drain()
    assert successor.due_at == datetime(2026, 11, 23, 15, 0, tzinfo=SYDNEY)
    assert tick(app, MONDAY_10 + timedelta(hours=2)) == 0  # the old 50% is cancelled
    assert tick(app, MONDAY_10 + timedelta(hours=3)) == 1
    assert len(dms(fake_slack, "U0REP1")) == 1  # only the old card
    card, nudge = dms(fake_slack, "U0REP2")
    assert "2h 00m of business time left (due Mon 23 Nov, 15:00 AEDT)" in nudge


def test_breach_reported_after_a_late_decision(app, db):
    handoff = hand_off(app, db)
    with freeze_time(datetime(2026, 11, 24, 10, 30, tzinfo=SYDNEY)):  # Tue 10:30
        decisions.accept(app.services, handoff.id, "U0REP1")
    with db.session() as session:
        decided = session.get(Handoff, handoff.id)
    # Mon 10-17 (7h) + Tue 9-10:30 (1.5h); due Mon 14:00 -> 4.5 business hours late
    assert decided.business_seconds == 8.5 * 3600 and decided.breached
    assert decided.late_seconds == 4.5 * 3600 and decided.wall_seconds == 24.5 * 3600


def test_restart_past_the_deadline_sends_one_late_escalation(app_factory, db, fake_slack):
    first = app_factory(db)
    hand_off(first, db)
    first.server.stop()  # down over the deadline
    later = MONDAY_10 + timedelta(days=1)
    second, third = app_factory(db), app_factory(db)  # two processes, one database
    with freeze_time(later):
        run_together(*[lambda app=app: reminders.sweep(app.services) for app in (second, third)])
        second.drain()
        third.drain()
    with freeze_time(later + timedelta(seconds=2)):  # the rep's second DM, paced a second later
        second.drain()
    [escalation] = dms(fake_slack, "U0MGR")
    assert "late" in escalation
    manager_posts = [
        c for c in fake_slack.successful("chat.postMessage") if c.args["channel"] == "U0MGR"
    ]
    assert "Sent late" in json.dumps(manager_posts[0].args["blocks"])
    assert len(dms(fake_slack, "U0REP1")) == 3  # card + two reminders, once each
    assert tick(second, later + timedelta(minutes=1)) == 0


def test_escalation_channel_gets_a_post_too(app_factory, db, fake_slack, tmp_path):
    text = (
        (DATA / "definition.yml")
        .read_text()
        .replace(
            'escalate_at: "100%"', 'escalate_at: "100%"\n    escalation_channel: "#sales-leads"'
        )
    )
    path = tmp_path / "definition.yml"
    path.write_text(text)
    app = app_factory(db, defn=load_definition(path))
    hand_off(app, db)
    tick(app, MONDAY_10 + timedelta(hours=4))
    [post] = [
        c for c in fake_slack.successful("chat.postMessage") if c.args["channel"] == "#sales-leads"
    ]
    assert post.args["text"].startswith("No decision on Acme from <@U0REP1>")
    assert "handoff_reassign" not in json.dumps(post.args["blocks"])


def test_the_sweep_runs_at_start_and_on_the_configured_interval(app_factory, db):
    app = app_factory(db, handoff_sweep_seconds=7)
    scheduler = build_scheduler(app.services)
    job = scheduler.get_job(SLA_SWEEP_JOB)
    assert job.trigger.interval == timedelta(seconds=7)
    assert job.next_run_time is not None  # the first tick is at start: catch-up after downtime
