"""Polling Salesforce against the fake over real HTTP: every change once, page by page,
the cursor in the database (a restart resumes), re-polls that change nothing, one
process at a time, outages that lose nothing."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from freezegun import freeze_time

from bot import clock
from bot.crm.sources import parse_sources
from bot.salesforce.api import SalesforceClient, SalesforceError
from bot.salesforce.poll import LEASE, modified_ms, poll_job, poll_once
from store.crm import claim_cursor, create_cursor
from store.db import Database
from store.models import CrmCursor
from tests.fakesalesforce import CLIENT_ID, CLIENT_SECRET, FakeSalesforce
from tests.test_hubspot_poll import Recorder

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
SOURCE = parse_sources(
    {"salesforce": {"fields": {"email": "Email", "owner": "Owner.Email", "company": "Company"}}}
).salesforce


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce() as fake:
        yield fake


@pytest.fixture
def client(fake: FakeSalesforce) -> Iterator[SalesforceClient]:
    with httpx.Client(timeout=30) as http:
        yield SalesforceClient(http, fake.url, CLIENT_ID, CLIENT_SECRET)


def add_leads(fake: FakeSalesforce, count: int, *, per_second: int = 1) -> list[str]:
    """`count` Leads, `per_second` of them changed in each second from T0."""
    return [
        fake.add_lead(T0 + timedelta(seconds=n // per_second), Email=f"l{n}@acme.example")
        for n in range(count)
    ]


def cursor_row(db: Database) -> CrmCursor | None:
    with db.session() as session:
        return session.get(CrmCursor, "salesforce")


def test_a_poll_pages_through_every_change_once_as_records_the_mapping_reads(
    fake, client, db
) -> None:
    owner = fake.add_user("rep2@example.com")
    ids = add_leads(fake, 450)
    fake.touch(ids[0], T0, OwnerId=owner, Company="Acme")
    ingest = Recorder()
    result = poll_once(client, db, ingest, SOURCE, start_ms=T0_MS, batch_size=200)
    assert ingest.ids == ids
    assert [len(page) for page in ingest.pages] == [200, 200, 50]
    assert (result.pages, result.delivered) == (3, 450)
    first = ingest.pages[0][0]
    assert first["properties"]["Owner.Email"] == "rep2@example.com"
    assert first["properties"]["Company"] == "Acme"
    assert "attributes" not in first["properties"]
    assert [len(fake.calls_to(r)) for r in ("query", "query_more")] == [1, 2]
    row = cursor_row(db)
    assert row is not None and (row.cursor_ms, row.seen_ids) == (T0_MS + 449_000, [ids[-1]])


def test_polling_an_unchanged_org_hands_nothing_over_again(fake, client, db) -> None:
    add_leads(fake, 30, per_second=3)  # the last second holds three records
    ingest = Recorder()
    poll_once(client, db, ingest, SOURCE, start_ms=T0_MS)
    again = poll_once(client, db, ingest, SOURCE)
    assert again.delivered == 0 and len(ingest.ids) == 30
    # The query starts at the cursor's second: its three records came back, and were known.
    assert len(fake.calls_to("query")[-1].response["records"]) == 3


def test_records_changed_between_polls_come_once_each(fake, client, db) -> None:
    ids = add_leads(fake, 10)
    ingest = Recorder()
    poll_once(client, db, ingest, SOURCE, start_ms=T0_MS)
    fake.touch(ids[2], T0 + timedelta(minutes=5), Company="Changed")
    fake.touch(ids[9], T0 + timedelta(minutes=5))  # the boundary record, changed again
    new = fake.add_lead(T0 + timedelta(minutes=6), Email="new@acme.example")
    poll_once(client, db, ingest, SOURCE)
    assert ingest.pages[-1][0]["properties"]["Company"] == "Changed"
    assert [r["id"] for r in ingest.pages[-1]] == [ids[2], ids[9], new]
    assert Counter(ingest.ids)[ids[2]] == 2 and len(ingest.ids) == 13


def test_a_restart_resumes_from_the_stored_cursor(fake, db_url) -> None:
    ids = add_leads(fake, 450)
    ingest = Recorder(fail_on_page=2)  # intake dies on the second page
    first = Database(db_url)
    first.create_schema()
    with httpx.Client(timeout=30) as http:
        client = SalesforceClient(http, fake.url, CLIENT_ID, CLIENT_SECRET)
        with pytest.raises(RuntimeError, match="intake crashed"):
            poll_once(client, first, ingest, SOURCE, start_ms=T0_MS, batch_size=200)
    first.dispose()
    assert ingest.ids == ids[:200]

    second = Database(db_url)  # a new process on the same file, with a new token
    second.create_schema()
    with httpx.Client(timeout=30) as http:
        client = SalesforceClient(http, fake.url, CLIENT_ID, CLIENT_SECRET)
        poll_once(client, second, ingest, SOURCE, start_ms=0, batch_size=200)  # start_ms ignored
    second.dispose()
    assert ingest.ids == ids  # the rest came after the restart, page 1 not again
    resumed = fake.calls_to("query")[1]
    assert "WHERE SystemModstamp >= 2026-11-27T09:03:19Z" in resumed.query["q"]  # record 199


def test_an_outage_mid_poll_keeps_the_pages_already_taken(fake, client, db, caplog) -> None:
    ids = add_leads(fake, 450)
    fake.fail_next("query_more", status=503)  # the second page fails
    ingest = Recorder()
    with caplog.at_level(logging.WARNING):
        assert poll_job(client, db, ingest, SOURCE, start_ms=T0_MS, batch_size=200) is None
    assert "trying again at the next poll" in caplog.text and ingest.ids == ids[:200]
    assert cursor_row(db).cursor_ms == T0_MS + 199_000
    assert cursor_row(db).lease_owner is None  # released for the next poll
    poll_once(client, db, ingest, SOURCE, batch_size=200)
    assert ingest.ids == ids


def test_a_field_salesforce_does_not_know_stops_the_poll_with_its_name(
    fake, client, db, caplog
) -> None:
    add_leads(fake, 3)
    source = parse_sources({"salesforce": {"fields": {"email": "Email", "title": "Job__c"}}})
    with caplog.at_level(logging.ERROR):
        assert poll_job(client, db, Recorder(), source.salesforce, start_ms=T0_MS) is None
    assert "No such column 'Job__c'" in caplog.text
    assert "run `handoff salesforce check`" in caplog.text
    assert cursor_row(db).cursor_ms == T0_MS  # nothing skipped: fixed, it polls from here


def test_an_expired_session_mid_poll_is_renewed(fake, client, db) -> None:
    ids = add_leads(fake, 450)
    ingest = Recorder()

    def expire_after_first_page(records: list[dict[str, Any]]) -> None:
        ingest(records)
        fake.expire_tokens()

    poll_once(client, db, expire_after_first_page, SOURCE, start_ms=T0_MS, batch_size=200)
    assert ingest.ids == ids
    assert [c.status for c in fake.calls_to("query_more")][:2] == [401, 200]


def test_the_first_poll_starts_now_not_at_the_history(fake, client, db) -> None:
    now = clock.now()
    fake.add_lead(now - timedelta(days=1), Email="old@acme.example")
    recent = fake.add_lead(now + timedelta(minutes=1), Email="new@acme.example")
    ingest = Recorder()
    poll_once(client, db, ingest, SOURCE)
    assert ingest.ids == [recent]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, db_url) -> Iterator[Database]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else db_url
    database = Database(url)
    database.create_schema()
    yield database
    database.dispose()


def test_one_process_polls_at_a_time(fake, client, any_db) -> None:
    db = any_db
    ids = add_leads(fake, 300)
    other_returned = threading.Event()
    first_page_in = threading.Event()
    seen: list[str] = []

    def slow_ingest(records: list[dict[str, Any]]) -> None:
        first_page_in.set()
        assert other_returned.wait(30)
        seen.extend(r["id"] for r in records)

    first = threading.Thread(
        target=poll_once,
        args=(client, db, slow_ingest, SOURCE),
        kwargs={"start_ms": T0_MS, "batch_size": 200},
    )
    first.start()
    assert first_page_in.wait(30)
    other = poll_once(client, db, Recorder(), SOURCE, start_ms=T0_MS)
    other_returned.set()
    first.join(30)
    assert other.skipped and other.pages == 0
    assert seen == ids and len(fake.calls_to("query")) == 1
    assert not poll_once(client, db, Recorder(), SOURCE).skipped


def test_a_crashed_pollers_lease_runs_out(fake, client, db) -> None:
    ids = add_leads(fake, 3)
    with freeze_time("2026-11-27 10:00:00") as frozen:
        now = clock.now()
        with db.transaction() as session:
            create_cursor(session, "salesforce", T0_MS, now=now)
            claim_cursor(session, "salesforce", "crashed", now=now, until=now + LEASE)
        assert poll_once(client, db, Recorder(), SOURCE).skipped
        frozen.tick(LEASE)
        ingest = Recorder()
        assert poll_once(client, db, ingest, SOURCE).delivered == 3
    assert ingest.ids == ids


def test_salesforce_and_hubspot_cursors_are_apart(fake, client, db) -> None:
    add_leads(fake, 2)
    with db.transaction() as session:
        create_cursor(session, "hubspot", 42, now=clock.now())
    poll_once(client, db, Recorder(), SOURCE, start_ms=T0_MS)
    with db.session() as session:
        assert session.get(CrmCursor, "hubspot").cursor_ms == 42
    assert cursor_row(db).cursor_ms == T0_MS + 1000


def test_change_times_are_read_as_salesforce_writes_them() -> None:
    record = {"Id": "00Q1", "SystemModstamp": "2026-11-27T09:00:01.000+0000"}
    assert modified_ms(record) == T0_MS + 1000
    with pytest.raises(SalesforceError, match="record 00Q7: SystemModstamp 'soon'"):
        modified_ms({"Id": "00Q7", "SystemModstamp": "soon"})
