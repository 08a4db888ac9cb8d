"""Delivery under faults, counted in DMs: a Slack outage longer than any retry budget,
and a SIGKILL in the middle of delivery. Nothing lost; nothing doubled beyond what
the README promises."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from freezegun import freeze_time
from sqlalchemy import func, select, text

from bot import clock
from bot.delivery import LEASE, MAX_ATTEMPTS, PROBE_EVERY, THREADS, WINDOW
from bot.history import lead_story, render_story
from store import outbox
from store.db import Database
from store.models import Outbox, OutboxStatus
from tests.conftest import (
    BOT_TOKEN,
    DATA,
    INTAKE_SECRET,
    SIGNING_SECRET,
    intake_headers,
    lead,
)
from tests.test_writeback import WEBHOOK_SECRET, WEBHOOK_URL, Upstream, accept, outbox_rows, start

POST = "chat.postMessage"
# A Saturday in Sydney: hours pass without business time, so no SLA reminder joins
# the cards being counted.
SATURDAY = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)


def wait_until(condition, timeout: float, what: str, state=lambda: "") -> None:
    """Poll `condition` until it holds; on timeout fail with `what` and `state()`."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what} {state()}"
        time.sleep(0.05)


def company(lead_id: str) -> str:
    """A company name no other lead's name contains, to find the lead's cards by."""
    return f"{lead_id}-co"


def cards_per_lead(fake_slack, lead_ids: list[str]) -> Counter[str]:
    """How many cards Slack accepted for each lead."""
    texts = [post.args.get("text") or "" for post in fake_slack.successful(POST)]
    return Counter({i: sum(company(i) in text for text in texts) for i in lead_ids})


def failed_sends(db) -> tuple[int, int]:
    """Sends recorded as made (while none can succeed), and rows out on a claim:
    `attempts` counts real sends, and a claim one more until its outcome is in."""
    with db.session() as session:
        attempts, leased = session.execute(
            select(func.sum(Outbox.attempts), func.count(Outbox.lease_until))
        ).one()
    return (attempts or 0) - leased, leased


def settled(sends: tuple[int, int], at_least: int) -> bool:
    failed, leased = sends
    return failed >= at_least and leased == 0


def statuses(db) -> Counter[str]:
    with db.session() as session:
        return Counter(session.scalars(select(Outbox.status)))


def test_an_outage_of_hours_ends_with_every_card_delivered_once(
    app_factory, db, fake_slack, caplog
) -> None:
    """60 leads over six reps and 20 for a seventh, then Slack answers 500
    internal_error for three hours (far past the old budget of 12 attempts). When
    it is back every card goes out once, promptly, and the one card for a rep who
    left Slack is a visible, counted failure."""
    reps = [f"rep{i}@example.org" for i in range(7)]
    for i, email in enumerate(reps):
        fake_slack.add_user(f"UREP{i}", email)
    fake_slack.add_user("UGONE", "gone@example.org")
    fake_slack.refuse_posts("UGONE", "user_disabled")
    ids = [f"lead{i:02d}" for i in range(60)] + [f"busy{i:02d}" for i in range(20)]
    owners = [reps[i % 6] for i in range(60)] + [reps[6]] * 20
    with freeze_time(SATURDAY, tick=True) as frozen:
        leads = [
            lead(lead_id, owner=owner, company=company(lead_id))
            for lead_id, owner in zip(ids, owners, strict=True)
        ]
        leads.append(lead("gone", owner="gone@example.org", company=company("gone")))
        app = app_factory(db, background=True)
        fake_slack.set_outage(True, status=500, error="internal_error")
        assert app.post_leads(leads).status_code == 202

        # The first sends (one per sender thread) find Slack down; the rest wait. The
        # clock moves on only with nothing out on a claim (a lease must not run out in
        # a jump), and each hour the queue's probe fails once more.
        wait_until(lambda: settled(failed_sends(db), THREADS), 30, "the first sends to fail")
        for _ in range(3):  # three hours of outage, an hour at a time
            failed, _ = failed_sends(db)
            frozen.tick(timedelta(hours=1))
            wait_until(lambda f=failed: settled(failed_sends(db), f + 1), 30, "a probe to fail")
        assert statuses(db) == {OutboxStatus.PENDING: 81}  # nothing given up on

        fake_slack.set_outage(False)
        back = clock.now()
        wait_until(
            lambda: statuses(db)[OutboxStatus.PENDING] == 0,
            90,
            "the outbox to empty",
            state=lambda: dict(statuses(db)),
        )
        delivered_in = clock.now() - back

    assert cards_per_lead(fake_slack, ids) == Counter({lead_id: 1 for lead_id in ids})
    assert statuses(db) == {OutboxStatus.SENT: 80, OutboxStatus.FAILED: 1}
    # Queued cards waited for Slack instead of each failing against it.
    failed_calls = [call for call in fake_slack.calls if call.status == 500]
    assert len(failed_calls) < len(leads)
    # The twenty for one rep are paced a second apart; the rest go in parallel.
    assert delivered_in < PROBE_EVERY + timedelta(seconds=40)

    # The card that cannot be delivered: counted, logged once at ERROR, and readable.
    with db.session() as session:
        assert outbox.stats(session).failed == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    gone_lines = [line for line in errors if "gone" in line]
    assert len(gone_lines) == 1
    assert "user_disabled" in gone_lines[0] and "deactivated" in gone_lines[0]
    story = lead_story(db, "gone")
    assert story is not None
    line = next(x for x in render_story(*story).splitlines() if "NOT DELIVERED" in x)
    assert "user_disabled" in line and "deactivated" in line


