"""Accept, reject, reassign: signed block_actions and view_submission payloads sent to
the running app, checked against what the fake Slack received and what the database holds."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import AFTER_ACK_THREADS
from bot.blocks.card import ACCEPT, COMMERCIAL, COMMERCIAL_BLOCK, REASSIGN, REJECT
from bot.blocks.modals import REASSIGN_VIEW, REJECT_VIEW
from bot.sla import deadline
from store.models import Audit, Handoff, Lead, SlaTimer
from tests.conftest import lead, run_together
from tests.slackreq import block_actions, view_submission


def rows(db, model) -> list[Any]:
    with db.session() as session:
        return list(session.scalars(select(model).order_by(model.id)).all())


def wait_until(predicate, timeout: float = 5.0) -> None:
    """Work after the ack runs on Bolt's listener thread; wait for its effect."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def handed_off(app, db, fake_slack) -> Handoff:
    """One lead handed off to rep1 (U0REP1), its card posted."""
    app.post_leads(lead("crm-1"))
    app.drain()
    [handoff] = rows(db, Handoff)
    assert handoff.ts is not None
    return handoff


def click(app, user_id: str, action_id: str, handoff_id: int, **extra: Any):
    response = app.slack(
        block_actions(user_id=user_id, action_id=action_id, value=str(handoff_id), **extra)
    )
    assert response.status_code == 200
    return response


def status_of(db, handoff_id: int) -> str:
    with db.session() as session:
        return session.get(Handoff, handoff_id).status


def test_accept_updates_the_card_and_stores_the_checklist(app, db, fake_slack, handed_off):
    ticked = {
        COMMERCIAL_BLOCK: {
            COMMERCIAL: {
                "type": "checkboxes",
                "selected_options": [
                    {"value": "budget", "text": {"type": "plain_text", "text": "Budget confirmed"}}
                ],
            }
        }
    }
    click(app, "U0REP1", ACCEPT, handed_off.id, state=ticked)
    wait_until(lambda: status_of(db, handed_off.id) == "accepted")
    [handoff] = rows(db, Handoff)
    assert (handoff.decided_by, handoff.commercial) == ("U0REP1", ["budget"])
    assert handoff.business_seconds is not None and handoff.breached is False
    assert rows(db, Lead)[0].status == "accepted"
    assert {t.status for t in rows(db, SlaTimer)} == {"cancelled"}
    assert "accepted" in [a.action for a in rows(db, Audit)]
    app.drain()
    [update] = fake_slack.calls_to("chat.update")
    assert (update.args["channel"], update.args["ts"]) == (handoff.channel, handoff.ts)
    dump = json.dumps(update.args["blocks"])
    assert "Accepted" in dump and "<@U0REP1>" in dump and "Confirmed: Budget confirmed" in dump
    assert "handoff_accept" not in dump  # buttons gone


def test_a_stranger_is_told_who_can_act_and_nothing_changes(app, db, fake_slack, handed_off):
    click(app, "U0STRANGER", ACCEPT, handed_off.id)
    [ephemeral] = fake_slack.wait_for("chat.postEphemeral")
    assert ephemeral.args["user"] == "U0STRANGER"
    # The manager is named by a Slack mention: a stranger never sees their email.
    assert ephemeral.args["text"] == (
        "Only <@U0REP1> or their manager (<@U0MGR>) can decide on this lead."
    )
    assert status_of(db, handed_off.id) == "open"


def test_the_manager_may_decide(app, db, fake_slack, handed_off):
    click(app, "U0MGR", ACCEPT, handed_off.id)
    wait_until(lambda: status_of(db, handed_off.id) == "accepted")
    assert rows(db, Handoff)[0].decided_by == "U0MGR"


def finish_acked_work(app) -> None:
    """Stop the app, which first finishes the work its listeners left after their acks:
    after this, whatever those clicks would post has been posted."""
    app.server.stop()


def test_double_click_gives_one_decision_and_says_so(app, db, fake_slack, handed_off):
    click(app, "U0REP1", ACCEPT, handed_off.id)
    click(app, "U0REP1", ACCEPT, handed_off.id)
    click(app, "U0MGR", ACCEPT, handed_off.id)
    # The manager learns who was first; the rep's own repeat needs no answer (the card
    # shows their decision).
    [ephemeral] = fake_slack.wait_for("chat.postEphemeral")
    assert ephemeral.args["user"] == "U0MGR"
    assert ephemeral.args["text"].startswith("This lead was already accepted by <@U0REP1>, ")
    assert [a.action for a in rows(db, Audit)].count("accepted") == 1
    app.drain()
    assert len(fake_slack.calls_to("chat.update")) == 1
    finish_acked_work(app)
    assert len(fake_slack.calls_to("chat.postEphemeral")) == 1


