"""History without spam: `handoff import --history` stores and judges but hands nothing
off; `created_at` is kept as the lead's creation time; a live import first says how many
leads it will hand off, to how many reps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from bot.cli import main
from store.db import Database
from store.models import Handoff, Lead, Outbox, Verdict
from tests.conftest import DATA

NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
YEAR_AGO = NOW - timedelta(days=365)


@pytest.fixture
def db_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    return url


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def record(lead_id: str, when: datetime, **extra) -> dict:
    """A lead that qualified when `when` was recent: demo request and pricing visits."""
    data = {
        "id": lead_id,
        "email": f"{lead_id}@acme.example",
        "company": "Acme",
        "attributes": {"employees": 250, "country": "AU"},
        "signals": [
            {"name": "demo_request", "at": (when - timedelta(days=2)).isoformat()},
            {"name": "pricing_page", "at": (when - timedelta(days=1)).isoformat()},
        ],
        "created_at": (when - timedelta(days=3)).isoformat(),
    }
    data.update(extra)
    return data


def write(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rows(url: str, model) -> list:
    db = Database(url)
    try:
        with db.session() as session:
            return list(session.scalars(select(model)).all())
    finally:
        db.dispose()


def counts(stdout: str) -> dict[str, int]:
    """The import's summary table: label -> count."""
    table = {}
    for line in stdout.splitlines():
        label, _, number = line.strip().rpartition(" ")
        if line.startswith("  ") and number.isdigit():
            table[label.strip()] = int(number)
    return table


def utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@freeze_time(NOW)
def test_a_history_import_judges_as_of_then_and_hands_nothing_off(db_env, tmp_path) -> None:
    path = write(
        tmp_path / "backfill.jsonl",
        record("old-1", YEAR_AGO),
        record("old-2", YEAR_AGO + timedelta(days=40)),
        record("cold", YEAR_AGO, signals=[]),
    )
    result = invoke("import", "--history", str(path))
    assert result.exit_code == 0, result.output
    assert "will hand off" not in result.stdout
    assert counts(result.stdout) == {
        "qualified, kept as history": 2,
        "nurture (not qualified)": 1,
    }

    leads = {lead.external_id: lead for lead in rows(db_env, Lead)}
    assert {key: (lead.status, lead.qualified) for key, lead in leads.items()} == {
        "old-1": ("nurture", True),
        "old-2": ("nurture", True),
        "cold": ("nurture", False),
    }
    assert utc(leads["old-1"].created_at) == YEAR_AGO - timedelta(days=3)
    # Judged as of its last activity (its last signal), not today, when it is 365 days old.
    verdicts = {v.lead_id: v for v in rows(db_env, Verdict)}
    assert utc(verdicts[leads["old-1"].id].judged_at) == YEAR_AGO - timedelta(days=1)
    assert rows(db_env, Handoff) == [] and rows(db_env, Outbox) == []

    # The same file imported live: unchanged, still nothing handed off.
    again = invoke("import", str(path))
    assert "will hand off 0 lead(s) to 0 rep(s)" in again.stdout
    assert counts(again.stdout) == {"unchanged": 3}
    assert rows(db_env, Handoff) == []


@freeze_time(NOW)
def test_the_same_file_without_history_hands_off_and_says_so_first(db_env, tmp_path) -> None:
    path = write(
        tmp_path / "live.jsonl",
        record("new-1", NOW),
        record("new-2", NOW),
        record("new-3", NOW),
        record("stale", YEAR_AGO),  # its signals are a year old: nurture today
    )
    result = invoke("import", str(path))
    assert result.exit_code == 0, result.output
    first, *_ = result.stdout.splitlines()
    assert first == (
        f"{path}: will hand off 3 lead(s) to 2 rep(s) (--history to import without handing off)"
    )
    assert counts(result.stdout) == {
        "qualified, handed off to sales": 3,
        "nurture (not qualified)": 1,
    }
    handoffs = rows(db_env, Handoff)
    assert sorted(h.owner_email for h in handoffs) == [
        "rep1@example.com",
        "rep1@example.com",
        "rep2@example.com",
    ]
    leads = {lead.external_id: lead for lead in rows(db_env, Lead)}
    assert utc(leads["new-1"].created_at) == NOW - timedelta(days=3)  # created_at kept
    assert leads["stale"].qualified is False


def test_created_at_on_post_leads_is_kept_and_never_in_the_future(app, db) -> None:
    past = (datetime.now(UTC) - timedelta(days=10)).replace(microsecond=0)
    future = datetime.now(UTC) + timedelta(days=10)
    response = app.post_leads(
        [
            record("p1", datetime.now(UTC), created_at=past.isoformat()),
            record("p2", datetime.now(UTC), created_at=future.isoformat()),
        ]
    )
    assert response.status_code == 202, response.text
    leads = {lead.external_id: lead for lead in rows(db.url, Lead)}
    assert utc(leads["p1"].created_at) == past
    assert utc(leads["p2"].created_at) <= datetime.now(UTC)

    naive = app.post_leads(record("p3", datetime.now(UTC), created_at="2026-01-01T00:00:00"))
    assert naive.status_code == 400
    assert naive.json()["errors"] == [
        {
            "index": None,
            "field": "created_at",
            "message": "expected an ISO 8601 time with a time zone, like 2026-11-20T10:00:00Z",
        }
    ]


def test_a_csv_takes_a_created_at_column(db_env, tmp_path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("id,email,company,created_at\nc1,c1@acme.example,Acme,2025-03-01T09:00:00Z\n")
    result = invoke("import", "--history", str(path))
    assert result.exit_code == 0, result.output
    [lead] = rows(db_env, Lead)
    assert utc(lead.created_at) == datetime(2025, 3, 1, 9, tzinfo=UTC)
