"""HubSpot polling wired into the running app: sources.yml's `poll_every` makes
`handoff run` poll the fake HubSpot over HTTP, map each changed contact and hand the
qualified ones to their owner in Slack — once."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from bot import clock
from bot.scheduler import HUBSPOT_POLL_JOB, hubspot_poll
from store.models import Handoff, Lead
from tests.conftest import run_together
from tests.fakehubspot import TOKEN, FakeHubSpot
from tests.test_hubspot_webhook import SOURCES, properties


def test_a_polled_contact_is_handed_to_its_owner_once(
    app_factory, db, fake_slack, tmp_path: Path
) -> None:
    path = tmp_path / "sources.yml"
    path.write_text(SOURCES.replace("hubspot:\n", "hubspot:\n  poll_every: 5s\n", 1))
    with FakeHubSpot() as hubspot:
        hubspot.add_owner("77", "rep2@example.com")
        # Changed a minute from now: after the cursor the first poll starts from.
        changed_ms = int(clock.now().timestamp() * 1000) + 60_000
        contact = hubspot.add_contact(changed_ms, **properties(1, hubspot_owner_id="77"))
        app = app_factory(
            db,
            background=True,
            hubspot_token=TOKEN,
            hubspot_api_url=hubspot.url,
            handoff_sources=str(path),
        )
        (card,) = fake_slack.wait_for("chat.postMessage", timeout=30)
        assert card.args["channel"] == "U0REP2"
        assert "Acme" in card.args["text"]

        # The next poll finds the same contact unchanged: nothing more.
        polls = len(hubspot.calls_to("search"))
        app.server.scheduler.get_job(HUBSPOT_POLL_JOB).modify(next_run_time=clock.now())
        deadline = time.monotonic() + 30
        while len(hubspot.calls_to("search")) == polls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(hubspot.calls_to("search")) > polls
        app.drain()
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    with db.session() as session:
        lead = session.scalars(select(Lead)).one()
        handoffs = session.scalars(select(Handoff)).all()
    assert lead.external_id == f"hubspot:{contact}"
    assert [h.owner_email for h in handoffs] == ["rep2@example.com"]


def test_two_apps_on_postgresql_polling_one_portal_hand_each_contact_off_once(
    app_factory, pg, fake_slack, tmp_path: Path
) -> None:
    path = tmp_path / "sources.yml"
    path.write_text(SOURCES.replace("hubspot:\n", "hubspot:\n  poll_every: 5s\n", 1))
    with FakeHubSpot() as hubspot:
        soon = int(clock.now().timestamp() * 1000) + 60_000
        contacts = [hubspot.add_contact(soon + n, **properties(n)) for n in range(6)]
        settings = {
            "hubspot_token": TOKEN,
            "hubspot_api_url": hubspot.url,
            "handoff_sources": str(path),
        }
        apps = [app_factory(pg, **settings), app_factory(pg, **settings)]
        polls = [hubspot_poll(app.services) for app in apps]
        assert all(polls)
        # Both processes poll at the same moment, four times over, and a contact
        # already handed off changes between rounds: still one handoff each.
        for round_ in range(3):
            run_together(*[poll[1] for poll in polls if poll])
            hubspot.touch(contacts[round_], soon + 100 + round_, jobtitle=f"Round {round_}")
        run_together(*[poll[1] for poll in polls if poll])
        # Slack's pace is a message a second per rep: drain until every card is out.
        deadline = time.monotonic() + 60
        while len(fake_slack.successful("chat.postMessage")) < len(contacts):
            assert time.monotonic() < deadline, "the cards did not all go out"
            for app in apps:
                app.drain()
            time.sleep(0.1)
        for app in apps:
            app.drain()
    with pg.session() as session:
        handed_off = session.scalars(
            select(Lead.external_id).join(Handoff, Handoff.lead_id == Lead.id)
        ).all()
    assert sorted(handed_off) == sorted(f"hubspot:{c}" for c in contacts)
    assert len(fake_slack.successful("chat.postMessage")) == len(contacts)