def press_together(barrier: threading.Barrier, app, user_id: str, handoff_id: int) -> None:
    barrier.wait()
    click(app, user_id, ACCEPT, handoff_id)


def test_owner_and_manager_racing_from_two_threads(app, db, fake_slack, handed_off):
    # The manager's email is cached first, as after any earlier click of theirs.
    app.services.directory.by_user_id("U0MGR")
    for _ in range(5):
        barrier = threading.Barrier(2)
        run_together(
            *[
                lambda user=user, barrier=barrier: press_together(barrier, app, user, handed_off.id)
                for user in ("U0REP1", "U0MGR")
            ]
        )
    # Each click of the one who lost is told who won; the winner's repeats are not.
    told = fake_slack.wait_for("chat.postEphemeral", count=5)
    decided = [a for a in rows(db, Audit) if a.action == "accepted"]
    assert len(decided) == 1
    winner = rows(db, Handoff)[0].decided_by
    assert winner in ("U0REP1", "U0MGR")
    finish_acked_work(app)
    assert len(fake_slack.calls_to("chat.postEphemeral")) == 5
    assert {call.args["user"] for call in told} == {"U0REP1", "U0MGR"} - {winner}


class WriteLock:
    """Another writer holding SQLite's write lock: decisions wait for it, reads do not."""

    def __init__(self, db_url: str) -> None:
        self.connection = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)

    def __enter__(self) -> WriteLock:
        self.connection.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.execute("ROLLBACK")
        self.connection.close()


def test_clicks_are_acked_while_the_decision_waits(app, db, db_url, fake_slack, handed_off):
    # More clicks than there are threads for the work after the ack, each answered at
    # once although none of them can write yet.
    with WriteLock(db_url):
        for _ in range(AFTER_ACK_THREADS + 3):
            start = time.monotonic()
            click(app, "U0REP1", ACCEPT, handed_off.id)
            assert time.monotonic() - start < 2.0
        assert status_of(db, handed_off.id) == "open"
    wait_until(lambda: status_of(db, handed_off.id) == "accepted", timeout=30)
    finish_acked_work(app)
    assert [a.action for a in rows(db, Audit)].count("accepted") == 1
    assert fake_slack.calls_to("chat.postEphemeral") == []  # the rep's own repeats


def test_stopping_the_app_finishes_the_decisions_it_acked(app, db, db_url, handed_off):
    with WriteLock(db_url):
        click(app, "U0REP1", ACCEPT, handed_off.id)
        stopping = threading.Thread(target=app.server.stop)
        stopping.start()
        stopping.join(0.5)
        assert stopping.is_alive()  # waiting for the decision
    stopping.join(10)
    assert not stopping.is_alive()
    assert status_of(db, handed_off.id) == "accepted"


def test_a_click_on_a_lead_that_no_longer_exists(app, db, fake_slack, handed_off):
    click(app, "U0REP1", ACCEPT, 99999)
    [ephemeral] = fake_slack.wait_for("chat.postEphemeral")
    assert "no longer in Handoff" in ephemeral.args["text"]
    assert status_of(db, handed_off.id) == "open"


