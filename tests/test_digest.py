"""The weekly digest and the report on a fixture week built through the real app, the
cron slot in the definition's zone (DST included), and once-only posting."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import event, func, select

from bot import decisions, digest
from bot.cli import main
from bot.definition import load_definition
from bot.digest import build_digest, digest_text, window_for
from bot.figures import GROUPS
from bot.report import build_report
from bot.scheduler import digest_trigger
from store.db import Database
from store.models import DigestRun, Handoff, Outbox
from tests.conftest import DATA, lead, run_together

SYDNEY = ZoneInfo("Australia/Sydney")
MON_W47 = datetime(2026, 11, 16, 10, 0, tzinfo=SYDNEY)
MON_W46 = MON_W47 - timedelta(days=7)
H = timedelta(hours=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, db_url):
    """Every test here on SQLite and, with HANDOFF_TEST_POSTGRES_URL set, on PostgreSQL:
    the digest's SQL (scalar subqueries, GROUP BY, OFFSET) must agree on both."""
    url = db_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    database.create_schema()
    yield database
    database.dispose()


def post(app, at: datetime, *specs: dict) -> list[int]:
    """Leads built at `at`, so their signals are recent then."""
    with freeze_time(at):
        app.post_leads([lead(spec.pop("id"), **spec) for spec in specs])
        app.drain()
    with app.services.db.session() as session:
        return list(session.scalars(select(Handoff.id).order_by(Handoff.id)))


def decide(app, at: datetime, handoff_id: int, reason: str | None = None) -> None:
    with freeze_time(at):
        if reason is None:
            decisions.accept(app.services, handoff_id, "U0MGR")
        else:
            decisions.reject(app.services, handoff_id, "U0MGR", reason_id=reason, note="n")


@pytest.fixture
def week(app, db, fake_slack):
    """W46: g accepted, h rejected. W47: a..f handed off Monday 10:00 and decided."""
    app.services.directory.by_user_id("U0MGR")
    g, h = post(
        app,
        MON_W46,
        {"id": "g", "source": "ads", "campaign": "Brand"},
        {"id": "h", "source": "ads", "campaign": "Brand"},
    )
    decide(app, MON_W46 + H, g)
    decide(app, MON_W46 + H, h, "other")
    specs = [
        ("a", "webinar", "Q4 webinar", "Alpha"),
        ("b", "webinar", "Q4 webinar", "Beta"),
        ("c", "ebook", "State of Ops", "Gamma"),
        ("d", "ebook", "State of Ops", "Delta"),
        ("e", "ads", "Brand", "Epsilon"),
        ("f", "ads", "Brand", "Zeta"),
    ]
    ids = post(
        app,
        MON_W47,
        *[{"id": i, "source": s, "campaign": c, "company": co} for i, s, c, co in specs],
    )
    a, b, c, d, e, _f = ids[2:]
    decide(app, MON_W47 + H, a)
    decide(app, MON_W47 + 2 * H, b, "bad_timing")
    decide(app, MON_W47 + 24 * H, c, "too_small")  # Tuesday 10:00: 8 business hours, breached
    decide(app, MON_W47 + 3 * H, d, "too_small")
    decide(app, MON_W47 + H / 2, e)
    return app


