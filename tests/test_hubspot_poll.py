"""Polling HubSpot for changed contacts: over real HTTP against the fake HubSpot, with
the cursor in a real SQLite file (and PostgreSQL where the URL is set)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from freezegun import freeze_time

from bot import clock
from bot.hubspot.api import HubSpotClient, HubSpotError, Pacer
from bot.hubspot.poll import LEASE, modified_ms, poll_job, poll_once
from store.crm import claim_cursor, create_cursor
from store.db import Database
from store.models import CrmCursor
from tests.fakehubspot import TOKEN, FakeHubSpot, iso_ms

PROPERTIES = ["email", "firstname", "lastname", "hubspot_owner_id"]
T0 = 1_764_000_000_000  # epoch ms, 2025-11-24


class Recorder:
    """The ingest callable: remembers every page it was handed; can fail on one."""

    def __init__(self, fail_on_page: int | None = None) -> None:
        self.pages: list[list[dict[str, Any]]] = []
        self.fail_on_page = fail_on_page

    def __call__(self, records: list[dict[str, Any]]) -> None:
        if self.fail_on_page is not None and len(self.pages) + 1 == self.fail_on_page:
            self.fail_on_page = None
            raise RuntimeError("intake crashed")
        self.pages.append(records)

    @property
    def ids(self) -> list[str]:
        return [record["id"] for page in self.pages for record in page]


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as fake:
        yield fake


@pytest.fixture
def client(fake: FakeHubSpot) -> Iterator[HubSpotClient]:
    with httpx.Client(timeout=30) as http:
        yield HubSpotClient(http, fake.url, TOKEN, search_per_second=100)


def add_contacts(fake: FakeHubSpot, count: int, *, start: int = T0, per_ms: int = 1) -> list[str]:
    """`count` contacts, `per_ms` of them changed in each millisecond from `start`."""
    return [
        fake.add_contact(start + n // per_ms, email=f"c{n}@acme.example", firstname=f"C{n}")
        for n in range(count)
    ]


def cursor_row(db: Database) -> CrmCursor | None:
    with db.session() as session:
        return session.get(CrmCursor, "hubspot")


def test_a_poll_pages_through_every_change_once_with_the_mapped_properties(
    fake, client, db
) -> None:
    ids = add_contacts(fake, 250)
    ingest = Recorder()
    result = poll_once(client, db, ingest, PROPERTIES, start_ms=T0)
    assert ingest.ids == ids
    assert [len(page) for page in ingest.pages] == [100, 100, 50]
    assert (result.pages, result.delivered, result.restarts) == (3, 250, 0)
    assert ingest.pages[0][0]["properties"]["email"] == "c0@acme.example"
    searches = fake.calls_to("search")
    assert [c.body.get("after") for c in searches] == [None, "100", "200"]
    assert set(searches[0].body["properties"]) == {*PROPERTIES, "lastmodifieddate"}
    row = cursor_row(db)
    assert row is not None and (row.cursor_ms, row.seen_ids) == (T0 + 249, [ids[-1]])


def test_the_next_page_is_fetched_while_this_one_is_ingested(fake, client, db) -> None:
    add_contacts(fake, 150)
    searches_while_ingesting: list[int] = []

    def ingest(records: list[dict[str, Any]]) -> None:
        if not searches_while_ingesting:  # the first page: wait for the second search
            deadline = time.monotonic() + 10
            while len(fake.calls_to("search")) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
        searches_while_ingesting.append(len(fake.calls_to("search")))

    result = poll_once(client, db, ingest, PROPERTIES, start_ms=T0)

    assert searches_while_ingesting == [2, 2]
    assert (result.pages, result.delivered) == (2, 150)


def test_searches_are_paced_under_the_configured_rate() -> None:
    pacer = Pacer(20.0)
    begin = time.monotonic()
    for _ in range(5):
        pacer.wait()
    # The first starts at once; each next one 5% more than 1/20 s after the one before.
    assert time.monotonic() - begin >= 4 * 1.05 / 20


def test_polling_an_unchanged_portal_hands_nothing_over_again(fake, client, db) -> None:
    add_contacts(fake, 30, per_ms=3)  # the last millisecond holds three records
    ingest = Recorder()
    poll_once(client, db, ingest, PROPERTIES, start_ms=T0)
    again = poll_once(client, db, ingest, PROPERTIES)
    assert again.delivered == 0 and len(ingest.ids) == 30
    assert fake.calls_to("search")[-1].status == 200


def test_records_changed_between_polls_come_once_each(fake, client, db) -> None:
    ids = add_contacts(fake, 10)
    ingest = Recorder()
    poll_once(client, db, ingest, PROPERTIES, start_ms=T0)
    fake.touch(ids[2], T0 + 500, firstname="Changed")
    fake.touch(ids[9], T0 + 500)  # the boundary record, changed again
    new = fake.add_contact(T0 + 600, email="new@acme.example")
    poll_once(client, db, ingest, PROPERTIES)
    assert ingest.pages[-1][0]["properties"]["firstname"] == "Changed"
    assert [r["id"] for r in ingest.pages[-1]] == [ids[2], ids[9], new]
    assert Counter(ingest.ids)[ids[2]] == 2 and len(ingest.ids) == 13


@pytest.mark.parametrize("next_past_cap", [True, False], ids=["next-offered", "total-only"])
def test_the_search_cap_is_passed_by_restarting_from_the_last_change(db, next_past_cap) -> None:
    # 1,000 changes, three a millisecond, against a search that serves 250 results a query
    fake = FakeHubSpot(search_cap=250, next_past_cap=next_past_cap)
    with fake, httpx.Client(timeout=30) as http:
        client = HubSpotClient(http, fake.url, TOKEN, search_per_second=100)
        ids = add_contacts(fake, 1_000, per_ms=3)
        ingest = Recorder()
        result = poll_once(client, db, ingest, PROPERTIES, start_ms=T0, cap=250)
        searches = fake.calls_to("search")
    assert sorted(ingest.ids, key=int) == ids  # every record ...
    assert len(ingest.ids) == len(set(ingest.ids))  # ... once, boundaries included
    assert all(c.status == 200 for c in searches)  # never paged into the cap's 400
    starts = [
        int(c.body["filterGroups"][0]["filters"][0]["value"])
        for c in searches
        if "after" not in c.body
    ]
    assert result.restarts == len(starts) - 1 >= 3
    assert starts == sorted(set(starts))  # each restart from a later change
    assert result.cursor_ms == T0 + 999 // 3


def test_more_than_the_cap_in_one_millisecond_is_a_clear_error(db) -> None:
    with FakeHubSpot(search_cap=250) as fake, httpx.Client(timeout=30) as http:
        client = HubSpotClient(http, fake.url, TOKEN, search_per_second=100)
        add_contacts(fake, 300, per_ms=300)
        with pytest.raises(HubSpotError, match="more than 250 HubSpot records changed"):
            poll_once(client, db, Recorder(), PROPERTIES, start_ms=T0, cap=250)


def test_a_429_mid_poll_waits_for_retry_after(fake, client, db) -> None:
    ids = add_contacts(fake, 250)
    poll_once(client, db, Recorder(), PROPERTIES, start_ms=T0 + 10_000)  # cursor after them
    fake.touch(ids[0], T0 + 20_000)
    for n in range(1, 201):
        fake.touch(ids[n], T0 + 20_000 + n)
    fake.fail_next("search", status=429, retry_after=1)
    ingest = Recorder()
    started = time.monotonic()
    result = poll_once(client, db, ingest, PROPERTIES)
    assert result.delivered == 201 and ingest.ids == ids[:201]
    assert time.monotonic() - started >= 0.95
    refused, retried = fake.calls_to("search")[1:3]
    assert refused.status == 429 and retried.at - refused.at >= 0.95


def test_an_outage_mid_poll_keeps_the_pages_already_taken(fake, client, db, caplog) -> None:
    ids = add_contacts(fake, 250)
    ingest = Recorder()
    fake.fail_next("search", status=503)  # the first page fails: nothing moves
    with caplog.at_level(logging.WARNING):
        assert poll_job(client, db, ingest, PROPERTIES, start_ms=T0) is None
    assert "trying again at the next poll" in caplog.text and ingest.ids == []
    assert cursor_row(db).cursor_ms == T0
    poll_once(client, db, ingest, PROPERTIES, limit=100)
    assert ingest.ids == ids


def test_a_restart_resumes_from_the_stored_cursor(fake, db_url) -> None:
    ids = add_contacts(fake, 250)
    ingest = Recorder(fail_on_page=2)  # intake dies on the second page
    first = Database(db_url)
    first.create_schema()
    with httpx.Client(timeout=30) as http:
        client = HubSpotClient(http, fake.url, TOKEN, search_per_second=100)
        with pytest.raises(RuntimeError, match="intake crashed"):
            poll_once(client, first, ingest, PROPERTIES, start_ms=T0)
    first.dispose()
    assert ingest.ids == ids[:100]

    second = Database(db_url)  # a new process on the same file
    second.create_schema()
    with httpx.Client(timeout=30) as http:
        client = HubSpotClient(http, fake.url, TOKEN, search_per_second=100)
        poll_once(client, second, ingest, PROPERTIES, start_ms=0)  # start_ms: ignored now
    second.dispose()
    assert ingest.ids == ids  # pages 2 and 3 came after the restart, page 1 not again
    resumed = fake.calls_to("search")[2]
    assert resumed.body["filterGroups"][0]["filters"][0]["value"] == str(T0 + 99)


def test_the_first_poll_starts_now_not_at_the_history(fake, client, db) -> None:
    now = int(time.time() * 1000)
    fake.add_contact(now - 86_400_000, email="old@acme.example")
    recent = fake.add_contact(now + 60_000, email="new@acme.example")
    ingest = Recorder()
    poll_once(client, db, ingest, PROPERTIES)
    assert ingest.ids == [recent]


def test_the_cursor_survives_on_postgresql(fake, client, pg_url) -> None:
    db = Database(pg_url)
    db.create_schema()
    try:
        add_contacts(fake, 5)
        ingest = Recorder()
        poll_once(client, db, ingest, PROPERTIES, start_ms=T0)
        poll_once(client, db, ingest, PROPERTIES)
        assert len(ingest.ids) == 5
        assert cursor_row(db).cursor_ms == T0 + 4  # epoch ms fit (a BIGINT column)
    finally:
        db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, db_url) -> Iterator[Database]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else db_url
    database = Database(url)
    database.create_schema()
    yield database
    database.dispose()


def test_one_process_polls_at_a_time(fake, client, any_db) -> None:
    ids = add_contacts(fake, 150)
    other_returned = threading.Event()
    first_page_in = threading.Event()
    seen: list[str] = []

    def slow_ingest(records: list[dict[str, Any]]) -> None:
        first_page_in.set()
        assert other_returned.wait(30)
        seen.extend(r["id"] for r in records)

    first = threading.Thread(
        target=poll_once, args=(client, any_db, slow_ingest, PROPERTIES), kwargs={"start_ms": T0}
    )
    first.start()
    assert first_page_in.wait(30)
    other = poll_once(client, any_db, Recorder(), PROPERTIES, start_ms=T0)
    other_returned.set()
    first.join(30)
    assert other.skipped and other.pages == 0
    assert seen == ids and len(fake.calls_to("search")) == 2  # the first poll's two pages
    assert cursor_row(any_db).lease_owner is None  # released: the next poll runs
    assert not poll_once(client, any_db, Recorder(), PROPERTIES).skipped


def test_a_crashed_pollers_lease_runs_out(fake, client, db) -> None:
    ids = add_contacts(fake, 3)
    with freeze_time("2026-11-27 10:00:00") as frozen:
        now = clock.now()
        with db.transaction() as session:
            create_cursor(session, "hubspot", T0, now=now)
            claim_cursor(session, "hubspot", "crashed", now=now, until=now + LEASE)
        assert poll_once(client, db, Recorder(), PROPERTIES).skipped
        frozen.tick(LEASE)
        ingest = Recorder()
        assert poll_once(client, db, ingest, PROPERTIES).delivered == 3
    assert ingest.ids == ids


def test_change_times_are_read_as_hubspot_writes_them() -> None:
    assert modified_ms({"id": "1", "properties": {"lastmodifieddate": iso_ms(T0 + 7)}}) == T0 + 7
    assert modified_ms({"id": "1", "properties": {"lastmodifieddate": str(T0)}}) == T0
    with pytest.raises(HubSpotError, match="record 77: lastmodifieddate 'yesterday'"):
        modified_ms({"id": "77", "properties": {"lastmodifieddate": "yesterday"}})
