"""Recycle with a cooldown, through the wire: a recycled lead is held while its reason's
cooldown lasts, comes back afterwards on intent that arrived after the rejection (never on
old signals alone), stops after `handoff.max_cycles`, and a disqualified lead never returns."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from bot.cli import main
from bot.definition import Definition, DefinitionError, parse_definition
from bot.explain import describe_definition
from store.models import Handoff, Lead
from tests.conftest import DATA
from tests.test_decisions import submit_reject, wait_until

SYDNEY = ZoneInfo("Australia/Sydney")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SYDNEY)
DAY = timedelta(days=1)


def definition_with(**changes: Any) -> Definition:
    """tests/data/definition.yml with a 14-day cooldown on bad_timing, plus `changes`
    to the handoff section."""
    data = yaml.safe_load((DATA / "definition.yml").read_text())
    for reason in data["reasons"]:
        if reason["id"] == "bad_timing":
            reason["cooldown_days"] = 14
    data["handoff"].update(changes)
    return parse_definition(data)


@pytest.fixture
def recycling(app_factory, db):
    return app_factory(db, defn=definition_with(max_cycles=2))


def payload(*signals: tuple[str, datetime], title: str = "Head of Ops") -> dict[str, Any]:
    return {
        "id": "crm-1",
        "email": "ana@acme.example",
        "company": "Acme",
        "title": title,
        "attributes": {"employees": 250, "country": "AU"},
        "signals": [{"name": name, "at": at.isoformat()} for name, at in signals],
    }


OLD = (("demo_request", MONDAY_10 - 2 * DAY), ("pricing_page", MONDAY_10 - DAY))


def fresh(at: datetime) -> tuple[tuple[str, datetime], ...]:
    """Enough intent on its own to qualify (40 + 10 points)."""
    return (("demo_request", at), ("pricing_page", at))


def send(app, body: dict[str, Any], at: datetime) -> dict[str, Any]:
    with freeze_time(at):
        response = app.post_leads(body)
        app.drain()
    assert response.status_code == 202, response.text
    [outcome] = response.json()["results"]
    return outcome


def handoffs(db) -> list[Handoff]:
    with db.session() as session:
        return list(session.scalars(select(Handoff).order_by(Handoff.id)))


def stored_lead(db) -> Lead:
    with db.session() as session:
        return session.scalars(select(Lead)).one()


def reject(app, db, reason: str, at: datetime, note: str | None = None) -> None:
    """The owner rejects the open handoff from the modal, at `at`."""
    [handoff] = [h for h in handoffs(db) if h.status == "open"]
    with freeze_time(at, tick=True):  # the decision is written after the ack, on a thread
        assert submit_reject(app, handoff.owner_user_id, handoff.id, reason, note).text == ""
        wait_until(lambda: stored_lead(db).status != "handed_off")


def test_cooldown_holds_the_lead_then_lets_it_return(recycling, db, fake_slack):
    assert send(recycling, payload(*OLD), MONDAY_10)["outcome"] == "handed_off"
    reject(recycling, db, "bad_timing", MONDAY_10 + timedelta(hours=1))
    lead = stored_lead(db)
    assert (lead.status, lead.ready) == ("nurture", False)
    returns = lead.returns_after
    assert returns is not None and returns - lead.recycled_at == 14 * DAY

    body = payload(*OLD, *fresh(MONDAY_10 + 2 * DAY))
    held = send(recycling, body, MONDAY_10 + 2 * DAY)
    assert held["outcome"] == "cooling_down"
    assert held["returns_after"] == returns.isoformat()
    assert "handed off when its cooldown ends" in held["why"]
    assert send(recycling, body, MONDAY_10 + 10 * DAY)["outcome"] == "unchanged"
    assert len(handoffs(db)) == 1 and stored_lead(db).status == "cooling_down"

    # The same payload once the cooldown is over: judged again, handed off to the next rep.
    back = send(recycling, body, MONDAY_10 + 15 * DAY)
    assert (back["outcome"], back["owner"]) == ("handed_off", "rep2@example.com")
    assert send(recycling, body, MONDAY_10 + 15 * DAY)["outcome"] == "unchanged"
    assert [h.status for h in handoffs(db)] == ["rejected", "open"]
    cards = [c.args["channel"] for c in fake_slack.successful("chat.postMessage")]
    assert cards == ["U0REP1", "U0REP2"]


def test_a_recycled_lead_returns_on_new_intent_only(recycling, db):
    send(recycling, payload(*OLD), MONDAY_10)
    reject(recycling, db, "no_budget", MONDAY_10 + timedelta(hours=1))  # no cooldown

    # Changed, still qualifying on the old signals: they had their say.
    again = send(recycling, payload(*OLD, title="COO"), MONDAY_10 + DAY)
    assert again["outcome"] == "nurture" and "returns_after" not in again
    assert len(handoffs(db)) == 1
    # Half the intent needed, after the rejection: still not enough on its own.
    some = payload(*OLD, ("demo_request", MONDAY_10 + DAY), title="COO")
    assert send(recycling, some, MONDAY_10 + DAY)["outcome"] == "nurture"
    back = send(recycling, payload(*OLD, *fresh(MONDAY_10 + 2 * DAY)), MONDAY_10 + 2 * DAY)
    assert back["outcome"] == "handed_off"
    assert len(handoffs(db)) == 2


def test_max_cycles_keeps_the_lead_with_marketing(recycling, db):
    send(recycling, payload(*OLD), MONDAY_10)
    reject(recycling, db, "no_budget", MONDAY_10 + timedelta(hours=1))
    second = MONDAY_10 + DAY
    assert send(recycling, payload(*OLD, *fresh(second)), second)["outcome"] == "handed_off"
    reject(recycling, db, "no_budget", second + timedelta(hours=1))

    third = MONDAY_10 + 2 * DAY
    held = send(recycling, payload(*OLD, *fresh(second), *fresh(third)), third)
    assert held["outcome"] == "max_cycles"
    assert held["why"] == (
        "handed off 2 time(s) already (handoff.max_cycles is 2): it stays with marketing"
    )
    assert len(handoffs(db)) == 2 and stored_lead(db).status == "nurture"


def test_a_disqualified_lead_never_returns(recycling, db):
    send(recycling, payload(*OLD), MONDAY_10)
    reject(recycling, db, "too_small", MONDAY_10 + timedelta(hours=1))
    later = MONDAY_10 + 40 * DAY
    outcome = send(recycling, payload(*fresh(later)), later)
    assert outcome["outcome"] == "updated" and "disqualified" in outcome["why"]
    assert len(handoffs(db)) == 1


def test_the_story_says_when_a_recycled_lead_may_return(recycling, db, monkeypatch):
    send(recycling, payload(*OLD), MONDAY_10)
    reject(recycling, db, "bad_timing", MONDAY_10 + timedelta(hours=1))
    send(recycling, payload(*OLD, *fresh(MONDAY_10 + DAY)), MONDAY_10 + DAY)
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    story = CliRunner().invoke(main, ["lead", "crm-1"], catch_exceptions=False).output
    assert "status cooling_down" in story
    assert "Recycled 2026-11-23 00:00 UTC: may return after 2026-12-07 00:00 UTC" in story
    assert "cooldown until 2026-12-07T00:00:00+00:00" in story
    assert "kept with marketing" in story and "handed off when its cooldown ends" in story
    assert "before the lead was recycled on 2026-11-23 00:00 UTC" in story


@pytest.mark.parametrize(
    ("where", "value", "problem"),
    [
        ("reason", -1, "reasons[3].cooldown_days: expected at least 0, got -1"),
        ("reason", "2w", "reasons[3].cooldown_days: expected a whole number, got '2w'"),
        ("disqualify", 5, "reasons[0].cooldown_days: only a recycle reason has a cooldown"),
        ("handoff", 0, "handoff.max_cycles: expected at least 1, got 0"),
    ],
)
def test_bad_cooldown_and_max_cycles_are_named_by_path(where, value, problem):
    data = yaml.safe_load((DATA / "definition.yml").read_text())
    if where == "handoff":
        data["handoff"]["max_cycles"] = value
    else:
        data["reasons"][0 if where == "disqualify" else 3]["cooldown_days"] = value
    with pytest.raises(DefinitionError) as error:
        parse_definition(data)
    assert any(problem in line for line in error.value.problems)


def test_the_report_lists_leads_still_cooling_down(recycling, db, monkeypatch):
    send(recycling, payload(*OLD), MONDAY_10)
    reject(recycling, db, "bad_timing", MONDAY_10 + timedelta(hours=1))
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    with freeze_time(MONDAY_10 + 3 * DAY):
        table = CliRunner().invoke(main, ["report"], catch_exceptions=False).output
        as_json = CliRunner().invoke(main, ["report", "--format", "json"]).output
    assert table.splitlines()[-2:] == [
        "Recycled, cooling down (1):",
        "  crm-1  Acme  may return after 2026-12-07 00:00 UTC",
    ]
    assert "cooling down" not in as_json
    with freeze_time(MONDAY_10 + 15 * DAY):
        table = CliRunner().invoke(main, ["report"], catch_exceptions=False).output
    assert "cooling down" not in table


def test_definition_show_explains_cooldowns_and_max_cycles():
    text = describe_definition(definition_with(max_cycles=2))
    assert "bad_timing: Bad timing (points at: Buying within 90 days)" in text
    assert "; not handed off again for 14 days" in text
    assert "A lead is handed off at most 2 time(s)." in text