def test_digest_figures_on_a_fixture_week(week, db, definition):
    with freeze_time(MON_W47 + 7 * 24 * H):
        built = build_digest(db, definition, window_for(definition, datetime.now(), "2026-W47"))
    assert (built.handed_off, built.accepted, built.rejected, built.still_open) == (6, 2, 3, 1)
    assert built.accept_rate == 0.4 and built.previous_accept_rate == 0.5
    assert [(r.reason_id, r.count, r.criterion) for r in built.reasons] == [
        ("too_small", 2, "50-5000 employees"),
        ("bad_timing", 1, "Buying within 90 days"),
    ]
    assert built.reasons[0].examples == [
        ("Delta", "ebook", "State of Ops"),
        ("Gamma", "ebook", "State of Ops"),
    ]
    by_source = {g.name: (g.handed_off, g.accept_rate, g.top_reason) for g in built.by_source}
    assert by_source == {
        "webinar": (2, 0.5, "Bad timing"),
        "ebook": (2, 0.0, "Company too small"),
        "ads": (2, 1.0, None),
    }
    assert (built.median_hours, built.p90_hours) == (2.0, 8.0)
    assert built.breaches == [("rep1@example.com", 1)]
    assert built.trend[-2:] == [("2026-W46", 2, 1), ("2026-W47", 6, 2)]
    text = digest_text(built)
    assert "Accept rate 40% (-10 pts on the week before, 50%)" in text
    assert "1. Company too small (2) → 50-5000 employees" in text
    assert "ebook: 2 handed off, 0% accepted, top rejection: Company too small" in text


def test_target_worked_backwards(week, db, tmp_path):
    path = tmp_path / "definition.yml"
    path.write_text(
        (DATA / "definition.yml").read_text() + "target: {revenue: 2000000, "
        'deal_value: 2750, period: year, win_rate: "15%"}\n'
    )
    definition = load_definition(path)
    built = build_digest(db, definition, window_for(definition, MON_W47, "2026-W47"))
    assert built.target == [
        "2,000,000 / 2,750 = 727 wins a year; at a 15% win rate that is 4,848 accepted leads",
        "at the measured 37.5% of leads accepted (last 8 weeks) that is about 12,929 leads, "
        "249 a week",
        "this week: 6 leads, 2% of that pace",
    ]


