"""Routing depth through the running app: weighted rotation, daily caps (the next rep
takes over; all full: the manager is asked and assigns through the reassign modal),
account match before rotation, and the definition's checks of the new keys."""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from freezegun import freeze_time
from sqlalchemy import select

from bot.blocks.card import REASSIGN
from bot.blocks.modals import REASSIGN_VIEW
from bot.definition import Definition, DefinitionError, parse_definition
from bot.explain import describe_definition
from store.models import Handoff, Lead
from tests.conftest import DATA, lead
from tests.slackreq import block_actions, slash_command, view_submission

SYDNEY = ZoneInfo("Australia/Sydney")
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=SYDNEY)
BASE = yaml.safe_load((DATA / "definition.yml").read_text())


def definition_with(
    routing: list[Any], *, managers: dict[str, str] | None = None, **sla: Any
) -> Definition:
    """The tests' definition with these routing rules (managers, and SLA keys)."""
    data = copy.deepcopy(BASE)
    data["handoff"]["routing"] = routing
    if managers is not None:
        data["handoff"]["managers"] = managers
    data["handoff"]["sla"].update(sla)
    return parse_definition(data, source="test")


def owners(response) -> list[str | None]:
    assert response.status_code == 202, response.text
    return [item.get("owner") for item in response.json()["results"]]


def handoffs(db) -> list[Handoff]:
    with db.session() as session:
        return list(session.scalars(select(Handoff).order_by(Handoff.id)).all())


