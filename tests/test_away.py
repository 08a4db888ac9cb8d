"""Away through the running app: `/handoff away [until DATE]` and `/handoff back` over
signed slash commands; routing skips away reps; away ends by itself at the date; the
manager's one click sends the rep's open leads back through routing."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from freezegun import freeze_time
from sqlalchemy import select

from bot.blocks.routing import AWAY_REASSIGN
from store.models import Handoff, Outbox, RepStatus
from tests.conftest import lead
from tests.slackreq import block_actions, slash_command
from tests.test_routing_depth import dms_to, handoffs, owners

SYDNEY = ZoneInfo("Australia/Sydney")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SYDNEY)


def command(app, user_id: str, text: str) -> str:
    response = app.slack(slash_command(user_id=user_id, text=text))
    assert response.status_code == 200
    return response.text  # ack(text=...): a plain-text body, shown to the user only


def test_away_reps_get_nothing_until_they_are_back(app, db, fake_slack):
    assert owners(app.post_leads(lead("crm-1"))) == ["rep1@example.com"]
    answer = command(app, "U0REP1", "away")
    assert answer.startswith("🌴 You are away until `/handoff back`: routing sends you no new")
    assert "You hold 1 open lead; your manager (mgr@example.com) can reassign them" in answer
    got = owners(app.post_leads([lead(f"crm-{n}") for n in range(2, 5)]))
    assert got == ["rep2@example.com"] * 3
    # An explicit owner who is away is skipped too, and the answer says why.
    response = app.post_leads(lead("crm-5", owner="rep1@example.com"))
    [result] = response.json()["results"]
    assert result["owner"] == "rep2@example.com"
    assert result["why"].startswith("owner rep1@example.com is away")
    assert command(app, "U0REP1", "back") == "👋 Welcome back: routing sends you leads again."
    assert owners(app.post_leads(lead("crm-6"))) == ["rep1@example.com"]
    assert command(app, "U0REP1", "back").startswith("You were not marked away")


def test_away_until_a_date_ends_by_itself(app, db, fake_slack):
    with freeze_time(MONDAY_10):
        answer = command(app, "U0REP1", "away until 2026-11-25")
        assert answer.startswith("🌴 You are away until Wed 25 Nov 2026: routing sends you")
        assert owners(app.post_leads([lead("crm-1"), lead("crm-2")])) == ["rep2@example.com"] * 2
    with freeze_time(datetime(2026, 11, 24, 23, 59, tzinfo=SYDNEY)):
        assert owners(app.post_leads(lead("crm-3"))) == ["rep2@example.com"]
    # Wednesday 00:00 in Sydney: back, with nothing anyone had to run.
    with freeze_time(datetime(2026, 11, 25, 0, 0, tzinfo=SYDNEY)):
        assert owners(app.post_leads([lead("crm-4"), lead("crm-5")])) == [
            "rep1@example.com",
            "rep2@example.com",
        ]
    with db.session() as session:
        status = session.get(RepStatus, "rep1@example.com")
    assert status.away_until == datetime(2026, 11, 25, 0, 0, tzinfo=SYDNEY)


def test_a_bad_date_is_answered_and_changes_nothing(app, db):
    with freeze_time(MONDAY_10):
        assert command(app, "U0REP1", "away until next week") == (
            "I could not read 'next week' as a date. Use `/handoff away` or "
            "`/handoff away until 2026-12-01` (the day you are back)."
        )
        assert command(app, "U0REP1", "away until 2026-11-23").startswith(
            "Pick a day after today for your return."
        )
    with db.session() as session:
        assert session.scalars(select(RepStatus)).all() == []


def test_the_manager_reassigns_an_away_reps_open_leads_in_one_click(app, db, fake_slack):
    assert (
        owners(app.post_leads([lead(f"crm-{n}") for n in range(1, 5)]))
        == [
            "rep1@example.com",
            "rep2@example.com",
        ]
        * 2
    )
    app.drain()
    command(app, "U0REP1", "away")
    app.drain()
    [notice] = dms_to(fake_slack, "U0MGR")
    assert notice.args["text"] == "🌴 <@U0REP1> is away until `/handoff back`, with 2 open leads."
    [button] = [e for b in notice.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (button["text"]["text"], button["action_id"], button["value"]) == (
        "Reassign 2 open leads",
        AWAY_REASSIGN,
        "rep1@example.com",
    )
    # Only the manager may: the rep's colleague is refused, nothing moves.
    app.slack(block_actions(user_id="U0REP2", action_id=AWAY_REASSIGN, value="rep1@example.com"))
    [refused] = fake_slack.wait_for("chat.postEphemeral")
    assert refused.args["text"] == "Only the rep's manager can reassign their leads."
    app.slack(
        block_actions(
            user_id="U0MGR", action_id=AWAY_REASSIGN, value="rep1@example.com", channel="DU0MGR"
        )
    )
    fake_slack.wait_for("chat.postEphemeral", count=2)
    told = fake_slack.successful("chat.postEphemeral")[-1]
    assert told.args["text"] == (
        "Reassigned 2 of rep1@example.com's open leads (2 to rep2@example.com)."
    )
    current = [h for h in handoffs(db) if h.status == "open"]
    assert sorted(h.owner_email for h in current) == ["rep2@example.com"] * 4
    moved = [h for h in handoffs(db) if h.previous_id is not None]
    assert all(h.routed_by.startswith("rep1@example.com is away") for h in moved)
    app.drain()  # the old cards say where they went (one per second per DM: the first now)
    [update, *_] = fake_slack.successful("chat.update")
    assert "Reassigned" in json.dumps(update.args["blocks"])
    with db.session() as session:
        queued = session.scalars(select(Outbox.handoff_id).where(Outbox.kind == "card_update"))
        assert sorted(queued.all()) == sorted(h.previous_id for h in moved)


def test_away_rep_leads_stay_when_nobody_can_take_them(app, db, fake_slack):
    with freeze_time(MONDAY_10):
        app.post_leads(lead("crm-1", attributes={"employees": 250, "country": "NZ"}))
        command(app, "U0NZREP", "away")
    app.slack(block_actions(user_id="U0MGR", action_id=AWAY_REASSIGN, value="nz-rep@example.com"))
    [told] = fake_slack.wait_for("chat.postEphemeral")
    # The NZ rule's only rep is away; the general rotation takes it.
    assert told.args["text"] == (
        "Reassigned 1 of nz-rep@example.com's open leads (1 to rep1@example.com)."
    )
    with db.session() as session:
        assert session.scalars(
            select(Handoff.owner_email).where(Handoff.status == "open")
        ).all() == ["rep1@example.com"]