def test_dry_run_prints_the_digest_and_report_counts(week, db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    result = CliRunner().invoke(main, ["digest", "--dry-run", "--week", "2026-W47"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Handoff alignment digest, 2026-W47\nHanded off 6 · accepted 2")
    bad = CliRunner().invoke(main, ["digest", "--dry-run", "--week", "47"])
    assert bad.exit_code == 2 and "expected an ISO week like 2026-W47" in bad.stderr
    report = CliRunner().invoke(
        main,
        [
            "report",
            "--from",
            "2026-11-15",
            "--to",
            "2026-11-23",
            "--by",
            "source",
            "--format",
            "json",
        ],
    )
    rows = {r["group"]: r for r in json.loads(report.stdout)}
    assert (rows["ebook"]["rejected"], rows["ebook"]["sla_breached"]) == (2, 1)
    assert rows["webinar"]["accept_rate"] == "50%"
    csv_out = CliRunner().invoke(
        main,
        [
            "report",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--by",
            "reason",
            "--format",
            "csv",
        ],
    )
    assert "too_small,2,0,2,0" in csv_out.stdout


def test_cron_fires_at_nine_local_across_dst(app):
    trigger = digest_trigger(app.services)
    before = trigger.get_next_fire_time(None, datetime(2026, 9, 26, tzinfo=SYDNEY))
    after = trigger.get_next_fire_time(None, datetime(2026, 10, 3, tzinfo=SYDNEY))
    assert before.astimezone(SYDNEY).strftime("%a %H:%M %Z") == "Mon 09:00 AEST"
    assert after.astimezone(SYDNEY).strftime("%a %H:%M %Z") == "Mon 09:00 AEDT"
    assert (before.utcoffset(), after.utcoffset()) == (timedelta(hours=10), timedelta(hours=11))


def test_posted_once_with_two_instances_and_caught_up_after_downtime(
    week, app_factory, db, fake_slack
):
    other = app_factory(db)
    slot = datetime(2026, 11, 23, 9, 0, tzinfo=SYDNEY)
    with freeze_time(slot):
        results = []
        run_together(
            *[lambda a=a: results.append(digest.run_scheduled(a.services)) for a in (week, other)]
        )
        week.drain()
        other.drain()
    assert sorted(results) == [False, True]
    [posted] = fake_slack.successful("chat.postMessage")[-1:]
    assert posted.args["channel"] == "#marketing"
    assert "Handoff alignment digest, 2026-W47" in posted.args["text"]
    with freeze_time(slot + timedelta(hours=3)):  # a restart later that day
        assert digest.catch_up(other.services) is False
    with freeze_time(slot + timedelta(days=7, hours=2)):  # down over the next slot
        assert digest.catch_up(other.services) is True
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(DigestRun)) == 2
        assert (
            session.scalar(select(func.count()).select_from(Outbox).where(Outbox.kind == "digest"))
            == 2
        )


def test_every_digest_and_report_query_seeks_the_period_by_index(week, db, definition):
    """The digest and the report read the period, not the table, only while each of their
    queries seeks it in an index: SQLite's plan for every statement, on a schema without
    statistics."""
    if not db.is_sqlite:
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        build_digest(db, definition, window_for(definition, MON_W47, "2026-W47"))
        for by in (None, *GROUPS):
            build_report(db, MON_W46, MON_W47 + 7 * 24 * H, by)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    with db.engine.connect() as conn:
        for statement, parameters in statements:
            if not statement.startswith("SELECT"):
                continue
            plan = [
                row[3]
                for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
            assert not [s for s in plan if s.startswith(("SCAN handoff", "SCAN lead"))], plan
            for column in ("decided_at", "assigned_at"):
                if f"handoff.{column} >=" in statement:
                    assert any(f"{column}>?" in step for step in plan), (statement, plan)


def report(*args: str):
    return CliRunner().invoke(main, ["report", *args])


@pytest.fixture
def cli_env(db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))


def test_report_days_are_whole_days_in_the_definitions_zone_to_included(week, cli_env):
    """Monday 10:00 in Sydney is Sunday in UTC; `--from D --to D` is all of day D there."""
    monday = report("--from", "2026-11-16", "--to", "2026-11-16", "--format", "json")
    assert monday.exit_code == 0, monday.stderr
    [figures] = json.loads(monday.stdout)
    assert (figures["handed_off"], figures["accepted"], figures["rejected"]) == (6, 2, 2)
    assert figures["open"] == 2  # c (decided Tuesday) and f, at midnight after Monday
    assert figures["accept_rate"] == "50%"


def test_report_rates_without_data_are_null_in_json_and_empty_in_csv(week, cli_env):
    sunday = ["--from", "2026-11-22", "--to", "2026-11-22"]  # nothing decided that day
    [as_json] = json.loads(report(*sunday, "--format", "json").stdout)
    assert (as_json["accept_rate"], as_json["sla_compliance"]) == (None, None)
    [as_csv] = csv.DictReader(io.StringIO(report(*sunday, "--format", "csv").stdout))
    assert (as_csv["accept_rate"], as_csv["sla_compliance"]) == ("", "")
    header, row = (line.split() for line in report(*sunday).stdout.splitlines())
    table = dict(zip(header, row, strict=True))
    assert (table["accept_rate"], table["sla_compliance"]) == ("—", "—")


def test_report_from_after_to_is_an_error(cli_env):
    result = report("--from", "2026-11-20", "--to", "2026-11-10")
    assert result.exit_code == 2
    assert result.stderr == "--from: 2026-11-20 is after --to 2026-11-10\n"
    empty = report("--by", "source")  # no leads yet: the header alone
    assert empty.exit_code == 0, empty.stderr
    assert empty.stdout.startswith("group  handed_off  accepted") and empty.stdout.count("\n") == 1
    bad = report("--to", "2026-11-31")
    assert bad.exit_code == 2 and "--to: expected a date like 2026-11-01" in bad.stderr


def test_default_digest_is_labelled_with_the_week_most_of_it_lies_in(cli_env):
    """Run on a Saturday, the 7 days before start on the Saturday of W46 but lie mostly in
    W47 (the scheduled Monday digest's window lies wholly in the week before)."""
    with freeze_time(datetime(2026, 11, 21, 10, 0, tzinfo=SYDNEY)):
        result = CliRunner().invoke(main, ["digest", "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("Handoff alignment digest, 2026-W47\n")
