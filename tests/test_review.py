"""Review reminders: when the definition falls due for review, both owners get one DM
each with the evidence since the last review, once, whatever the number of processes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import func, select

from bot.cli import main
from bot.review import send_review_now
from bot.scheduler import REVIEW_JOB, build_scheduler
from store.db import Database
from store.models import Outbox, ReviewRun
from tests.conftest import BOT_TOKEN, DATA, run_together
from tests.test_digest import decide, post

SYDNEY = ZoneInfo("Australia/Sydney")
OWNERS = {"U0MKTLEAD": "mkt-lead@example.com", "U0SALESLEAD": "sales-lead@example.com"}
# tests/data/definition.yml: reviewed_on 2026-11-01, review_every_days 90.
DUE = datetime(2027, 1, 30, tzinfo=SYDNEY)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, db_url):
    """On SQLite and, with HANDOFF_TEST_POSTGRES_URL set, on PostgreSQL: the claim must
    hold against a second process on both."""
    url = db_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    database.create_schema()
    yield database
    database.dispose()


@pytest.fixture
def owners(fake_slack):
    for user_id, email in OWNERS.items():
        fake_slack.add_user(user_id, email)


def run_job(app, at: datetime) -> bool:
    """The scheduler's review job, run directly at `at`."""
    job = build_scheduler(app.services).get_job(REVIEW_JOB)
    with freeze_time(at):
        ran = job.func(*job.args)
        app.drain()
    return ran


def owner_dms(fake_slack) -> list:
    return [c for c in fake_slack.calls_to("chat.postMessage") if c.args["channel"] in OWNERS]


def blocks_text(call) -> str:
    blocks = call.args["blocks"]
    return json.dumps(json.loads(blocks) if isinstance(blocks, str) else blocks, ensure_ascii=False)


@pytest.fixture
def history(app):
    """Before the last review: one lead rejected. Since: 3 handed off, 1 accepted, 2 rejected."""
    app.services.directory.by_user_id("U0MGR")
    before = datetime(2026, 10, 20, 10, tzinfo=SYDNEY)
    [old] = post(app, before, {"id": "old"})
    decide(app, before + timedelta(hours=1), old, "too_small")
    since = datetime(2026, 12, 1, 10, tzinfo=SYDNEY)
    _, a, b, c = post(app, since, {"id": "a"}, {"id": "b"}, {"id": "c"})
    decide(app, since + timedelta(hours=1), a)
    decide(app, since + timedelta(hours=2), b, "too_small")
    decide(app, since + timedelta(hours=3), c, "bad_timing")
    return app


def test_both_owners_get_one_reminder_with_the_evidence(
    history, owners, app_factory, db, fake_slack
):
    assert run_job(history, DUE - timedelta(minutes=1)) is False  # not due yet
    assert owner_dms(fake_slack) == []

    assert run_job(history, DUE + timedelta(hours=9)) is True
    dms = owner_dms(fake_slack)
    assert sorted(dm.args["channel"] for dm in dms) == sorted(OWNERS)
    for dm in dms:
        assert dm.args["text"] == (
            "The lead definition (version 3) is due for review: last reviewed on 2026-11-01, "
            "to be reviewed every 90 days. Since then: Handed off 3 · accepted 1 · "
            "rejected 2 · accept rate 33% (0% the period before)."
        )
        text = blocks_text(dm)
        assert "The lead definition is due for review" in text
        assert "(due 2027-01-30)" in text
        assert "• → 50-5000 employees: 1 (Company too small 1) — e.g. Ana Ruiz (Acme)" in text
        assert "• → Buying within 90 days: 1 (Bad timing 1)" in text
        assert "each needs at least 5 rejections behind it" in text
        assert "Nothing yet: no criterion or threshold has enough evidence." in text

    # Again in this process, and in a second one sharing the database: nothing more.
    other = app_factory(db)
    for app in (history, other):
        assert run_job(app, DUE + timedelta(hours=10)) is False
    assert len(owner_dms(fake_slack)) == 2
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(ReviewRun)) == 1


def test_two_processes_racing_send_once(history, owners, app_factory, db, fake_slack):
    other = app_factory(db)
    at = DUE + timedelta(hours=9)
    job = build_scheduler(history.services).get_job(REVIEW_JOB)
    other_job = build_scheduler(other.services).get_job(REVIEW_JOB)
    results: list[bool] = []
    with freeze_time(at):
        run_together(
            lambda: results.append(job.func(*job.args)),
            lambda: results.append(other_job.func(*other_job.args)),
        )
        history.drain()
        other.drain()
    assert sorted(results) == [False, True]
    assert sorted(dm.args["channel"] for dm in owner_dms(fake_slack)) == sorted(OWNERS)