def reject_values(reason: str | None, note: str | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {"note": {"note": {"type": "plain_text_input", "value": note}}}
    if reason:
        values["reason"] = {
            "reason": {"type": "static_select", "selected_option": {"value": reason}}
        }
    return values


def submit_reject(app, user_id: str, handoff_id: int, reason: str | None, note: str | None = None):
    return app.slack(
        view_submission(
            user_id=user_id,
            callback_id=REJECT_VIEW,
            private_metadata=str(handoff_id),
            values=reject_values(reason, note),
        )
    )


def test_reject_opens_a_modal_of_reasons_grouped_by_what_they_point_at(app, fake_slack, handed_off):
    click(app, "U0REP1", REJECT, handed_off.id, trigger_id="trig-1")
    [opened] = fake_slack.wait_for("views.open")
    assert opened.args["trigger_id"] == "trig-1"
    view = opened.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == REJECT_VIEW and view["private_metadata"] == str(handed_off.id)
    select_element = view["blocks"][1]["element"]
    groups = {
        g["label"]["text"]: [o["value"] for o in g["options"]]
        for g in select_element["option_groups"]
    }
    assert groups == {
        "Fit: the account": ["too_small", "wrong_region"],
        "Commercial: the deal": ["no_budget", "bad_timing"],
        "Other": ["other"],
    }
    first = select_element["option_groups"][0]["options"][0]["text"]["text"]
    assert first == "Company too small → disqualified"


def test_reject_with_a_reason_disqualifies_and_updates_the_card(app, db, fake_slack, handed_off):
    response = submit_reject(app, "U0REP1", handed_off.id, "too_small", "Only 12 staff")
    assert response.status_code == 200 and response.text == ""
    wait_until(lambda: status_of(db, handed_off.id) == "rejected")  # written after the ack
    [handoff] = rows(db, Handoff)
    assert (handoff.status, handoff.reason_id, handoff.note, handoff.action) == (
        "rejected",
        "too_small",
        "Only 12 staff",
        "disqualify",
    )
    assert rows(db, Lead)[0].status == "disqualified"
    app.drain()
    [update] = fake_slack.calls_to("chat.update")
    dump = json.dumps(update.args["blocks"])
    assert "Rejected" in dump and "Company too small" in dump and "disqualified" in dump


def test_recycled_rejection_goes_back_to_nurture(app, db, handed_off):
    submit_reject(app, "U0REP1", handed_off.id, "bad_timing")
    wait_until(lambda: rows(db, Lead)[0].status == "nurture")


def test_reject_without_a_required_note_is_answered_in_the_modal(app, db, handed_off):
    response = submit_reject(app, "U0REP1", handed_off.id, "other", "  ")
    assert response.json() == {
        "response_action": "errors",
        "errors": {"note": "“Other” needs a note for marketing."},
    }
    assert status_of(db, handed_off.id) == "open"
    response = submit_reject(app, "U0REP1", handed_off.id, None)
    assert response.json()["errors"] == {"reason": "Pick the reason that fits best."}


def test_reject_after_accept_is_answered_in_the_modal(app, db, handed_off):
    click(app, "U0REP1", ACCEPT, handed_off.id)
    wait_until(lambda: status_of(db, handed_off.id) == "accepted")
    response = submit_reject(app, "U0MGR", handed_off.id, "too_small")
    assert response.json()["errors"]["reason"].startswith("This lead was already accepted by")
    assert status_of(db, handed_off.id) == "accepted"


def test_manager_reassigns_and_the_clock_restarts(app, db, fake_slack, handed_off):
    click(app, "U0MGR", REASSIGN, handed_off.id, trigger_id="trig-2")
    [opened] = fake_slack.wait_for("views.open")
    view = opened.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == REASSIGN_VIEW
    response = app.slack(
        view_submission(
            user_id="U0MGR",
            callback_id=REASSIGN_VIEW,
            private_metadata=str(handed_off.id),
            values={"assignee": {"assignee": {"type": "users_select", "selected_user": "U0REP2"}}},
        )
    )
    assert response.text == ""
    wait_until(lambda: len(rows(db, Handoff)) == 2)  # written after the ack
    old, new = rows(db, Handoff)
    assert (old.status, old.decided_by) == ("reassigned", "U0MGR")
    assert (new.status, new.owner_email, new.previous_id) == ("open", "rep2@example.com", old.id)
    assert new.assigned_at > old.assigned_at
    assert new.due_at == deadline(app.services.definition, new.assigned_at)
    timers = rows(db, SlaTimer)
    assert {t.status for t in timers if t.handoff_id == old.id} == {"cancelled"}
    assert {t.status for t in timers if t.handoff_id == new.id} == {"pending"}
    app.drain()
    posts = fake_slack.calls_to("chat.postMessage")
    assert [p.args["channel"] for p in posts] == ["U0REP1", "U0REP2"]
    [update] = fake_slack.calls_to("chat.update")
    assert "Reassigned" in json.dumps(update.args["blocks"])
    assert "<@U0REP2>" in json.dumps(update.args["blocks"])
    assert "reassigned" in [a.action for a in rows(db, Audit)]


def test_reassign_to_the_current_owner_is_refused_in_the_modal(app, db, handed_off):
    response = app.slack(
        view_submission(
            user_id="U0MGR",
            callback_id=REASSIGN_VIEW,
            private_metadata=str(handed_off.id),
            values={"assignee": {"assignee": {"type": "users_select", "selected_user": "U0REP1"}}},
        )
    )
    assert response.json()["errors"] == {"assignee": "<@U0REP1> already owns this lead."}
    assert status_of(db, handed_off.id) == "open"


def test_forged_interactive_request_is_refused(app, db, handed_off):
    body = block_actions(user_id="U0REP1", action_id=ACCEPT, value=str(handed_off.id))
    response = app.slack(body, secret="not-the-signing-secret")
    assert response.status_code == 401
    time.sleep(0.2)
    assert status_of(db, handed_off.id) == "open"
