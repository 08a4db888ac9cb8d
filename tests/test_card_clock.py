"""The live clock on the card: Slack cannot tick, so the card itself is re-rendered with
the business time left at each reminder and at the breach (one chat.update each)."""

from __future__ import annotations

import json
from datetime import timedelta

from bot import decisions
from tests.test_sla import MONDAY_10, hand_off, tick


def clock_line(blocks) -> str:
    """The card's context line with the deadline."""
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    for block in blocks:
        for element in block.get("elements", []):
            if "Respond by" in element.get("text", ""):
                return element["text"]
    return ""


def updates(fake_slack) -> list[str]:
    return [clock_line(c.args["blocks"]) for c in fake_slack.successful("chat.update")]


def test_the_card_shows_the_time_left_at_each_reminder_and_the_breach(app, db, fake_slack):
    handoff = hand_off(app, db)
    [card] = fake_slack.successful("chat.postMessage")
    assert clock_line(card.args["blocks"]) == ("⏱ Respond by *Mon 23 Nov, 14:00 AEDT* — 4h left")
    tick(app, MONDAY_10 + timedelta(hours=2))  # the 50% reminder
    [half] = fake_slack.successful("chat.update")
    assert (half.args["channel"], half.args["ts"]) == (handoff.channel, handoff.ts)
    assert updates(fake_slack) == ["⏱ Respond by *Mon 23 Nov, 14:00 AEDT* — 2h left"]
    # 100%: the reminder and the escalation share one update.
    tick(app, MONDAY_10 + timedelta(hours=4, seconds=20))
    assert updates(fake_slack)[1:] == ["⏱ Respond by *Mon 23 Nov, 14:00 AEDT* — due now"]
    assert tick(app, MONDAY_10 + timedelta(hours=6)) == 0
    assert len(fake_slack.successful("chat.update")) == 2  # nothing more to say


def test_a_breach_found_after_downtime_says_how_overdue(app, db, fake_slack):
    hand_off(app, db)
    tick(app, MONDAY_10 + timedelta(hours=5, minutes=30))  # down through both timers
    assert updates(fake_slack) == ["⏱ Respond by *Mon 23 Nov, 14:00 AEDT* — overdue by 1h 30m"]


def test_a_decided_card_shows_no_clock(app, db, fake_slack):
    handoff = hand_off(app, db)
    tick(app, MONDAY_10 + timedelta(hours=2))
    decisions.accept(app.services, handoff.id, "U0REP1", now=MONDAY_10 + timedelta(hours=3))
    app.drain()
    last = fake_slack.successful("chat.update")[-1]
    assert "Accepted" in json.dumps(last.args["blocks"])
    assert clock_line(last.args["blocks"]) == ""
