"""Acks never wait on the database's write lock, and intake cannot take every server
thread: another connection holds SQLite's write lock (BEGIN IMMEDIATE) until the test
lets go, while signed requests go to the running app."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import func, select

from bot.blocks.card import ACCEPT
from bot.blocks.modals import REASSIGN_VIEW, REJECT_VIEW
from bot.server import INTAKE_SLOTS
from store.models import Audit, Handoff, Lead, Outbox, SlackUser, Verdict
from tests.conftest import SIGNING_SECRET, intake_headers, lead
from tests.slackreq import block_actions, sign, slash_command, view_submission

# Slack wants its ack within 3 s; a loaded 2-core machine gets some slack on top. The
# lock is held far longer than this: until the test releases it.
ACK_TIMEOUT = 5.0


class WriteLock:
    """Another writer (another process, a backup, a long import) holding SQLite's write
    lock until `release()`: nothing can commit meanwhile, reads go on (WAL)."""

    def __init__(self, db_url: str) -> None:
        self.connection = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        self.held = False

    def __enter__(self) -> WriteLock:
        self.connection.execute("BEGIN IMMEDIATE")
        self.held = True
        return self

    def release(self) -> None:
        """Commit what the holder wrote and let the waiting writers in."""
        if self.held:
            self.connection.execute("COMMIT")
            self.held = False

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.connection.execute("ROLLBACK")
        self.connection.close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def rows(db, model) -> list[Any]:
    with db.session() as session:
        return list(session.scalars(select(model).order_by(model.id)).all())


def handoff_of(db, external_id: str) -> Handoff:
    with db.session() as session:
        return session.scalars(
            select(Handoff)
            .join(Lead, Lead.id == Handoff.lead_id)
            .where(Lead.external_id == external_id)
            .order_by(Handoff.id)
        ).first()


def status_of(db, handoff_id: int) -> str:
    with db.session() as session:
        return session.get(Handoff, handoff_id).status


@pytest.fixture
def cards(app, db) -> dict[str, Handoff]:
    """Three leads handed off, their cards posted: to rep1, rep2 and the NZ rep."""
    owners = {
        "crm-1": "rep1@example.com",
        "crm-2": "rep2@example.com",
        "crm-3": "nz-rep@example.com",
    }
    response = app.post_leads([lead(lead_id, owner=owner) for lead_id, owner in owners.items()])
    assert [r["outcome"] for r in response.json()["results"]] == ["handed_off"] * 3
    app.drain()
    handoffs = {lead_id: handoff_of(db, lead_id) for lead_id in owners}
    assert all(h.ts is not None for h in handoffs.values())
    return handoffs


def reject_submission(user_id: str, handoff_id: int, reason: str, note: str | None = None) -> str:
    return view_submission(
        user_id=user_id,
        callback_id=REJECT_VIEW,
        private_metadata=str(handoff_id),
        values={
            "reason": {"reason": {"type": "static_select", "selected_option": {"value": reason}}},
            "note": {"note": {"type": "plain_text_input", "value": note}},
        },
    )


def reassign_submission(user_id: str, handoff_id: int, to_user: str) -> str:
    return view_submission(
        user_id=user_id,
        callback_id=REASSIGN_VIEW,
        private_metadata=str(handoff_id),
        values={"assignee": {"assignee": {"type": "users_select", "selected_user": to_user}}},
    )


def signed(body: str) -> dict[str, str]:
    return {**sign(body, SIGNING_SECRET), "Content-Type": "application/x-www-form-urlencoded"}


def nurture_lead(lead_id: str) -> dict[str, Any]:
    """Stored and judged, never handed off (too small): intake's write and nothing else."""
    return lead(lead_id, attributes={"employees": 5, "industry": "Software", "country": "AU"})


