"""`handoff salesforce check` through the CLI entry point, against the fake Salesforce."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from tests.conftest import DATA
from tests.fakesalesforce import CLIENT_ID, CLIENT_SECRET, FakeSalesforce
from tests.test_hubspot_check import lines

SOURCES = """
salesforce:
  fields: {email: Email, company: Company, owner: Owner.Email, title: Job_Title__c}
  signals: {demo_request: Demo_Requested__c}
  write_back: {status: Handoff_Status__c, reason: Handoff_Reason__c}
"""


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeSalesforce]:
    path = tmp_path / "sources.yml"
    path.write_text(SOURCES)
    monkeypatch.setenv("HANDOFF_SOURCES", str(path))
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    with FakeSalesforce() as fake:
        monkeypatch.setenv("SALESFORCE_URL", fake.url)
        monkeypatch.setenv("SALESFORCE_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", CLIENT_SECRET)
        yield fake


def invoke():
    return CliRunner().invoke(main, ["salesforce", "check"], catch_exceptions=False)


def test_a_ready_org_passes(fake) -> None:
    for name in ("Job_Title__c", "Demo_Requested__c", "Handoff_Status__c", "Handoff_Reason__c"):
        fake.add_field(name)
    result = invoke()
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == {
        "token": "ok",
        "object Lead": "ok",
        "field Email": "ok",
        "field Company": "ok",
        "field Owner.Email": "ok",
        "field Job_Title__c": "ok",
        "field Demo_Requested__c": "ok",
        "field Handoff_Status__c": "ok",
        "field Handoff_Reason__c": "ok",
    }
    assert f"issued for {fake.url}" in result.stdout
    assert "relationship to Group, User" in result.stdout


def test_missing_and_read_only_fields_are_named(fake) -> None:
    fake.add_field("Job_Title__c")
    fake.add_field("Handoff_Status__c", updateable=False)
    result = invoke()
    assert result.exit_code == 2
    found = lines(result.stdout)
    assert found["field Demo_Requested__c"] == "missing"
    assert found["field Handoff_Status__c"] == "read-only"
    assert found["field Handoff_Reason__c"] == "missing"
    assert "written back (write_back.reason); create it in Setup > Object Manager" in (
        result.stdout
    )
    assert "3 problem(s) with Salesforce" in result.stderr
    assert fake.calls_to("update") == []  # a check changes nothing


def test_wrong_credentials_are_refused_without_showing_the_secret(fake, monkeypatch) -> None:
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "not-the-consumer-secret")
    result = invoke()
    assert result.exit_code == 2
    assert lines(result.stdout) == {"token": "refused"}
    assert "invalid_client" in result.stdout
    assert "not-the-consumer-secret" not in result.output


def test_an_unreachable_org_and_missing_settings_are_clear(fake, monkeypatch) -> None:
    fake.set_outage(True)
    result = invoke()
    assert result.exit_code == 2
    assert lines(result.stdout) == {"token": "unavailable"}
    monkeypatch.delenv("SALESFORCE_CLIENT_SECRET")
    result = invoke()
    assert result.exit_code == 2
    assert "SALESFORCE_CLIENT_SECRET: required" in result.stderr
    assert "Traceback" not in result.output
