"""The Salesforce client over real HTTP against the fake Salesforce: the client
credentials token (cached, fetched again once on a 401), the SOQL query and its
`nextRecordsUrl` pages, rate limits and outages, and the record's link."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from bot.salesforce.api import (
    SalesforceClient,
    SalesforceError,
    SalesforceRefused,
    SalesforceUnavailable,
)
from bot.salesforce.links import salesforce_record_url
from tests.fakesalesforce import CLIENT_ID, CLIENT_SECRET, FakeSalesforce

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    with FakeSalesforce() as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def client(fake: FakeSalesforce, http: httpx.Client) -> SalesforceClient:
    return SalesforceClient(http, fake.url, CLIENT_ID, CLIENT_SECRET)


def add_leads(fake: FakeSalesforce, count: int, *, start: datetime = T0) -> list[str]:
    return [
        fake.add_lead(start + timedelta(seconds=n), Email=f"l{n}@acme.example", Company="Acme")
        for n in range(count)
    ]


def test_one_token_serves_every_call_until_it_expires(fake, client) -> None:
    add_leads(fake, 3)
    client.query_changed("Lead", ["Email"], T0)
    client.describe("Lead")
    [token] = fake.calls_to("token")
    assert token.body == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    issued = token.response["access_token"]
    calls = fake.calls_to("query") + fake.calls_to("describe")
    assert all(c.headers["authorization"] == f"Bearer {issued}" for c in calls)


def test_an_expired_token_is_fetched_again_once_and_the_call_goes_through(fake, client) -> None:
    add_leads(fake, 2)
    client.query_changed("Lead", ["Email"], T0)
    fake.expire_tokens()
    page = client.query_changed("Lead", ["Email"], T0)
    assert len(page.records) == 2
    expired, retried = fake.calls_to("query")[1:]
    assert (expired.status, retried.status) == (401, 200)
    assert len(fake.calls_to("token")) == 2


def test_a_token_refused_twice_is_refused_without_showing_it(fake, client) -> None:
    client.describe("Lead")
    fake.expire_tokens()
    fake.fail_next("describe", status=401, error_code="INVALID_SESSION_ID")  # the 2nd one too
    fake.fail_next("describe", status=401, error_code="INVALID_SESSION_ID")
    with pytest.raises(SalesforceRefused, match=r"new access token was refused too \(401\)") as e:
        client.describe("Lead")
    assert "token-" not in str(e.value)  # no token in the message
    assert len(fake.calls_to("token")) == 2  # one refresh, not a loop


def test_wrong_client_credentials_are_refused_and_the_secret_is_not_shown(fake, http) -> None:
    client = SalesforceClient(http, fake.url, CLIENT_ID, "not-the-consumer-secret")
    with pytest.raises(SalesforceRefused, match="invalid_client: invalid client credentials") as e:
        client.describe("Lead")
    assert "not-the-consumer-secret" not in str(e.value)
    assert "SALESFORCE_CLIENT_SECRET" in str(e.value)


def test_the_query_pages_through_next_records_url(fake, client) -> None:
    ids = add_leads(fake, 450)
    page = client.query_changed("Lead", ["Email", "Company"], T0, batch_size=200)
    found, pages = [r["Id"] for r in page.records], 1
    while page.next_url:
        page = client.query_more(page.next_url, batch_size=200)
        found += [r["Id"] for r in page.records]
        pages += 1
    assert found == ids and pages == 3 and page.total == 450
    first = fake.calls_to("query")[0]
    assert first.query["q"] == (
        "SELECT Id, SystemModstamp, Email, Company FROM Lead "
        "WHERE SystemModstamp >= 2026-11-27T09:00:00Z ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert first.headers["sforce-query-options"] == "batchSize=200"
    record = fake.calls_to("query_more")[-1].response["records"][0]
    assert set(record) == {"attributes", "Id", "SystemModstamp", "Email", "Company"}


def test_a_next_records_url_elsewhere_is_not_followed(fake, client) -> None:
    for url in ("https://evil.example/services/data/v62.0/query/x", "/services/data/v62.0/../x"):
        with pytest.raises(SalesforceError, match="unexpected nextRecordsUrl"):
            client.query_more(url)
    assert fake.calls_to("query_more") == []


@pytest.mark.parametrize("status", [429, 503])
def test_a_rate_limit_or_503_with_retry_after_is_waited_out(fake, client, status) -> None:
    add_leads(fake, 1)
    fake.fail_next("query", status=status, retry_after=1, error_code="REQUEST_LIMIT_EXCEEDED")
    assert len(client.query_changed("Lead", ["Email"], T0).records) == 1
    refused, answered = fake.calls_to("query")
    assert (refused.status, answered.status) == (status, 200)
    assert answered.at - refused.at >= 0.95  # Retry-After: 1 was obeyed


def test_a_long_retry_after_is_left_for_later_with_its_time(fake, http) -> None:
    client = SalesforceClient(http, fake.url, CLIENT_ID, CLIENT_SECRET, max_wait=5)
    fake.fail_next("query", status=429, retry_after=60)
    with pytest.raises(SalesforceUnavailable, match="retry after 60 s") as caught:
        client.query_changed("Lead", ["Email"], T0)
    assert caught.value.retry_after == 60
    assert len(fake.calls_to("query")) == 1


def test_outages_and_a_spent_api_limit_are_unavailable(fake, client, http) -> None:
    fake.fail_next("describe", status=500, error_code="UNKNOWN_EXCEPTION")
    with pytest.raises(SalesforceUnavailable, match="Salesforce answered 500"):
        client.describe("Lead")
    fake.fail_next("describe", status=403, error_code="REQUEST_LIMIT_EXCEEDED")
    with pytest.raises(SalesforceUnavailable, match="API request limit is spent"):
        client.describe("Lead")
    fake.set_outage(True)  # the token endpoint too
    with pytest.raises(SalesforceUnavailable, match="503"):
        SalesforceClient(http, fake.url, CLIENT_ID, CLIENT_SECRET).describe("Lead")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(SalesforceUnavailable, match="ConnectError"):
        SalesforceClient(http, closed, CLIENT_ID, CLIENT_SECRET).describe("Lead")


def test_an_unknown_field_is_an_error_naming_it(fake, client) -> None:
    with pytest.raises(SalesforceError, match="INVALID_FIELD: No such column 'Score__c'"):
        client.query_changed("Lead", ["Score__c"], T0)
    assert len(fake.calls_to("query")) == 1  # not retried


def test_update_patches_the_record(fake, client) -> None:
    fake.add_field("Handoff_Status__c")
    [lead_id] = add_leads(fake, 1)
    client.update("Lead", lead_id, {"Handoff_Status__c": "Accepted"})
    assert fake.leads[lead_id]["values"]["Handoff_Status__c"] == "Accepted"
    with pytest.raises(SalesforceError, match="404 NOT_FOUND"):
        client.update("Lead", "00Q000000000404AAA", {"Handoff_Status__c": "Accepted"})


def test_many_threads_share_one_token(fake, client) -> None:
    start = threading.Barrier(8)
    errors: list[Exception] = []

    def describe() -> None:
        start.wait()
        try:
            client.describe("Lead")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=describe) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(fake.calls_to("token")) == 1


def test_the_record_link_encodes_the_id() -> None:
    assert (
        salesforce_record_url("https://acme.my.salesforce.com/", "00Q5g00000AbCdEAAZ")
        == "https://acme.my.salesforce.com/lightning/r/Lead/00Q5g00000AbCdEAAZ/view"
    )
    assert salesforce_record_url("https://x.example", "a/../b?c") == (
        "https://x.example/lightning/r/Lead/a%2F..%2Fb%3Fc/view"
    )
