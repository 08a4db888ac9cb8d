"""sources.yml's `salesforce:` section: API names (and relationship paths) only, the
write-back fields, every problem by its path; and a SOQL record mapped to a lead."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from click.testing import CliRunner

from bot.cli import main
from bot.crm.mapping import to_lead
from bot.crm.sources import DEFAULT_WRITE_BACK, SourcesError, parse_sources
from bot.leads import InvalidLeads
from bot.salesforce.api import changed_since_soql
from bot.salesforce.poll import as_record
from bot.settings import Settings
from tests.conftest import DATA

MAPPING = {
    "fields": {
        "email": "Email",
        "name": ["FirstName", "LastName"],
        "company": "Company",
        "owner": "Owner.Email",
        "created_at": "CreatedDate",
    },
    "attributes": {"employees": "NumberOfEmployees", "country": "Country"},
    "signals": {"demo_request": "Demo_Requested__c"},
}


def problems(data) -> list[str]:
    with pytest.raises(SourcesError) as error:
        parse_sources(data)
    return error.value.problems


def test_a_salesforce_mapping_reads_api_names_and_the_owners_email() -> None:
    source = parse_sources({"salesforce": {**MAPPING, "poll_every": "1m"}}).salesforce
    assert source is not None and (source.crm, source.object) == ("salesforce", "Lead")
    assert source.fields["owner"] == ("Owner.Email",)
    assert source.signals == {"demo_request": "Demo_Requested__c"}
    assert source.poll_every == 60
    assert source.write_back == DEFAULT_WRITE_BACK  # Handoff's own fields unless told
    assert "Owner.Email" in source.properties


def test_write_back_fields_are_configurable_or_off() -> None:
    custom = {"status": "Sales_Verdict__c", "reason": "Why__c", "note": "Rep_Note__c"}
    source = parse_sources({"salesforce": {**MAPPING, "write_back": custom}}).salesforce
    assert source is not None and source.write_back == custom
    off = parse_sources({"salesforce": {**MAPPING, "write_back": False}}).salesforce
    assert off is not None and off.write_back == {}


def test_every_salesforce_problem_is_named_by_its_path() -> None:
    data = {
        "salesforce": {
            "object": "Lead; DELETE",
            "fields": {
                "email": "Email FROM User --",
                "owner": "OwnerId",
                "name": ["FirstName", "Last-Name"],
                "title": "Title_",
            },
            "attributes": {"employees": "Account.Owner.Manager.Manager.Manager.Name"},
            "signals": {"demo_request": "Demo__c)"},
            "write_back": {"status": "Owner.Email", "stage": "Stage__c", "reason": 7},
        }
    }
    names = "a field API name like Email or Custom__c"
    path = f"{names} (or a relationship path like Owner.Email)"
    assert problems(data) == [
        f"salesforce.object: expected {names}, got 'Lead; DELETE'",
        f"salesforce.fields.email: expected {path}, got 'Email FROM User --'",
        "salesforce.fields.owner: expected the owner's email, like Owner.Email, got OwnerId",
        f"salesforce.fields.name[1]: expected {path}, got 'Last-Name'",
        f"salesforce.fields.title: expected {path}, got 'Title_'",
        f"salesforce.attributes.employees: expected {path}, "
        "got 'Account.Owner.Manager.Manager.Manager.Name'",
        f"salesforce.signals.demo_request: expected {path}, got 'Demo__c)'",
        "salesforce.write_back.stage: unknown key",
        f"salesforce.write_back.status: expected {names}, got 'Owner.Email'",
        f"salesforce.write_back.reason: expected {names}, got 7",
    ]


def test_each_crm_has_its_own_write_back_keys() -> None:
    data = {"hubspot": {"fields": {"email": "email"}, "write_back": {"reason": "Why__c"}}}
    assert [p.split(";")[0] for p in problems(data)] == ["hubspot.write_back.reason: unknown key"]


def test_definition_check_describes_the_salesforce_mapping(tmp_path, monkeypatch) -> None:
    path = tmp_path / "sources.yml"
    path.write_text("salesforce:\n  fields: {email: Email, owner: Owner.Email}\n  poll_every: 1m\n")
    monkeypatch.setenv("HANDOFF_SOURCES", str(path))
    result = CliRunner().invoke(main, ["definition", "check", str(DATA / "definition.yml")])
    assert result.exit_code == 0, result.output
    assert "(salesforce: Lead, 2 properties, polled every 60s)" in result.stdout


def test_the_query_selects_the_mapped_fields_once_from_a_time_written_here() -> None:
    soql = changed_since_soql(
        "Lead", ["Email", "email", "Id", "Owner.Email"], datetime(2026, 11, 27, 10, 0, 5, 999)
    )
    assert soql == (
        "SELECT Id, SystemModstamp, Email, Owner.Email FROM Lead "
        "WHERE SystemModstamp >= 2026-11-27T10:00:05Z ORDER BY SystemModstamp ASC, Id ASC"
    )


def soql_record(**values) -> dict:
    record = {
        "attributes": {"type": "Lead", "url": "/services/data/v62.0/sobjects/Lead/00Q1"},
        "Id": "00Q000000000001AAA",
        "SystemModstamp": "2026-11-27T10:00:00.000+0000",
        "Email": "ana@acme.example",
        "FirstName": "Ana",
        "LastName": "Ruiz",
        "Company": "Acme",
        "CreatedDate": "2026-01-15T08:00:00.000+0000",
        "NumberOfEmployees": 250,
        "Country": "AU",
        "Demo_Requested__c": "2026-11-26",
        "Owner": {"attributes": {"type": "User"}, "Email": "rep2@example.com"},
    }
    record.update(values)
    return record


def test_a_soql_record_maps_to_a_lead() -> None:
    source = parse_sources({"salesforce": MAPPING}).salesforce
    lead = to_lead(as_record(soql_record()), source)
    assert lead.id == "salesforce:00Q000000000001AAA"
    assert (lead.email, lead.name, lead.company) == ("ana@acme.example", "Ana Ruiz", "Acme")
    assert lead.owner == "rep2@example.com"
    assert lead.attributes == {"employees": 250, "country": "AU"}
    assert lead.created_at == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    assert [(s["name"], s["at"]) for s in lead.signals] == [
        ("demo_request", datetime(2026, 11, 26, tzinfo=UTC))
    ]


def test_a_lead_without_an_owner_is_left_to_routing() -> None:
    source = parse_sources({"salesforce": MAPPING}).salesforce
    assert to_lead(as_record(soql_record(Owner=None)), source).owner is None


def test_a_bad_value_is_named_by_its_field() -> None:
    source = parse_sources({"salesforce": MAPPING}).salesforce
    with pytest.raises(InvalidLeads) as caught:
        to_lead(as_record(soql_record(Email="not-an-address")), source)
    [error] = caught.value.errors
    assert error.field == "email (property Email)"


def test_the_consumer_secret_is_masked_in_the_log() -> None:
    settings = Settings(salesforce_client_secret="consumer-secret-value")
    assert "consumer-secret-value" in settings.secrets()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"salesforce_url": "https://acme.my.salesforce.com"}, "SALESFORCE_CLIENT_ID: required"),
        (
            {
                "salesforce_url": "acme.my.salesforce.com",
                "salesforce_client_id": "id",
                "salesforce_client_secret": "secret",
            },
            "SALESFORCE_URL: expected the org's My Domain URL",
        ),
    ],
)
def test_salesforce_settings_come_all_together(values, expected) -> None:
    settings = Settings(**values)
    assert any(problem.startswith(expected) for problem in settings.problems_for_run())
    assert not settings.salesforce_configured


def test_the_readme_example_validates_against_the_example_definition() -> None:
    readme = (DATA.parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Connect Salesforce", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    signal_ids = frozenset({"demo_request", "pricing_page"})
    source = parse_sources(yaml.safe_load(block), signal_ids=signal_ids).salesforce
    assert source is not None and source.fields["owner"] == ("Owner.Email",)
    assert source.write_back == DEFAULT_WRITE_BACK and source.poll_every == 60