def wait_until(predicate, timeout: float = 10.0) -> None:
    """Work after the ack runs on Bolt's listener thread: wait for its effect."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def dms_to(fake_slack, user_id: str) -> list[Any]:
    return [c for c in fake_slack.successful("chat.postMessage") if c.args["channel"] == user_id]


def test_eight_leads_on_weights_three_to_one_give_six_and_two_interleaved(
    app_factory, db, fake_slack
):
    defn = definition_with(
        [{"round_robin": [{"rep": "rep1@example.com", "weight": 3}, "rep2@example.com"]}]
    )
    app = app_factory(db, defn=defn)
    got = []
    for n in range(8):  # one request (one transaction) each
        got += owners(app.post_leads(lead(f"crm-{n}")))
    assert (
        got == ["rep1@example.com", "rep1@example.com", "rep2@example.com", "rep1@example.com"] * 2
    )
    stored = Counter(h.owner_email for h in handoffs(db))
    assert stored == {"rep1@example.com": 6, "rep2@example.com": 2}


def test_weights_hold_within_one_batch_and_across_a_restart(app_factory, db, fake_slack):
    defn = definition_with(
        [{"round_robin": [{"rep": "rep1@example.com", "weight": 3}, "rep2@example.com"]}]
    )
    first = app_factory(db, defn=defn)
    got = owners(first.post_leads([lead(f"crm-{n}") for n in range(3)]))
    second = app_factory(db, defn=defn)  # a restart: the position is in the database
    got += owners(second.post_leads([lead(f"crm-{n}") for n in range(3, 8)]))
    assert Counter(got) == {"rep1@example.com": 6, "rep2@example.com": 2}
    assert got[:4] == ["rep1@example.com", "rep1@example.com", "rep2@example.com"] + [
        "rep1@example.com"
    ]


def test_a_full_rep_hands_over_to_the_next_and_the_cap_resets_the_next_day(
    app_factory, db, fake_slack
):
    defn = definition_with(
        [
            {
                "round_robin": [{"rep": "rep1@example.com", "weight": 3}, "rep2@example.com"],
                "daily_cap": 2,
            }
        ]
    )
    app = app_factory(db, defn=defn)
    with freeze_time(MONDAY_10):
        got = [owners(app.post_leads(lead(f"crm-{n}")))[0] for n in range(4)]
    # rep1 (weight 3) would take three of the first four; at 2 they are full.
    assert Counter(got) == {"rep1@example.com": 2, "rep2@example.com": 2}
    third = next(h for h in handoffs(db) if h.lead_id == 4)
    assert "rep1@example.com has reached today's cap of 2" in third.routed_by
    # Tuesday in Sydney (the definition's zone) is a new day: rep1 takes leads again.
    with freeze_time(datetime(2026, 11, 24, 0, 5, tzinfo=SYDNEY)):
        assert owners(app.post_leads(lead("crm-tue"))) == ["rep1@example.com"]


def test_all_full_the_manager_is_asked_and_assigns_through_the_reassign_modal(
    app_factory, db, fake_slack
):
    defn = definition_with(
        [{"round_robin": ["rep1@example.com", "rep2@example.com"], "daily_cap": 1}]
    )
    app = app_factory(db, defn=defn)
    with freeze_time(MONDAY_10):
        assert owners(app.post_leads([lead("crm-1"), lead("crm-2")])) == [
            "rep1@example.com",
            "rep2@example.com",
        ]
        response = app.post_leads(lead("crm-3", company="Globex"))
        [result] = response.json()["results"]
        assert result["outcome"] == "held"
        assert "have reached today's cap of 1" in result["why"]
        app.drain()
    [asked] = dms_to(fake_slack, "U0MGR")
    assert "*Globex* qualified, but nobody in its pool can take it today" in asked.args["text"]
    held = handoffs(db)[-1]
    assert (held.owner_email, held.status) == ("mgr@example.com", "open")
    buttons = [e for b in asked.args["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [(REASSIGN, str(held.id))]
    # (Outside freeze_time: waiting on the work after the ack needs a moving clock.)
    app.slack(block_actions(user_id="U0MGR", action_id=REASSIGN, value=str(held.id)))
    fake_slack.wait_for("views.open")
    app.slack(
        view_submission(
            user_id="U0MGR",
            callback_id=REASSIGN_VIEW,
            private_metadata=str(held.id),
            values={"assignee": {"assignee": {"type": "users_select", "selected_user": "U0REP2"}}},
        )
    )
    wait_until(lambda: len(handoffs(db)) == 4)  # written after the ack
    app.drain()
    assigned = handoffs(db)[-1]
    assert (assigned.owner_email, assigned.previous_id) == ("rep2@example.com", held.id)
    [_, card] = dms_to(fake_slack, "U0REP2")
    assert "Globex" in card.args["text"]
    [update] = fake_slack.successful("chat.update")
    held_now = next(h for h in handoffs(db) if h.id == held.id)
    # The manager's question was no rep's clock: it counts in no SLA figure or cap.
    assert (held_now.breached, held_now.business_seconds, held_now.route_key) == (
        None,
        None,
        "held:routing[0]",
    )
    # The question to the manager became the outcome.
    assert (update.args["channel"], held_now.channel) == ("DU0MGR", "DU0MGR")
    assert "Reassigned" in json.dumps(update.args["blocks"])


def test_account_match_beats_the_rotation(app_factory, db, fake_slack):
    defn = definition_with(
        [{"match_account": True}, {"round_robin": ["rep1@example.com", "rep2@example.com"]}]
    )
    app = app_factory(db, defn=defn)
    first = lead("crm-1", company="Acme", email="ana@acme.example")
    assert owners(app.post_leads(first)) == ["rep1@example.com"]
    # The same company (case and spaces aside), another domain: rep1 again, not rep2.
    same_company = lead("crm-2", company="  ACME ", email="bo@other.example")
    # Another company at the same email domain: rep1 too.
    same_domain = lead("crm-3", company="Acme Labs", email="cy@acme.example")
    # Free mail says nothing about the account: the rotation decides (rep2).
    free_mail = lead("crm-4", company="Initech", email="di@gmail.com")
    # Two leads of a new company in one batch: the second follows the first.
    new_a = lead("crm-5", company="Umbrella", email="a@umbrella.example")
    new_b = lead("crm-6", company="Umbrella", email="b@umbrella.example")
    response = app.post_leads([same_company, same_domain, free_mail, new_a, new_b])
    assert owners(response) == [
        "rep1@example.com",
        "rep1@example.com",
        "rep2@example.com",
        "rep1@example.com",
        "rep1@example.com",
    ]
    why = response.json()["results"][0]["why"]
    assert why == "works this account (ACME) already"
    with db.session() as session:
        stored = session.scalars(select(Lead).where(Lead.external_id == "crm-2")).one()
    assert (stored.company_key, stored.email_domain) == ("acme", "other.example")


def test_account_match_skips_an_away_owner_and_a_rejected_handoff(app_factory, db, fake_slack):
    defn = definition_with(
        [{"match_account": True}, {"round_robin": ["rep1@example.com", "rep2@example.com"]}]
    )
    app = app_factory(db, defn=defn)
    assert owners(app.post_leads(lead("crm-1", company="Acme"))) == ["rep1@example.com"]
    from store import routing as routing_store

    with db.transaction() as session:
        routing_store.set_away(session, "rep1@example.com", True, now=MONDAY_10)
    response = app.post_leads(lead("crm-2", company="Acme", email="x@y.example"))
    [result] = response.json()["results"]
    assert result["owner"] == "rep2@example.com"
    assert result["why"].startswith("Acme's owner rep1@example.com is away; ")


BAD_RULES = [
    (
        [{"round_robin": [{"rep": "a@x.com", "weight": 0}, "b@x.com"]}],
        "handoff.routing[0].round_robin[0].weight: expected at least 1, got 0",
    ),
    (
        [{"round_robin": [{"rep": "a@x.com", "weight": "two"}]}],
        "handoff.routing[0].round_robin[0].weight: expected a whole number, got 'two'",
    ),
    (
        [{"round_robin": [{"rep": "a@x.com", "wieght": 2}]}],
        "handoff.routing[0].round_robin[0].wieght: unknown key; did you mean 'weight'?",
    ),
    (
        [{"round_robin": ["a@x.com", {"rep": "A@x.com", "weight": 2}]}],
        "handoff.routing[0].round_robin[1]: 'a@x.com' is listed twice",
    ),
    (
        [{"round_robin": ["a@x.com"], "daily_cap": 0}],
        "handoff.routing[0].daily_cap: expected at least 1, got 0",
    ),
    (
        [{"match_account": "yes"}],
        "handoff.routing[0].match_account: expected true, got 'yes'",
    ),
    (
        [{"match_account": True, "daily_cap": 3}],
        "handoff.routing[0].daily_cap: a cap applies to a pool of reps",
    ),
    (
        [{"match_account": True, "to": ["a@x.com"]}],
        "handoff.routing[0]: expected exactly one of to, round_robin, match_account",
    ),
]


@pytest.mark.parametrize(("rules", "problem"), BAD_RULES)
def test_bad_routing_keys_are_named_by_path(rules, problem):
    with pytest.raises(DefinitionError) as caught:
        definition_with(rules)
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


def test_the_definition_in_words_names_weights_caps_and_account_match():
    defn = definition_with(
        [
            {"match_account": True},
            {"round_robin": [{"rep": "a@x.com", "weight": 2}, "b@x.com"], "daily_cap": 20},
        ]
    )
    text = describe_definition(defn)
    assert "routing[0]: any lead -> the owner of the account's open or accepted handoff" in text
    assert "routing[1]: any lead -> round-robin over a@x.com (weight 2), b@x.com; at most 20" in (
        text
    )


def test_the_example_definitions_commented_routing_keys_validate():
    """qualification.yml shows the new keys commented out: uncommented, they are valid."""
    root = DATA.parent.parent
    text = (root / "qualification.yml").read_text()
    assert text == (root / "bot" / "data" / "qualification.yml").read_text()
    for example in ("# reassign_at:", "# - {match_account:", "# - {round_robin:"):
        assert example in text
        text = text.replace(example, example.removeprefix("# "))
    defn = parse_definition(yaml.safe_load(text), source="example")
    assert defn.handoff.sla.reassign_at == 1.5
    assert defn.handoff.routing[0].match_account
    assert (defn.handoff.routing[-1].weights, defn.handoff.routing[-1].daily_cap) == ((2, 1), 20)


def test_an_older_database_gains_the_routing_columns_and_indexes(tmp_path):
    """A database from before schema 3: the upgrade adds what routing depth needs."""
    from sqlalchemy import inspect, text

    from store.db import Database

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Database(url)
    old.create_schema()
    with old.engine.begin() as conn:
        for index in ("ix_handoff_route_key", "ix_lead_company_key", "ix_lead_email_domain"):
            conn.execute(text(f"DROP INDEX {index}"))
        for table, column in (
            ("handoff", "route_key"),
            ("lead", "company_key"),
            ("lead", "email_domain"),
            ("rep_status", "away_until"),
        ):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(text("UPDATE schema_info SET version = 2"))
    old.dispose()
    upgraded = Database(url)
    upgraded.create_schema()
    inspector = inspect(upgraded.engine)
    assert "route_key" in {c["name"] for c in inspector.get_columns("handoff")}
    assert {"company_key", "email_domain"} <= {c["name"] for c in inspector.get_columns("lead")}
    assert "away_until" in {c["name"] for c in inspector.get_columns("rep_status")}
    assert "ix_handoff_route_key" in {i["name"] for i in inspector.get_indexes("handoff")}
    upgraded.dispose()


def test_a_held_leads_story_says_who_assigns_it(app_factory, db, fake_slack):
    from bot.history import lead_story, render_story

    defn = definition_with([{"round_robin": ["rep1@example.com"], "daily_cap": 1}])
    app = app_factory(db, defn=defn)
    app.post_leads([lead("crm-1"), lead("crm-2")])
    story = render_story(*lead_story(db, "crm-2"))
    assert (
        "by intake: for mgr@example.com to assign (rep1@example.com has reached today's cap of 1"
        in story
    )


def test_every_manager_of_a_full_pool_is_asked_and_any_of_them_assigns(app_factory, db, fake_slack):
    fake_slack.add_user("U0MGR2", "mgr2@example.com")
    defn = definition_with(
        [{"round_robin": ["rep1@example.com", "rep2@example.com"], "daily_cap": 1}],
        managers={"rep1@example.com": "mgr@example.com", "rep2@example.com": "mgr2@example.com"},
    )
    app = app_factory(db, defn=defn)
    app.post_leads([lead("crm-1"), lead("crm-2"), lead("crm-3", company="Globex")])
    app.drain()
    [first] = [c for c in dms_to(fake_slack, "U0MGR") if "Globex" in c.args["text"]]
    [second] = [c for c in dms_to(fake_slack, "U0MGR2") if "Globex" in c.args["text"]]
    held = handoffs(db)[-1]
    assert held.owner_email == "mgr@example.com"
    # The second manager (not the held lead's owner) may open its story; a stranger not.
    story = app.slack(slash_command(user_id="U0MGR2", text="lead crm-3")).text
    assert story.startswith("```Lead crm-3: Globex"), story
    hidden = app.slack(slash_command(user_id="U0STRANGER", text="lead crm-3")).text
    assert "Globex" not in hidden
    # The second manager assigns it; a stranger may not.
    app.slack(block_actions(user_id="U0STRANGER", action_id=REASSIGN, value=str(held.id)))
    [refused] = fake_slack.wait_for("chat.postEphemeral")
    assert refused.args["text"].startswith("Only ")
    app.slack(block_actions(user_id="U0MGR2", action_id=REASSIGN, value=str(held.id)))
    fake_slack.wait_for("views.open")
    app.slack(
        view_submission(
            user_id="U0MGR2",
            callback_id=REASSIGN_VIEW,
            private_metadata=str(held.id),
            values={"assignee": {"assignee": {"type": "users_select", "selected_user": "U0REP1"}}},
        )
    )
    wait_until(lambda: len(handoffs(db)) == 4)
    assigned = handoffs(db)[-1]
    assert (assigned.owner_email, assigned.previous_id) == ("rep1@example.com", held.id)
    assert second.args["channel"] == "U0MGR2" and first.args["channel"] == "U0MGR"