def test_a_webhook_down_for_hours_gets_the_decision_once_it_is_back(
    app_factory, db, fake_slack
) -> None:
    """The CRM's side fails the same way: a 5xx for longer than any attempt budget
    keeps the decision queued, and it goes once the webhook answers again."""
    down = [httpx.Response(503) for _ in range(MAX_ATTEMPTS + 3)]
    upstream = Upstream(*down)
    app = start(
        app_factory,
        db,
        upstream,
        handoff_webhook_url=WEBHOOK_URL,
        handoff_webhook_secret=WEBHOOK_SECRET,
    )
    accept(app, db)
    with freeze_time(clock.now()) as frozen:
        for _ in range(len(down) + 1):  # four hours, a try every 15 minutes
            app.drain()
            frozen.tick(timedelta(minutes=15))
    [row] = outbox_rows(db, "webhook")
    assert (row.status, row.attempts) == (OutboxStatus.SENT, len(down) + 1)
    assert len(upstream.requests) == len(down) + 1


class HandoffProcess:
    """`handoff run` as an operator starts it: its own process, the environment only."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.log = log
        handoff = Path(sys.executable).with_name("handoff")  # the console script beside python
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(handoff), "run", "--host", "127.0.0.1"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, 60, "handoff run to answer /healthz", state=self._output)

    def _ready(self) -> bool:
        assert self.process.poll() is None, f"handoff run exited: {self._output()}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def _output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def post_leads(self, leads: list[dict]) -> httpx.Response:
        body = json.dumps(leads).encode()
        return httpx.post(
            f"{self.url}/leads", content=body, headers=intake_headers(body), timeout=30
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sigkill_mid_delivery_loses_nothing_and_repeats_at_most_the_window(
    tmp_path, fake_slack
) -> None:
    """`handoff run` sends 40 cards to 40 reps through a slow Slack while the database
    is write-locked by another process (the moment the window is widest: no outcome
    can be recorded), and is killed with SIGKILL after the first DMs. A restart
    sends the rest once the dead process's leases run out: every lead gets its card,
    and at most WINDOW of them twice (README, Operations: Delivery)."""
    path = tmp_path / "handoff.db"
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "HANDOFF_INTAKE_SECRET": INTAKE_SECRET,
        "SLACK_API_URL": fake_slack.url,
        "DATABASE_URL": f"sqlite:///{path}",
        "HANDOFF_DEFINITION": str(DATA / "definition.yml"),
        "LOG_LEVEL": "WARNING",
    }
    ids = [f"kill{i:02d}" for i in range(40)]
    for i in range(40):
        fake_slack.add_user(f"UKILL{i}", f"kill{i}@example.org")
    leads = [
        lead(lead_id, owner=f"kill{i}@example.org", company=company(lead_id))
        for i, lead_id in enumerate(ids)
    ]
    fake_slack.set_delay(POST, 0.5)
    processes = []
    locker = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        processes.append(HandoffProcess({**env, "PORT": str(free_port())}, tmp_path / "1.log"))
        assert processes[0].post_leads(leads).status_code == 202
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        # Killed once the first DMs are out and none is on its way (a worker without a
        # window keeps sending: it would only get here with everything sent).
        wait_until(
            lambda: len(fake_slack.successful(POST)) >= WINDOW and not fake_slack.in_flight(POST),
            30,
            "the first DMs",
        )
        processes[0].kill()
        locker.execute("ROLLBACK")

        processes.append(HandoffProcess({**env, "PORT": str(free_port())}, tmp_path / "2.log"))
        db = Database(env["DATABASE_URL"])
        try:
            wait_until(
                lambda: statuses(db) == {OutboxStatus.SENT: 40},
                LEASE.total_seconds() + 90,
                "every card to be recorded sent",
                state=lambda: dict(statuses(db)),
            )
        finally:
            db.dispose()
    finally:
        locker.close()
        for process in processes:
            process.stop()

    sent = cards_per_lead(fake_slack, ids)
    assert min(sent.values()) == 1  # none lost
    assert sum(n - 1 for n in sent.values()) <= WINDOW  # the README's promise


def waiting_on_locks(db: Database) -> int:
    """Sessions of this database waiting for a lock (PostgreSQL)."""
    with db.engine.connect() as conn:
        return conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )


def test_a_card_whose_lease_ran_out_while_it_waited_is_left_to_the_worker_that_took_it(
    app_factory, pg_url, fake_slack
) -> None:
    """The database stalls (here: a table lock) once the first cards are out: their
    outcomes cannot be recorded, so the next cards wait for a place in the window,
    and no lease can be renewed. Another worker takes every row whose lease ran out
    and sends it. The cards the first worker had sent may go twice (at-least-once,
    at most WINDOW); the ones it had not started must not: when the stall ends, it
    leaves them to the other worker."""
    pg = Database(pg_url)
    pg.create_schema()
    ids = [f"stall{i}" for i in range(2 * WINDOW)]
    for i in range(len(ids)):
        fake_slack.add_user(f"USTALL{i}", f"stall{i}@example.org")
    leads = [
        lead(lead_id, owner=f"stall{i}@example.org", company=company(lead_id))
        for i, lead_id in enumerate(ids)
    ]
    fake_slack.set_delay(POST, 1.0)
    try:
        with freeze_time(clock.now(), tick=True) as frozen:
            first = app_factory(pg, background=True)
            first.services.delivery.lease = timedelta(seconds=4)
            other = app_factory(pg)
            other.services.delivery.window = len(ids)  # takes every row it can in one pass
            assert first.post_leads(leads).status_code == 202
            with pg.engine.connect() as stall:
                # The senders' outcomes are recorded with the Slack users they looked up.
                stall.execute(text("LOCK TABLE slack_user IN EXCLUSIVE MODE"))
                wait_until(lambda: len(fake_slack.successful(POST)) >= WINDOW, 30, "first DMs")
                started = {i for i, n in cards_per_lead(fake_slack, ids).items() if n}
                wait_until(lambda: waiting_on_locks(pg) > 0, 30, "the worker to be stuck")
                frozen.tick(timedelta(seconds=5))  # every lease runs out
                taker = threading.Thread(target=other.drain)
                taker.start()
                wait_until(lambda: len(fake_slack.successful(POST)) >= len(ids), 30, "the rest")
                stall.rollback()
            taker.join(30)
            wait_until(
                lambda: statuses(pg) == {OutboxStatus.SENT: len(ids)},
                30,
                "every card recorded sent",
                state=lambda: dict(statuses(pg)),
            )
            first.server.stop()  # whatever the first worker still had, it has done
        sent = cards_per_lead(fake_slack, ids)
        assert set(sent.values()) <= {1, 2}  # none lost
        assert {i for i, n in sent.items() if n == 2} <= started
        assert len(started) <= WINDOW
    finally:
        pg.dispose()