def test_a_review_missed_while_down_goes_out_on_the_next_start(history, owners, fake_slack):
    # Down from before the first due date until after the third (2027-01-30, 04-30, 07-29).
    later = datetime(2027, 8, 2, 9, tzinfo=SYDNEY)
    assert run_job(history, later) is True
    dms = owner_dms(fake_slack)
    assert len(dms) == 2  # the latest due date only, not one per period missed
    assert all("(due 2027-07-29)" in blocks_text(dm) for dm in dms)


def test_no_reminder_for_a_fresh_install(app, owners, db, fake_slack):
    assert run_job(app, DUE + timedelta(days=1)) is False
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Outbox)) == 0


def test_an_owner_not_in_slack_is_a_visible_failure(history, db, fake_slack):
    fake_slack.add_user("U0MKTLEAD", "mkt-lead@example.com")  # sales-lead is not in Slack
    assert run_job(history, DUE + timedelta(hours=9)) is True
    assert [dm.args["channel"] for dm in owner_dms(fake_slack)] == ["U0MKTLEAD"]
    with db.session() as session:
        failed = session.scalars(
            select(Outbox).where(Outbox.kind == "review_reminder", Outbox.status == "failed")
        ).all()
    assert [row.last_error for row in failed] == [
        "definition owner sales-lead@example.com not found in Slack"
    ]


def test_on_demand_the_owners_get_the_evidence_with_examples_and_suggestions(
    app, owners, fake_slack
):
    """`send_review_now` (the merger's `handoff definition review`): rejected leads named,
    escaped, and the calibration's suggestions with their trade; the schedule untouched."""
    app.services.directory.by_user_id("U0MGR")
    at = datetime(2026, 12, 1, 10, tzinfo=SYDNEY)
    small = [
        {
            "id": f"s{i}",
            "name": "Bo <Smith> & Co",
            "attributes": {"employees": 60 + i, "country": "AU"},
        }
        for i in range(6)
    ]
    ids = post(app, at, *small, *({"id": f"k{i}"} for i in range(3)))
    for handoff_id in ids[:6]:
        decide(app, at + timedelta(hours=1), handoff_id, "too_small")
    for handoff_id in ids[6:]:
        decide(app, at + timedelta(hours=1), handoff_id)

    with freeze_time(at + timedelta(days=1)):
        review = send_review_now(app.services)
        app.drain()
    assert review is not None and review.on_demand
    dms = owner_dms(fake_slack)
    assert sorted(dm.args["channel"] for dm in dms) == sorted(OWNERS)
    for dm in dms:
        assert dm.args["text"] == (
            "Evidence for a review of the lead definition (version 3), last reviewed on "
            "2026-11-01. Since then: Handed off 9 · accepted 3 · rejected 6 · accept rate 33%."
        )
        text = blocks_text(dm)
        assert "The evidence for a review of the lead definition" in text
        assert (
            "• → 50-5000 employees: 6 (Company too small 6) — e.g. "
            "Bo &lt;Smith&gt; &amp; Co (Acme), Bo &lt;Smith&gt; &amp; Co (Acme), "
            "Bo &lt;Smith&gt; &amp; Co (Acme)"
        ) in text
        assert (
            "1. fit `size` between 50–5000 → 66–5000: prevents 6 rejections, costs 0 accepts"
            in (text)
        )
        assert "<Smith>" not in text
    # Asked for, not due: the due date is still there to be claimed.
    with app.services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(ReviewRun)) == 0


def test_handoff_definition_review_queues_the_evidence_for_the_running_app(
    history, owners, db, fake_slack, monkeypatch
):
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", fake_slack.url)
    with freeze_time(datetime(2026, 12, 2, 10, tzinfo=SYDNEY)):
        result = CliRunner().invoke(main, ["definition", "review"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "Review evidence queued for mkt-lead@example.com and sales-lead@example.com in Slack.\n"
    )
    assert owner_dms(fake_slack) == []  # the CLI queues; the running app sends
    with freeze_time(datetime(2026, 12, 2, 10, 1, tzinfo=SYDNEY)):
        history.drain()
    dms = owner_dms(fake_slack)
    assert sorted(dm.args["channel"] for dm in dms) == sorted(OWNERS)
    assert "accept rate 33%" in dms[0].args["text"]
