"""The outbox worker running in the background against the fake Slack: pacing
from Slack's answer, batched claims and records, stop and restart, two workers
on one SQLite file, the kept-alive Slack client and the directory cache."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from slack_sdk.errors import SlackApiError
from sqlalchemy import func, select

from bot import clock
from bot.cli import main
from bot.delivery import MAX_ATTEMPTS, ChannelPacer, Retry, sender
from bot.send_failures import slack_retry_after
from bot.slack import KeepAliveWebClient, make_client
from store import outbox
from store.models import Handoff, Outbox, OutboxStatus, SlackUser
from tests.conftest import BOT_TOKEN, DATA, lead, run_together

POST = "chat.postMessage"


def owners(fake_slack, n: int, prefix: str = "owner") -> list[str]:
    """n reps Slack knows, each with a DM of their own (so pacing does not apply)."""
    emails = [f"{prefix}{i}@example.com" for i in range(n)]
    for i, email in enumerate(emails):
        fake_slack.add_user(f"U{prefix.upper()}{i}", email)
    return emails


def outbox_statuses(db) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(Outbox.status)))


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_posts_to_one_rep_are_paced_from_slacks_answer(app_factory, db, fake_slack) -> None:
    fake_slack.rate_limit_per_channel(per_second=1.0, retry_after=1)
    app = app_factory(db, background=True)
    app.post_leads([lead(f"crm-{i}", owner="rep1@example.com") for i in range(3)])
    posts = fake_slack.wait_for(POST, count=3, timeout=10)
    assert fake_slack.rate_limited == 0
    assert [post.args["channel"] for post in posts] == ["U0REP1"] * 3
    gaps = [later.at_perf - earlier.at_perf for earlier, later in pairwise(posts)]
    assert all(gap >= 1.0 for gap in gaps)
    assert all(gap < 1.5 for gap in gaps)  # and not much later than the pace allows
    wait_until(lambda: outbox_statuses(db) == [OutboxStatus.SENT] * 3)
    with db.session() as session:  # waiting for the pace was no attempt
        assert list(session.scalars(select(Outbox.attempts))) == [1, 1, 1]


def test_many_leads_each_dm_once_and_recorded_with_the_handoff(app_factory, db, fake_slack) -> None:
    emails = owners(fake_slack, 60)
    app = app_factory(db, background=True)
    app.post_leads([lead(f"crm-{i}", owner=email) for i, email in enumerate(emails)])
    posts = fake_slack.wait_for(POST, count=60)
    wait_until(lambda: outbox_statuses(db) == [OutboxStatus.SENT] * 60)
    assert sorted(post.args["channel"] for post in posts) == sorted(f"UOWNER{i}" for i in range(60))
    with db.session() as session:
        handoffs = session.scalars(select(Handoff)).all()
        assert {(h.channel, h.ts) for h in handoffs} == {
            (post.response["channel"], post.response["ts"]) for post in posts
        }
        assert all(h.owner_user_id for h in handoffs)
        # The directory entries the senders learned were saved with the outcomes.
        assert session.scalar(select(func.count()).select_from(SlackUser)) == 60
        assert set(session.scalars(select(Outbox.attempts))) == {1}  # each claimed once
    assert len(fake_slack.calls_to(POST)) == 60


def test_a_new_leads_card_is_sent_by_the_server_that_took_the_lead(
    app_factory, db, fake_slack
) -> None:
    """Intake leases the card in the transaction that queues it and starts it after
    the commit: another worker polling the same database never sees it unclaimed."""
    emails = owners(fake_slack, 20)
    taker, other = app_factory(db, background=True), app_factory(db)
    taken_by_other = []
    polling = threading.Event()
    polling.set()

    def poll() -> None:
        while polling.is_set():
            taken_by_other.append(other.services.delivery.run_once())

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        for i, email in enumerate(emails):
            assert taker.post_leads(lead(f"crm-{i}", owner=email)).status_code == 202
        fake_slack.wait_for(POST, count=20)
        wait_until(lambda: outbox_statuses(db) == [OutboxStatus.SENT] * 20)
    finally:
        polling.clear()
        poller.join()
    assert len(taken_by_other) > 20 and sum(taken_by_other) == 0
    assert len(fake_slack.calls_to(POST)) == 20


@sender("test_instant")
def _instant(services, item) -> dict[str, Any]:
    return {"done": item.payload["n"]}


def test_rows_started_at_once_are_each_sent_and_recorded_once(app_factory, db) -> None:
    """Sends that finish before send_now has returned (a deadlock, once)."""
    app = app_factory(db, background=True)
    now = clock.now()
    with db.transaction() as session:  # queued and leased together: the loop never sees them
        outbox.enqueue_many(
            session,
            [
                {
                    "kind": "test_instant",
                    "payload": {"n": n},
                    "dedupe_key": f"instant:{n}",
                    "handoff_id": None,
                }
                for n in range(300)
            ],
            now=now,
        )
        leased = outbox.claim_due(session, now=now, lease=timedelta(minutes=1), limit=300)
    app.services.delivery.send_now(leased)
    wait_until(lambda: outbox_statuses(db) == [OutboxStatus.SENT] * 300)
    with db.session() as session:
        assert set(session.scalars(select(Outbox.attempts))) == {1}
        assert sorted(r["done"] for r in session.scalars(select(Outbox.result))) == list(range(300))


def test_rows_handed_to_a_worker_that_is_not_running_go_back_to_the_outbox(
    app, db, fake_slack
) -> None:
    app.post_leads(lead("crm-1"))
    with db.transaction() as session:
        leased = outbox.claim_due(session, now=clock.now(), lease=timedelta(minutes=1), limit=5)
    app.services.delivery.send_now(leased)  # this app's worker never started
    with db.session() as session:
        row = session.scalars(select(Outbox)).one()
    assert (row.status, row.attempts, row.lease_until) == (OutboxStatus.PENDING, 0, None)
    assert fake_slack.calls_to(POST) == []
    app.drain()
    assert len(fake_slack.successful(POST)) == 1


_tries: dict[int, int] = {}


@sender("test_not_yet")
def _not_yet_then_done(services, item) -> dict[str, Any]:
    """Retry at once the first time, succeed the second."""
    _tries[item.id] = _tries.get(item.id, 0) + 1
    if _tries[item.id] == 1:
        raise Retry(timedelta(0), "not yet")
    return {"tries": _tries[item.id]}


def test_a_row_due_again_at_once_is_sent_at_once(app_factory, db) -> None:
    """Its retry is recorded in the same transaction that claims again: it must be
    claimed and sent, not left leased."""
    app = app_factory(db, background=True)
    with db.transaction() as session:
        outbox.enqueue(
            session, kind="test_not_yet", payload={}, dedupe_key="not-yet", now=clock.now()
        )
    app.services.delivery.wake()
    wait_until(lambda: outbox_statuses(db) == [OutboxStatus.SENT], timeout=5)
    with db.session() as session:
        assert session.scalars(select(Outbox.result)).one() == {"tries": 2}


def test_stop_mid_batch_then_restart_sends_each_exactly_once(app_factory, db, fake_slack) -> None:
    emails = owners(fake_slack, 100)
    first = app_factory(db, background=True)
    first.post_leads([lead(f"crm-{i}", owner=email) for i, email in enumerate(emails)])
    first.server.stop()  # some sent, some in flight, most not started
    sent_before = len(fake_slack.successful(POST))
    with db.session() as session:
        rows = session.scalars(select(Outbox)).all()
    # Everything Slack answered was recorded; nothing is left leased.
    assert sum(row.status == OutboxStatus.SENT for row in rows) == sent_before
    assert all(row.lease_until is None for row in rows)
    assert all(row.attempts == 0 for row in rows if row.status == OutboxStatus.PENDING)
    second = app_factory(db)
    second.drain()
    channels = [post.args["channel"] for post in fake_slack.successful(POST)]
    assert sorted(channels) == sorted(f"UOWNER{i}" for i in range(100))
    assert outbox_statuses(db) == [OutboxStatus.SENT] * 100


def test_two_workers_on_one_sqlite_file_send_each_once(app_factory, db, fake_slack) -> None:
    emails = owners(fake_slack, 40)
    first, second = app_factory(db), app_factory(db)
    first.post_leads([lead(f"crm-{i}", owner=email) for i, email in enumerate(emails)])
    run_together(first.drain, second.drain)
    assert len(fake_slack.calls_to(POST)) == 40
    assert len({post.args["channel"] for post in fake_slack.calls_to(POST)}) == 40
    assert outbox_statuses(db) == [OutboxStatus.SENT] * 40


def test_a_send_outlasting_its_lease_keeps_it_and_is_not_sent_twice(
    app_factory, db, fake_slack
) -> None:
    """Slack answers 429 twice; the client sleeps Retry-After (1-2 s) each time, past
    the 2 s lease. The worker renews the lease while it sends, so a second worker
    polling the same database never takes the row."""
    fake_slack.fail_next(POST, status=429, retry_after=1, times=2)
    sender = app_factory(db, background=True)
    sender.services.delivery.lease = timedelta(seconds=2)
    other = app_factory(db)
    sender.post_leads(lead("crm-1"))
    seen = set()
    deadline = time.monotonic() + 10
    while not fake_slack.successful(POST) and time.monotonic() < deadline:
        other.drain()
        with db.session() as session:
            row = session.scalars(select(Outbox)).one()
        seen.add((row.attempts, row.lease_until))
        time.sleep(0.02)
    wait_until(lambda: outbox_statuses(db) == [OutboxStatus.SENT])
    other.drain()
    assert len(fake_slack.successful(POST)) == 1
    assert [call.status for call in fake_slack.calls_to(POST)] == [429, 429, 200]
    assert {attempts for attempts, _ in seen} == {1}  # claimed once
    assert len({lease for _, lease in seen if lease}) >= 2  # and the lease was renewed


def test_an_owner_is_looked_up_once_and_remembered_across_restarts(
    app_factory, db, fake_slack
) -> None:
    first = app_factory(db)
    first.post_leads([lead("crm-1", owner="rep2@example.com")])
    first.drain()
    first.post_leads([lead("crm-2", owner="rep2@example.com")])
    with freeze_time(clock.now() + timedelta(seconds=2)):  # past rep2's pace
        first.drain()
    first.server.stop()
    second = app_factory(db)
    second.post_leads([lead("crm-3", owner="rep2@example.com")])
    second.drain()
    assert len(fake_slack.successful(POST)) == 3
    assert len(fake_slack.calls_to("users.lookupByEmail")) == 1


def test_the_client_keeps_its_connection_and_reconnects_when_slack_hangs_up(fake_slack) -> None:
    client = make_client(BOT_TOKEN, fake_slack.url)
    for _ in range(3):
        client.chat_postMessage(channel="C1", text="hi")
    assert len({call.peer for call in fake_slack.calls_to(POST)}) == 1
    fake_slack._server.close_connections()  # as a server closing idle connections does
    time.sleep(0.05)
    assert client.chat_postMessage(channel="C1", text="again")["ok"]
    assert len({call.peer for call in fake_slack.calls_to(POST)}) == 2


def test_the_client_reports_http_errors_as_slack_sdk_does(fake_slack) -> None:
    client = KeepAliveWebClient(token=BOT_TOKEN, base_url=fake_slack.url, retry_handlers=[])
    fake_slack.fail_next(POST, status=429, retry_after=7)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert slack_retry_after(err.value) == timedelta(seconds=7)
    fake_slack.set_outage(True)
    with pytest.raises(SlackApiError) as err:
        client.auth_test()
    assert err.value.response.status_code == 503
    assert err.value.response["error"] == "service_unavailable"
    fake_slack.set_outage(False)
    with pytest.raises(SlackApiError) as err:
        client.users_lookupByEmail(email="nobody@example.com")
    assert err.value.response["error"] == "users_not_found"
    assert client.auth_test()["user_id"] == "UBOT"


def test_pacer_holds_a_channel_while_posting_and_for_the_interval_after() -> None:
    pacer = ChannelPacer(timedelta(seconds=1))
    with pacer.slot("U1"):
        with pytest.raises(Retry), pacer.slot("U1"):
            pass
        with pacer.slot("U2"):  # other channels are not held
            pass
    with pytest.raises(Retry) as retry, pacer.slot("U1"):
        pass
    assert timedelta(seconds=0.5) < retry.value.after <= timedelta(seconds=1)
    pacer.back_off("U2", clock.now() + timedelta(seconds=30))  # Slack said 429
    with pytest.raises(Retry) as retry, pacer.slot("U2"):
        pass
    assert retry.value.after > timedelta(seconds=29)


@pytest.mark.parametrize(
    "error",
    ["fatal_error", "internal_error", "request_timeout", "service_unavailable", "invalid_auth"],
)
def test_slack_failing_for_a_while_never_costs_a_card(app, db, fake_slack, error) -> None:
    """Errors about Slack (or the app's token), not the message: the card waits for
    them to pass, past any attempt budget, and goes out once."""
    app.post_leads(lead("crm-1"))
    fake_slack.fail_next(POST, status=200, error=error, times=MAX_ATTEMPTS + 2)
    with freeze_time(clock.now()) as frozen:
        for _ in range(MAX_ATTEMPTS + 3):
            app.drain()
            frozen.tick(timedelta(minutes=15))
    assert [call.response.get("error") for call in fake_slack.calls_to(POST)] == [error] * (
        MAX_ATTEMPTS + 2
    ) + [None]
    with db.session() as session:
        row = session.scalars(select(Outbox)).one()
    assert (row.status, row.attempts) == (OutboxStatus.SENT, MAX_ATTEMPTS + 3)


def test_a_card_slack_refuses_for_good_fails_at_once_visibly(
    app, db, fake_slack, caplog, monkeypatch
) -> None:
    """A rep whose account is gone: one attempt, one ERROR line naming the lead, a
    failed row that is counted and that `handoff lead` explains; the other rep's
    card is not held up."""
    fake_slack.refuse_posts("U0REP1", "account_inactive")
    app.post_leads(
        [lead("crm-1", owner="rep1@example.com"), lead("crm-2", owner="rep2@example.com")]
    )
    app.drain()
    app.drain()
    assert [call.args["channel"] for call in fake_slack.successful(POST)] == ["U0REP2"]
    assert len(fake_slack.calls_to(POST)) == 2  # the refused card was tried once
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "crm-1" in errors[0] and "account_inactive" in errors[0]
    with db.session() as session:
        assert outbox.stats(session).failed == 1
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    story = CliRunner().invoke(main, ["lead", "crm-1"], catch_exceptions=False)
    assert story.exit_code == 0
    assert (
        "NOT DELIVERED after 1 attempt(s): Slack refused it (account_inactive): "
        "the account is deactivated"
    ) in story.output


def test_a_deactivated_rep_gets_no_card_the_pool_does(app, db, fake_slack) -> None:
    """Slack still finds a deactivated account by email and takes a DM to it without an
    error; nobody would read it. The card goes to the pool instead, and says so."""
    fake_slack.add_user("U0GONE", "gone@example.com", deleted=True)
    app.post_leads(lead("crm-gone", owner="gone@example.com"))
    app.drain()
    [card] = fake_slack.successful(POST)
    assert card.args["channel"] in ("U0REP1", "U0REP2")
    with db.session() as session:
        handoff = session.scalars(select(Handoff)).one()
    assert handoff.owner_user_id == card.args["channel"]
    assert "gone@example.com not found in Slack" in handoff.routed_by