class Crm:
    """A CRM posting leads, each request on a connection (and thread) of its own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[str, httpx.Response]] = []
        self.lock = threading.Lock()

    def post(self, payload: dict[str, Any]) -> httpx.Response:
        body = json.dumps(payload).encode()
        with httpx.Client(base_url=self.url, timeout=120) as client:
            response = client.post("/leads", content=body, headers=intake_headers(body))
        with self.lock:
            self.answers.append((payload["id"], response))
        return response

    def statuses(self) -> list[int]:
        with self.lock:
            return [response.status_code for _, response in self.answers]


def test_acks_answer_while_another_writer_holds_the_database(app, db, db_url, fake_slack, cards):
    # Intake waits for the lock as long as the test holds it (by default a batch gives
    # up after 10 s with a 503, which a loaded machine could reach before the acks).
    app.server.router.intake.busy_budget = 300
    crm = Crm(app.url)
    lead_ids = [f"busy-{i}" for i in range(INTAKE_SLOTS + 2)]
    with WriteLock(db_url) as lock:
        posts = [threading.Thread(target=crm.post, args=(nurture_lead(i),)) for i in lead_ids]
        for post in posts:
            post.start()
        # Intake stores at most INTAKE_SLOTS requests at once: those wait for the lock,
        # the rest are answered 503 at once instead of queueing for a server thread.
        wait_until(lambda: crm.statuses().count(503) >= 2, "the requests over intake's bound")
        for _, response in crm.answers:
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert response.json() == {"error": "too many lead requests at once"}

        with httpx.Client(base_url=app.url, timeout=ACK_TIMEOUT) as slack:

            def send(body: str) -> httpx.Response:
                return slack.post("/slack/events", content=body.encode(), headers=signed(body))

            # The manager (not yet in the directory store) rejects the first lead,
            rejected = send(reject_submission("U0MGR", cards["crm-1"].id, "too_small", "12 staff"))
            # the second lead's owner accepts it,
            accepted = send(
                block_actions(user_id="U0REP2", action_id=ACCEPT, value=str(cards["crm-2"].id))
            )
            # and the manager hands the third to rep1.
            reassigned = send(reassign_submission("U0MGR", cards["crm-3"].id, "U0REP1"))
            health = slack.get("/healthz")
        assert (rejected.status_code, rejected.text) == (200, "")
        assert accepted.status_code == 200
        assert (reassigned.status_code, reassigned.text) == (200, "")
        assert health.status_code == 200
        # Acked, not written: the lock is still held.
        assert {status_of(db, h.id) for h in cards.values()} == {"open"}
        assert lock.held
        lock.release()

    wait_until(lambda: status_of(db, cards["crm-1"].id) == "rejected", "the rejection")
    wait_until(lambda: status_of(db, cards["crm-2"].id) == "accepted", "the acceptance")
    wait_until(lambda: status_of(db, cards["crm-3"].id) == "reassigned", "the reassignment")
    rejection = handoff_of(db, "crm-1")
    assert (rejection.decided_by, rejection.reason_id, rejection.note) == (
        "U0MGR",
        "too_small",
        "12 staff",
    )
    successor = rows(db, Handoff)[-1]
    assert (successor.previous_id, successor.owner_user_id) == (cards["crm-3"].id, "U0REP1")
    # The directory learned the manager before the ack and saved them with the decision.
    with db.session() as session:
        assert "U0MGR" in set(session.scalars(select(SlackUser.user_id)))

    app.drain()
    updated = {call.args["ts"] for call in fake_slack.calls_to("chat.update")}
    assert updated == {h.ts for h in cards.values()}
    assert fake_slack.calls_to("chat.postEphemeral") == []  # nobody was told of a failure

    for post in posts:
        post.join(120)
    # What was answered 503 (over the bound, or past the busy budget) the CRM sends
    # again; then every lead is stored and judged exactly once.
    for lead_id, response in list(crm.answers):
        if response.status_code == 503:
            assert crm.post(nurture_lead(lead_id)).status_code == 202
    accepted_202 = [
        result
        for _, response in crm.answers
        if response.status_code == 202
        for result in response.json()["results"]
    ]
    assert sorted(result["id"] for result in accepted_202) == sorted(lead_ids)
    assert {result["outcome"] for result in accepted_202} == {"nurture"}
    stored = [row for row in rows(db, Lead) if row.external_id.startswith("busy-")]
    assert sorted(row.external_id for row in stored) == sorted(lead_ids)
    with db.session() as session:
        verdicts = session.scalar(
            select(func.count())
            .select_from(Verdict)
            .where(Verdict.lead_id.in_([row.id for row in stored]))
        )
    assert verdicts == len(lead_ids)


def test_a_rejection_that_loses_the_race_after_its_ack_is_told_in_a_dm(
    app, db, db_url, fake_slack, cards
):
    handoff = cards["crm-1"]
    with WriteLock(db_url) as lock:
        with httpx.Client(base_url=app.url, timeout=ACK_TIMEOUT) as slack:
            body = reject_submission("U0REP1", handoff.id, "too_small")
            response = slack.post("/slack/events", content=body.encode(), headers=signed(body))
        assert (response.status_code, response.text) == (200, "")  # the modal closes
        # Another process decides first, in the transaction that held the lock.
        decided_at = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")
        lock.connection.execute(
            "UPDATE handoff SET status = 'accepted', decided_by = 'U0MGR', decided_at = ? "
            "WHERE id = ?",
            (decided_at, handoff.id),
        )
        lock.release()

    posts = fake_slack.wait_for("chat.postMessage", count=len(cards) + 1, timeout=30)
    [told] = [post for post in posts if not post.args.get("blocks")]  # the cards have blocks
    assert told.args["text"].startswith("Your rejection of *Acme* did not go through. ")
    assert "already accepted by <@U0MGR>" in told.args["text"]
    assert status_of(db, handoff.id) == "accepted"
    assert "rejected" not in [entry.action for entry in rows(db, Audit)]
    assert [row for row in rows(db, Outbox) if row.kind == "card_update"] == []


def test_a_lead_batch_that_waits_past_its_budget_answers_503_and_stores_nothing(
    app, db, db_url, fake_slack
):
    app.server.router.intake.busy_budget = 1.0  # the default, 10 s, would slow the suite
    crm = Crm(app.url)
    with WriteLock(db_url):
        response = crm.post(lead("late-1"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"error": "database busy, nothing stored"}
    assert rows(db, Lead) == [] and rows(db, Handoff) == []

    again = crm.post(lead("late-1"))  # what a CRM does with a 503
    assert again.status_code == 202
    assert [r["outcome"] for r in again.json()["results"]] == ["handed_off"]
    assert len(rows(db, Handoff)) == 1


def test_slash_command_answers_while_another_writer_holds_the_database(app, db, db_url):
    with WriteLock(db_url), httpx.Client(base_url=app.url, timeout=ACK_TIMEOUT) as slack:
        # A user the directory has never seen: looking them up must not write.
        body = slash_command(user_id="U0STRANGER", text="queue")
        response = slack.post("/slack/events", content=body.encode(), headers=signed(body))
        assert response.status_code == 200
        assert response.text == "Nothing waiting for you."


def test_on_postgresql_a_lead_batch_that_waits_past_its_budget_answers_503(app_factory, pg, pg_url):
    app = app_factory(pg)
    app.server.router.intake.busy_budget = 1.0
    crm = Crm(app.url)
    # Another session holds the leads table against writes (reads go on).
    with psycopg.connect(pg_url) as other, other.transaction():
        other.execute("LOCK TABLE lead IN EXCLUSIVE MODE")
        response = crm.post(lead("late-1"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"error": "database busy, nothing stored"}
    with pg.session() as session:
        assert session.scalar(select(func.count()).select_from(Lead)) == 0

    again = crm.post(lead("late-1"))
    assert again.status_code == 202
    assert [r["outcome"] for r in again.json()["results"]] == ["handed_off"]
