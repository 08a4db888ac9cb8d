"""Snooze, through the wire: the card's button opens a modal of lengths up to
`handoff.sla.snooze_max`; a snooze moves the due time and every pending reminder and
escalation by the business time snoozed; the card, App Home and the lead's story show it;
only the owner or their manager may snooze, and one snooze at a time."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from bot.blocks.card import SNOOZE
from bot.blocks.modals import SNOOZE_VIEW
from bot.cli import main
from bot.definition import DefinitionError, parse_definition
from bot.explain import describe_definition
from store.models import Handoff, SlaTimer, Snooze
from tests.conftest import DATA
from tests.slackreq import view_submission
from tests.test_card_clock import clock_line
from tests.test_decisions import click, wait_until
from tests.test_home import open_home
from tests.test_sla import MONDAY_10, dms, hand_off, tick

HOUR = timedelta(hours=1)


@pytest.fixture
def snoozing(app_factory, db):
    data = yaml.safe_load((DATA / "definition.yml").read_text())
    data["handoff"]["sla"]["snooze_max"] = "2h"
    return app_factory(db, defn=parse_definition(data))


def snooze_values(length: str | None, why: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"why": {"why": {"type": "plain_text_input", "value": why}}}
    if length:
        values["length"] = {
            "length": {"type": "static_select", "selected_option": {"value": length}}
        }
    return values


def submit_snooze(app, user_id: str, handoff_id: int, length: str | None, why: str | None):
    return app.slack(
        view_submission(
            user_id=user_id,
            callback_id=SNOOZE_VIEW,
            private_metadata=str(handoff_id),
            values=snooze_values(length, why),
        )
    )


def snoozes(db) -> list[Snooze]:
    with db.session() as session:
        return list(session.scalars(select(Snooze)))


def snooze_at(app, db, user_id: str, handoff_id: int, length: str, why: str, at) -> None:
    with freeze_time(at, tick=True):  # written after the ack, on a listener thread
        assert submit_snooze(app, user_id, handoff_id, length, why).text == ""
        wait_until(lambda: len(snoozes(db)) == 1)
        app.drain()


def buttons(blocks) -> list[str]:
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return [
        element["action_id"]
        for block in blocks
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def test_snooze_is_offered_only_when_the_definition_sets_snooze_max(app, db, fake_slack):
    hand_off(app, db)
    [card] = fake_slack.successful("chat.postMessage")
    assert SNOOZE not in buttons(card.args["blocks"])


def test_the_modal_offers_lengths_up_to_snooze_max(snoozing, db, fake_slack):
    handoff = hand_off(snoozing, db)
    [card] = fake_slack.successful("chat.postMessage")
    assert SNOOZE in buttons(card.args["blocks"])
    click(snoozing, "U0REP1", SNOOZE, handoff.id, trigger_id="trig-1")
    [opened] = fake_slack.wait_for("views.open")
    view = opened.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == SNOOZE_VIEW
    options = view["blocks"][1]["element"]["options"]
    assert [(o["value"], o["text"]["text"]) for o in options] == [
        ("30m", "30 minutes"),
        ("1h", "1 hour"),
        ("2h", "2 hours"),
    ]


def test_a_snoozed_lead_gets_no_reminder_until_the_snooze_ends(snoozing, db, fake_slack):
    handoff = hand_off(snoozing, db)  # Monday 10:00, reminder at 12:00, due 14:00
    snooze_at(snoozing, db, "U0REP1", handoff.id, "2h", "Waiting for the CFO", MONDAY_10 + HOUR)
    with db.session() as session:
        moved = session.get(Handoff, handoff.id)
        timers = session.scalars(select(SlaTimer).order_by(SlaTimer.id)).all()
    assert moved.due_at == handoff.due_at + 2 * HOUR
    assert [t.due_at - handoff.assigned_at for t in timers] == [4 * HOUR, 6 * HOUR, 6 * HOUR]
    [update] = fake_slack.successful("chat.update")
    assert SNOOZE not in buttons(update.args["blocks"])
    dump = json.dumps(update.args["blocks"], ensure_ascii=False)
    assert "💤 Snoozed until *Mon 23 Nov, 13:00 AEDT* — Waiting for the CFO" in dump
    assert "Respond by *Mon 23 Nov, 16:00 AEDT* — 3h left" in clock_line(update.args["blocks"])

    assert tick(snoozing, MONDAY_10 + 2 * HOUR) == 0  # the old 50%: nothing
    assert len(dms(fake_slack, "U0REP1")) == 1  # only the card
    tick(snoozing, MONDAY_10 + 3 * HOUR + timedelta(seconds=1))  # the snooze has ended
    ended = fake_slack.successful("chat.update")[-1]
    assert "Snoozed" not in json.dumps(ended.args["blocks"])
    assert SNOOZE in buttons(ended.args["blocks"])
    assert tick(snoozing, MONDAY_10 + 4 * HOUR) == 1  # the reminder, two hours later
    assert dms(fake_slack, "U0REP1")[1].endswith(
        "2h 00m of business time left (due Mon 23 Nov, 16:00 AEDT)."
    )
    assert dms(fake_slack, "U0MGR") == []
    assert tick(snoozing, MONDAY_10 + 6 * HOUR) == 2  # 100%: reminder and escalation
    assert len(dms(fake_slack, "U0MGR")) == 1


def test_a_stranger_may_not_snooze(snoozing, db, fake_slack):
    handoff = hand_off(snoozing, db)
    click(snoozing, "U0STRANGER", SNOOZE, handoff.id, trigger_id="trig-1")
    [ephemeral] = fake_slack.wait_for("chat.postEphemeral")
    assert ephemeral.args["text"] == (
        "Only <@U0REP1> or their manager (<@U0MGR>) can decide on this lead."
    )
    assert fake_slack.calls_to("views.open") == []
    response = submit_snooze(snoozing, "U0STRANGER", handoff.id, "1h", "mine now")
    assert response.json()["response_action"] == "errors"
    assert snoozes(db) == []


def test_one_snooze_at_a_time_and_the_manager_sees_it(snoozing, db, fake_slack):
    handoff = hand_off(snoozing, db)
    snooze_at(snoozing, db, "U0MGR", handoff.id, "1h", "Rep at a conference", MONDAY_10)
    with freeze_time(MONDAY_10 + timedelta(minutes=30)):
        again = submit_snooze(snoozing, "U0REP1", handoff.id, "2h", "more")
        assert "already snoozed until" in again.json()["errors"]["length"]
        team = json.dumps(open_home(snoozing, fake_slack, "U0MGR"), ensure_ascii=False)
    assert "💤 Snoozed until *Mon 23 Nov, 00:00 UTC* — Rep at a conference" in team
    assert len(snoozes(db)) == 1


def test_bad_modal_input_is_answered_in_the_modal(snoozing, db):
    handoff = hand_off(snoozing, db)
    response = submit_snooze(snoozing, "U0REP1", handoff.id, "4h", " ")
    assert response.json() == {
        "response_action": "errors",
        "errors": {
            "length": "Pick how long to snooze.",
            "why": "Say why, for your manager and the lead's history.",
        },
    }


def test_the_story_shows_the_snooze(snoozing, db, monkeypatch):
    handoff = hand_off(snoozing, db)
    snooze_at(snoozing, db, "U0REP1", handoff.id, "30m", "Call booked", MONDAY_10 + HOUR)
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    story = CliRunner().invoke(main, ["lead", "crm-1"], catch_exceptions=False).output
    assert "snoozed        by U0REP1: until 2026-11-23T00:30:00+00:00 (30m): Call booked" in story


def test_a_bad_snooze_max_is_named_by_path():
    data = yaml.safe_load((DATA / "definition.yml").read_text())
    data["handoff"]["sla"]["snooze_max"] = "soon"
    with pytest.raises(DefinitionError) as error:
        parse_definition(data)
    assert error.value.problems == [
        "handoff.sla.snooze_max: expected a duration like 30m, 4h, 1d or 1h30m, got 'soon'"
    ]


def test_definition_show_mentions_the_snooze(snoozing):
    assert "A rep may snooze a lead for up to 2h of business time." in describe_definition(
        snoozing.services.definition
    )
