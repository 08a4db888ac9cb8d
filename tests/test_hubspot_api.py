"""The HubSpot client and the owners cache, over real HTTP against the fake HubSpot."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from freezegun import freeze_time

from bot.hubspot.api import (
    HubSpotClient,
    HubSpotError,
    HubSpotRefused,
    HubSpotUnavailable,
    Owners,
)
from tests.fakehubspot import ALL_SCOPES, TOKEN, FakeHubSpot


@pytest.fixture
def fake() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(owners_page=2) as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture
def client(fake: FakeHubSpot, http: httpx.Client) -> HubSpotClient:
    return HubSpotClient(http, fake.url, TOKEN)


def add_owners(fake: FakeHubSpot, count: int) -> None:
    for n in range(1, count + 1):
        fake.add_owner(str(n), f"rep{n}@example.com")


def test_owners_reads_every_page(fake, client) -> None:
    add_owners(fake, 5)
    assert client.owners() == {str(n): f"rep{n}@example.com" for n in range(1, 6)}
    calls = fake.calls_to("owners")
    assert [c.query.get("after") for c in calls] == [None, "2", "4"]
    assert all(c.headers["authorization"] == f"Bearer {TOKEN}" for c in calls)


def test_search_asks_for_changes_since_oldest_first_with_the_properties(fake, client) -> None:
    ids = [fake.add_contact(1_000 + n, email=f"c{n}@acme.example") for n in range(5)]
    page = client.search_changed(1_001, ["email", "company"], limit=2)
    assert [r["id"] for r in page.results] == ids[1:3]
    assert page.results[0]["properties"]["email"] == "c1@acme.example"
    assert (page.next_after, page.total) == ("2", 4)
    last = client.search_changed(1_001, ["email", "company"], page.next_after, limit=2)
    assert [r["id"] for r in last.results] == ids[3:] and last.next_after is None
    body = fake.calls_to("search")[0].body
    assert body["filterGroups"] == [
        {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1001"}]}
    ]
    assert body["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert body["properties"] == ["company", "email", "lastmodifieddate"]


def test_a_429_waits_for_retry_after_then_succeeds(fake, client) -> None:
    add_owners(fake, 1)
    fake.fail_next("owners", status=429, retry_after=1)
    assert client.owners() == {"1": "rep1@example.com"}
    refused, answered = fake.calls_to("owners")
    assert (refused.status, answered.status) == (429, 200)
    assert answered.at - refused.at >= 0.95  # Retry-After: 1 was obeyed


def test_a_429_longer_than_the_bound_is_left_for_later(fake, http) -> None:
    client = HubSpotClient(http, fake.url, TOKEN, max_wait=5)
    fake.fail_next("owners", status=429, retry_after=60)
    with pytest.raises(HubSpotUnavailable, match="rate limited, retry after 60 s"):
        client.owners()
    assert len(fake.calls_to("owners")) == 1


def test_a_spent_daily_limit_is_not_waited_for(fake, client) -> None:
    fake.fail_next("owners", status=429, policy="DAILY")
    with pytest.raises(HubSpotUnavailable, match="daily API limit is spent"):
        client.owners()
    assert len(fake.calls_to("owners")) == 1


def test_a_429_without_retry_after_waits_for_its_window(fake, client) -> None:
    add_owners(fake, 1)
    fake.fail_next("owners", status=429, policy="SECONDLY")
    assert client.owners() == {"1": "rep1@example.com"}
    refused, answered = fake.calls_to("owners")
    assert answered.at - refused.at >= 0.95


def test_5xx_and_an_unreachable_hubspot_are_unavailable(fake, client, http) -> None:
    fake.fail_next("search", status=502)
    with pytest.raises(HubSpotUnavailable, match="HubSpot answered 502"):
        client.search_changed(0, ["email"])
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(HubSpotUnavailable, match="ConnectError"):
        HubSpotClient(http, closed, TOKEN).owners()


def test_a_wrong_token_is_refused_without_showing_it(fake, http) -> None:
    client = HubSpotClient(http, fake.url, "pat-na1-wrong-secret")
    with pytest.raises(HubSpotRefused, match=r"token was refused \(401\)") as caught:
        client.owners()
    assert "wrong-secret" not in str(caught.value)


def test_a_missing_scope_is_named(http) -> None:
    with FakeHubSpot(scopes=ALL_SCOPES - {"crm.objects.owners.read"}) as fake:
        client = HubSpotClient(http, fake.url, TOKEN)
        with pytest.raises(HubSpotRefused, match=r"missing scope \(403\).*owners.read"):
            client.owners()


def test_other_refusals_are_errors_not_retried(fake, client) -> None:
    fake.add_property("handoff_rejection_reason")
    with pytest.raises(HubSpotError, match="409 A property named 'handoff_rejection_reason'"):
        client.create_property("handoff_rejection_reason", "Reason", group="contactinformation")
    assert len(fake.calls_to("create_property")) == 1


def test_properties_and_groups(fake, client) -> None:
    client.create_property_group("handoff", "Handoff")
    client.create_property("handoff_rejection_note", "Note", group="handoff")
    assert "handoff" in client.property_groups()
    created = client.properties()["handoff_rejection_note"]
    assert (created["groupName"], created["hubspotDefined"]) == ("handoff", False)
    assert client.properties()["email"]["hubspotDefined"] is True


def test_owners_cache_refreshes_after_the_ttl_and_on_a_miss_at_most_once_a_minute(
    fake, client
) -> None:
    add_owners(fake, 1)
    with freeze_time("2026-11-27 10:00:00") as frozen:
        owners = Owners(client, ttl=timedelta(minutes=10), miss_every=timedelta(minutes=1))
        assert owners.email_of("1") == "rep1@example.com"
        pages = len(fake.calls_to("owners"))
        fake.add_owner("2", "new-rep@example.com")
        assert owners.email_of("2") is None  # a miss within the minute: no call
        assert owners.email_of("1") == "rep1@example.com"
        assert len(fake.calls_to("owners")) == pages
        frozen.tick(timedelta(seconds=61))
        assert owners.email_of("2") == "new-rep@example.com"  # the miss refreshed it
        assert owners.email_of("404") is None
        assert len(fake.calls_to("owners")) == 2 * pages
        fake.add_owner("1", "moved@example.com")
        frozen.tick(timedelta(minutes=10))
        assert owners.email_of("1") == "moved@example.com"  # the TTL refreshed it


def test_owners_cache_keeps_the_last_list_while_hubspot_is_down(fake, client) -> None:
    add_owners(fake, 1)
    with freeze_time("2026-11-27 10:00:00") as frozen:
        owners = Owners(client)
        assert owners.email_of("1") == "rep1@example.com"
        fake.set_outage(True)
        frozen.tick(timedelta(minutes=11))
        assert owners.email_of("1") == "rep1@example.com"
        calls = len(fake.calls_to("owners"))
        assert owners.email_of("1") == "rep1@example.com"  # no new call on every lookup
        assert len(fake.calls_to("owners")) == calls


def test_owners_cache_fetches_once_for_many_threads(fake, client) -> None:
    add_owners(fake, 1)  # one page
    owners = Owners(client)
    found: list[str | None] = []
    start = threading.Barrier(8)

    def look_up() -> None:
        start.wait()
        found.append(owners.email_of("1"))

    threads = [threading.Thread(target=look_up) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert found == ["rep1@example.com"] * 8
    assert len(fake.calls_to("owners")) == 1
