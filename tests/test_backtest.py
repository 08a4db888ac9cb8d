"""The backtest streams the stored leads, and says what it said when it loaded them all."""

from __future__ import annotations

import copy

import pytest
import yaml
from sqlalchemy import select

from bot.backtest import run_backtest
from bot.definition import parse_definition
from bot.judge import judge
from bot.leads import lead_from_stored
from store.db import Database
from store.models import Handoff, HandoffStatus, Lead
from tests.conftest import DATA
from tests.test_calibrate import decide, handed_off, made, sized


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, db_url):
    """SQLite, and PostgreSQL (a server-side cursor) with HANDOFF_TEST_POSTGRES_URL set."""
    url = db_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    database.create_schema()
    yield database
    database.dispose()


def stricter():
    data = yaml.safe_load((DATA / "definition.yml").read_text())
    candidate = copy.deepcopy(data)
    candidate["version"] = 4
    candidate["fit"][0]["between"] = [100, 5000]
    candidate["thresholds"]["mql"] = 55
    return parse_definition(candidate)


def everything_at_once(db: Database, current, candidate) -> dict:
    """The backtest as it was: every decision in a dict, then every lead judged twice."""
    with db.session() as session:
        decided = session.execute(
            select(Handoff.lead_id, Handoff.status, Handoff.reason_id)
            .where(Handoff.status.in_([HandoffStatus.ACCEPTED, HandoffStatus.REJECTED]))
            .order_by(Handoff.id)
        ).all()
        latest = {lead_id: (status, reason) for lead_id, status, reason in decided}
        leads = session.scalars(select(Lead).order_by(Lead.id)).all()
    out: dict = {"leads": 0, "newly": [], "dropped": [], "accepted": [0, 0], "rejected": [0, 0]}
    for row in leads:
        lead = lead_from_stored(
            {
                "id": row.external_id,
                "email": row.email,
                "company": row.company,
                "attributes": row.attributes,
                "signals": row.signals,
            }
        )
        before = judge(lead, current, row.updated_at).qualified
        after = judge(lead, candidate, row.updated_at).qualified
        out["leads"] += 1
        label = f"{lead.id} ({lead.company or lead.email or '—'})"
        if after and not before:
            out["newly"].append(label)
        elif before and not after:
            out["dropped"].append(label)
        status, _ = latest.get(row.id, (None, None))
        if status in (HandoffStatus.ACCEPTED, HandoffStatus.REJECTED):
            out[status][after] += 1
    return out


def test_streamed_in_small_batches_it_counts_what_loading_everything_counted(
    app_factory, db, definition
):
    app = app_factory(db)
    app.services.directory.by_user_id("U0MGR")
    specs = [sized(f"s{i}", 40 + 10 * i) for i in range(12)]  # 40..150 employees
    specs += [made("nz", attributes={"employees": 300, "country": "NZ"})]
    specs += [made("weak", signals=[])]  # stored, never qualified
    ids = handed_off(app, *specs)
    for n, (_lead, handoff_id) in enumerate(sorted(ids.items())):
        if n % 3 == 0:
            decide(app, handoff_id)
        elif n % 3 == 1:
            decide(app, handoff_id, "too_small")
    candidate = stricter()
    expected = everything_at_once(db, definition, candidate)

    for batch in (1, 3, 5000):
        report = run_backtest(db, definition, candidate, batch=batch)
        assert report.leads == expected["leads"] == 14
        assert report.no_longer_qualified == expected["dropped"]
        assert len(report.no_longer_qualified) == 5  # 50..90 employees
        assert report.newly_qualified == expected["newly"] == []
        assert [report.accepted["dropped"], report.accepted["kept"]] == expected["accepted"]
        assert [report.rejected["filtered"], report.rejected["kept"]] == expected["rejected"]
