"""HubSpot records in each of their three shapes -> the lead, through sources.yml."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.crm.mapping import number_or_text, read_time, to_lead, to_lead_data
from bot.crm.sources import load_sources, parse_sources
from bot.leads import InvalidLeads
from tests.conftest import DATA

HUBSPOT = load_sources(DATA.parent.parent / "sources.example.yml").hubspot
assert HUBSPOT is not None
OWNERS = {"41": "rep2@example.com"}

PROPERTIES = {
    "email": "Ana@Acme.example",
    "firstname": "Ana",
    "lastname": "Ruiz",
    "jobtitle": "Head of Ops",
    "company": "Acme",
    "hubspot_owner_id": "41",
    "hs_analytics_source": "ORGANIC_SEARCH",
    "hs_analytics_source_data_2": "",
    "createdate": "2026-11-01T09:30:00.000Z",
    "numemployees": "250",
    "country": "AU",
    "industry": "",
    "demo_requested_at": "1763629200000",  # epoch ms: 2025-11-20T09:00:00Z
    "last_pricing_visit": "2026-11-20",  # a date property: midnight UTC
    "hs_object_id": "501",
}
EXPECTED = {
    "id": "hubspot:501",
    "email": "ana@acme.example",
    "name": "Ana Ruiz",
    "title": "Head of Ops",
    "company": "Acme",
    "owner": "rep2@example.com",
    "source": "ORGANIC_SEARCH",
    "campaign": None,
    "created_at": datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
    "attributes": {"country": "AU", "employees": 250},
    "signals": [
        {"name": "demo_request", "at": datetime(2025, 11, 20, 9, 0, tzinfo=UTC)},
        {"name": "pricing_page", "at": datetime(2026, 11, 20, tzinfo=UTC)},
    ],
}

SHAPES = {
    "v3 object": {"id": "501", "properties": PROPERTIES, "createdAt": "ignored"},
    "v3 objectId": {"objectId": 501, "properties": PROPERTIES},
    "legacy contact": {
        "vid": 501,
        "properties": {
            name: {"value": value, "versions": []} for name, value in PROPERTIES.items()
        },
    },
    "flat": dict(PROPERTIES),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_maps_to_the_same_lead(shape: str) -> None:
    lead = to_lead(SHAPES[shape], HUBSPOT, owner_email=OWNERS.get)
    assert {name: getattr(lead, name) for name in EXPECTED if name != "created_at"} | {
        "created_at": lead.created_at
    } == EXPECTED


def test_an_unknown_owner_id_leaves_the_owner_to_routing() -> None:
    lead = to_lead(SHAPES["flat"], HUBSPOT, owner_email={}.get)
    assert lead.owner is None
    lead = to_lead(SHAPES["flat"], HUBSPOT)  # no owners lookup at all
    assert lead.owner is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("250", 250),
        ("-3", -3),
        ("12.5", 12.5),
        ("1e3", 1000.0),
        ("0412 345 678", "0412 345 678"),
        ("0412", "0412"),  # a leading zero is a code, not a number
        ("1e999", "1e999"),  # not a finite number: kept as text
        ("nan", "nan"),
        ("1,000", "1,000"),
        ("AU", "AU"),
    ],
)
def test_numbers_read_as_numbers_and_nothing_else(raw, expected) -> None:
    value = number_or_text(raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1763629200000", datetime(2025, 11, 20, 9, tzinfo=UTC)),
        (1763629200000, datetime(2025, 11, 20, 9, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20T10:00:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T21:00:00+11:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T10:00:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),  # HubSpot: UTC
    ],
)
def test_times_read_as_what_they_are(raw, expected) -> None:
    assert read_time(raw) == expected


@pytest.mark.parametrize("raw", ["-5", float("inf"), float("nan"), "2026-13-01", "soon"])
def test_impossible_times_are_refused(raw) -> None:
    with pytest.raises(ValueError):
        read_time(raw)


def test_empty_values_are_absent() -> None:
    record = {"id": "7", "properties": {"email": "", "firstname": " ", "lastname": None}}
    assert to_lead_data(record, HUBSPOT) == {"id": "hubspot:7"}


def test_a_bad_value_is_named_by_its_property() -> None:
    record = {
        "id": "7",
        "properties": {
            "email": "not-an-address",
            "demo_requested_at": "next tuesday",
            "createdate": "99999999999999999",
        },
    }
    with pytest.raises(InvalidLeads) as error:
        to_lead(record, HUBSPOT, index=2)
    assert [(e.index, e.field, e.message) for e in error.value.errors] == [
        (2, "properties.createdate", "epoch milliseconds out of range, got 99999999999999999"),
        (
            2,
            "properties.demo_requested_at",
            "expected epoch milliseconds or an ISO 8601 date or time, got 'next tuesday'",
        ),
    ]
    del record["properties"]["demo_requested_at"], record["properties"]["createdate"]
    with pytest.raises(InvalidLeads) as error:
        to_lead(record, HUBSPOT)
    assert [str(e) for e in error.value.errors] == [
        "email (property email): expected an email address like ana@acme.com"
    ]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("a string", ": expected a HubSpot record"),
        ({"properties": {"email": "a@b.co"}}, "id: no record id"),
        ({"id": "1", "properties": ["email"]}, "properties: expected an object of properties"),
        (
            {"id": "1", "properties": {"firstname": ["A"]}},
            "properties.firstname: expected a single",
        ),
        ({"id": True, "properties": {}}, "id: no record id"),
    ],
)
def test_malformed_records_say_what_is_wrong(record, expected) -> None:
    with pytest.raises(InvalidLeads) as error:
        to_lead(record, HUBSPOT)
    assert expected in "; ".join(f"{e.field}: {e.message}" for e in error.value.errors)


def test_an_attribute_error_names_its_property() -> None:
    source = parse_sources({"hubspot": {"attributes": {"notes": "hs_notes"}}}).hubspot
    record = {"id": "1", "properties": {"hs_notes": "bad\x00value"}}
    with pytest.raises(InvalidLeads) as error:
        to_lead(record, source)
    assert str(error.value) == (
        "attributes.notes (property hs_notes): must not contain a NUL character"
    )


def test_a_salesforce_record_links_to_its_lightning_page_with_the_id_encoded() -> None:
    from bot.crm.links import record_url
    from bot.crm.sources import parse_sources, with_salesforce_url

    sources = with_salesforce_url(
        parse_sources({"salesforce": {"fields": {"email": "Email"}}}),
        " https://acme.my.salesforce.com/ ",
    )
    assert record_url("salesforce:00Q5e000001abcD", sources) == (
        "https://acme.my.salesforce.com/lightning/r/Lead/00Q5e000001abcD/view"
    )
    assert record_url("salesforce:1/../x?y#<!channel>", sources) == (
        "https://acme.my.salesforce.com/lightning/r/Lead/1%2F..%2Fx%3Fy%23%3C%21channel%3E/view"
    )
    assert record_url("salesforce:00Q1", with_salesforce_url(sources, None)) is not None
    unset = parse_sources({"salesforce": {"fields": {"email": "Email"}}})
    assert record_url("salesforce:00Q1", unset) is None  # no SALESFORCE_URL: no link
