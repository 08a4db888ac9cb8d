"""One history, the same figures everywhere: the digest, `handoff report` as a table, CSV
and JSON, and `/handoff stats` through Slack (bot/figures.py defines each figure once)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from bot import decisions
from bot.cli import main
from store.db import Database
from store.models import Handoff, Lead
from tests.conftest import DATA, lead
from tests.slackreq import slash_command

SYDNEY = ZoneInfo("Australia/Sydney")
H = timedelta(hours=1)
# ISO week 2026-W47 in the definition's zone: Monday 16 to Sunday 22 November.
W47 = datetime(2026, 11, 16, tzinfo=SYDNEY)
W48 = W47 + timedelta(days=7)
W46_FRIDAY = W47 - timedelta(days=3) + 10 * H
SALES_OWNER = ("U0SALES", "sales-lead@example.com")  # the definition's sales owner


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, db_url):
    url = db_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    database.create_schema()
    yield database
    database.dispose()


def arrive(app, at: datetime, lead_id: str, **fields) -> int | None:
    """Post one lead at `at` (its signals are recent then); its handoff id, if handed off."""
    with freeze_time(at):
        response = app.post_leads(lead(lead_id, **fields))  # source: webinar unless told
        assert response.status_code == 202, response.text
        app.drain()
    with app.services.db.session() as session:
        return session.scalar(
            select(Handoff.id)
            .join(Lead, Lead.id == Handoff.lead_id)
            .where(Lead.external_id == lead_id)
            .order_by(Handoff.id.desc())
        )


def accept(app, at: datetime, handoff_id: int) -> None:
    with freeze_time(at):
        decisions.accept(app.services, handoff_id, "U0MGR")


def reject(app, at: datetime, handoff_id: int, reason: str) -> None:
    with freeze_time(at):
        decisions.reject(app.services, handoff_id, "U0MGR", reason_id=reason, note="n")


@pytest.fixture
def history(app, fake_slack):
    """Every kind of lead around 2026-W47, each placed where its figures should count.

    The response time is 4 business hours (mon-fri 09:00-17:00, Sydney)."""
    fake_slack.add_user(*SALES_OWNER)
    rep1 = {"owner": "rep1@example.com"}
    # Handed off the week before: accepted late in W47 (a W46 breach, a W47 decision); and
    # one still waiting at the end of W47, rejected in W48.
    late = arrive(app, W46_FRIDAY, "late", campaign="Autumn", **rep1)
    waiting = arrive(app, W46_FRIDAY + 6 * H, "waiting", campaign="Autumn", **rep1)
    arrive(app, W46_FRIDAY, "old-nurture", attributes={"employees": 5, "country": "AU"})
    # W47: the first instant of the week counts in it.
    first = arrive(app, W47, "first", campaign="Spring", **rep1)
    monday = W47 + 10 * H
    a = arrive(app, monday, "a", campaign="Spring", source="ads", **rep1)
    b = arrive(app, monday, "b", campaign="Spring", **rep1)
    c = arrive(app, monday, "c", campaign="Spring", source="ads", **rep1)
    moved = arrive(app, monday, "moved", campaign="Spring", **rep1)
    recycled = arrive(app, monday, "recycled", campaign="Spring", **rep1)
    still_open = arrive(app, W47 + 2 * 24 * H + 10 * H, "open", campaign="Spring", **rep1)
    last = arrive(app, W48 - H, "last", campaign="Spring", **rep1)  # Sunday 23:00
    arrive(app, monday, "nurture", attributes={"employees": 5, "country": "AU"})
    arrive(app, monday, "no-company", company=None)
    # W48: not in W47 at all.
    arrive(app, W48 + 10 * H, "next-week", campaign="Spring", source="partner", **rep1)

    accept(app, monday, late)  # 3 business days late
    accept(app, W47 + 9 * H + H / 2, first)
    accept(app, monday + H, a)
    reject(app, monday + 2 * H, b, "bad_timing")
    reject(app, monday + 24 * H, c, "too_small")  # Tuesday 10:00: breached
    reject(app, monday + H, recycled, "no_budget")  # recycled: the lead goes back to nurture
    with freeze_time(monday + 24 * H):  # rep1 breached; rep2 gets a fresh clock
        successor = decisions.reassign(app.services, moved, "U0MGR", to_user_id="U0REP2")
    with freeze_time(monday + 25 * H):
        decisions.accept(app.services, successor.id, "U0REP2")
    accept(app, W48, last)  # the first instant of W48: open at the end of W47
    reject(app, W48 + 10 * H, waiting, "other")
    assert still_open is not None
    return app


# What W47 should show, worked out by hand from the fixture.
EXPECTED = {
    "handed_off": 8,  # first a b c moved recycled open last: moved once
    "accepted": 4,  # late first a moved (by rep2)
    "rejected": 3,  # b c recycled
    "open": 3,  # waiting (until W48) open last (decided at W48's first instant)
    "accept_rate": "57%",
    "nurture": 1,  # "nurture"; not "old-nurture" (W46) nor "recycled" (counted as rejected)
    "missing_context": 1,
    # Clocks of the handoffs made in W47, once stopped: "open" is still running, "late"
    # was made in W46.
    "sla_met": 6,  # first a b recycled last moved-by-rep2
    "sla_breached": 2,  # c moved-by-rep1
    "sla_compliance": "75%",
}


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_digest_report_and_stats_agree_on_one_history(history, db, fake_slack, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    week = ["--from", "2026-11-16", "--to", "2026-11-22"]  # --to's day included

    [as_json] = json.loads(cli("report", *week, "--format", "json"))
    [as_csv] = list(csv.DictReader(io.StringIO(cli("report", *week, "--format", "csv"))))
    header, row = (line.split() for line in cli("report", *week).splitlines())
    as_table = dict(zip(header, row, strict=True))
    for figures in (as_json, as_csv, as_table):
        assert {k: str(figures[k]) for k in EXPECTED} == {k: str(v) for k, v in EXPECTED.items()}

    # The week before: its two handoffs, both answered late, neither by the end of W46.
    [w46] = json.loads(
        cli("report", "--from", "2026-11-09", "--to", "2026-11-15", "--format", "json")
    )
    assert {k: w46[k] for k in ("handed_off", "accepted", "open", "sla_breached", "nurture")} == {
        "handed_off": 2,
        "accepted": 0,
        "open": 2,
        "sla_breached": 2,
        "nurture": 1,
    }

    digest = cli("digest", "--dry-run", "--week", "2026-W47")
    first_section = "\n".join(digest.split("\n\n")[0].splitlines()[1:])
    assert first_section == (
        "Handed off 8 · accepted 4 · rejected 3 · still open 3\nAccept rate 57%"
        "\nDefinition version 3"  # the digest names the version it was made under
    )
    response = history.slack(slash_command(user_id=SALES_OWNER[0], text="stats 2026-W47"))
    assert response.status_code == 200
    assert response.text == f"*Handoff alignment digest, 2026-W47*\n{first_section}"

    # Grouped, the report splits the same counts; the digest's lines say the same.
    by_source = {
        r["group"]: r
        for r in json.loads(cli("report", *week, "--by", "source", "--format", "json"))
    }
    assert {g: (r["handed_off"], r["accepted"], r["rejected"]) for g, r in by_source.items()} == {
        "webinar": (6, 3, 2),
        "ads": (2, 1, 1),
    }
    assert "webinar: 6 handed off, 60% accepted, top rejection: Bad timing" in digest
    assert "ads: 2 handed off, 50% accepted, top rejection: Company too small" in digest
    assert sum(r["sla_breached"] for r in by_source.values()) == EXPECTED["sla_breached"]
    by_rep = {
        r["group"]: r for r in json.loads(cli("report", *week, "--by", "rep", "--format", "json"))
    }
    assert by_rep["rep1@example.com"]["sla_breached"] == 2
    assert by_rep["rep2@example.com"]["accepted"] == 1
    assert {(r["nurture"], r["missing_context"]) for r in by_rep.values()} == {(None, None)}
    assert "SLA breaches: rep1@example.com 2" in digest
    by_reason = cli("report", *week, "--by", "reason", "--format", "csv")
    for reason in ("bad_timing", "too_small", "no_budget"):
        assert f"\n{reason},1,0,1,0," in by_reason
    for reason in ("Bad timing (1)", "Company too small (1)", "No budget (1)"):
        assert reason in digest
