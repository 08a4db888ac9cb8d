"""The scale-out store: the same guarantees on PostgreSQL, with several app instances
sharing one database (runs when HANDOFF_TEST_POSTGRES_URL is set, as CI does)."""

from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time
from sqlalchemy import func, select

from bot import clock, decisions, digest, reminders
from store.models import Audit, DigestRun, Handoff
from tests.conftest import lead, run_together


def test_same_lead_from_eight_connections_to_two_instances(app_factory, pg, fake_slack):
    first, second = app_factory(pg), app_factory(pg)
    payload = lead("crm-1")
    run_together(*[lambda app=app: app.post_leads(payload) for app in (first, second) * 4])
    first.drain()
    second.drain()
    assert len(fake_slack.successful("chat.postMessage")) == 1
    with pg.session() as session:
        assert session.scalar(select(func.count()).select_from(Handoff)) == 1


def test_racing_decisions_and_sweeps_on_two_instances(app_factory, pg, fake_slack):
    first, second = app_factory(pg), app_factory(pg)
    first.post_leads(lead("crm-1"))
    first.drain()
    with pg.session() as session:
        handoff_id = session.scalars(select(Handoff.id)).one()
    with freeze_time(clock.now() + timedelta(days=3)):
        run_together(
            lambda: reminders.sweep(first.services), lambda: reminders.sweep(second.services)
        )
        first.drain()
        second.drain()
        run_together(
            lambda: digest.run_scheduled(first.services),
            lambda: digest.run_scheduled(second.services),
        )
    escalations = [
        c for c in fake_slack.successful("chat.postMessage") if c.args["channel"] == "U0MGR"
    ]
    assert len(escalations) == 1
    outcomes = []

    def accept(app) -> None:
        try:
            decisions.accept(app.services, handoff_id, "U0REP1")
            outcomes.append("won")
        except decisions.Refused:
            outcomes.append("refused")

    run_together(*[lambda app=app: accept(app) for app in (first, second) * 4])
    assert sorted(outcomes) == ["refused"] * 7 + ["won"]
    with pg.session() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Audit).where(Audit.action == "accepted")
            )
            == 1
        )
        assert session.scalar(select(func.count()).select_from(DigestRun)) == 1
