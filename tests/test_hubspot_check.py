"""`handoff hubspot check [--fix]` through the CLI entry point, against the fake HubSpot."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from bot.cli import main
from tests.fakehubspot import ALL_SCOPES, TOKEN, FakeHubSpot


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as fake:
        fake.add_owner("1", "rep1@example.com")
        monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
        monkeypatch.setenv("HUBSPOT_API_URL", fake.url)
        yield fake


def invoke(*args: str):
    return CliRunner().invoke(main, ["hubspot", "check", *args], catch_exceptions=False)


def lines(output: str) -> dict[str, str]:
    """`status  subject: detail` lines, subject -> status."""
    found = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        found[rest.strip().split(":")[0]] = status
    return found


def test_a_ready_portal_passes(fake) -> None:
    fake.add_property("handoff_rejection_reason")
    fake.add_property("handoff_rejection_note")
    result = invoke("email", "company")
    assert result.exit_code == 0, result.output
    assert lines(result.stdout) == {
        "token": "ok",
        "property email": "ok",
        "property company": "ok",
        "property hs_lead_status": "ok",
        "property handoff_rejection_reason": "ok",
        "property handoff_rejection_note": "ok",
    }
    assert "accepted; 1 owner(s) readable" in result.stdout


def test_missing_properties_are_named_and_nothing_is_created(fake) -> None:
    result = invoke("demo_requested_at")
    assert result.exit_code == 2
    found = lines(result.stdout)
    assert found["property demo_requested_at"] == "missing"
    assert found["property handoff_rejection_reason"] == "missing"
    assert "`handoff hubspot check --fix` creates it" in result.stdout
    assert "named on the command line; not one of Handoff's own" in result.stdout
    assert "written back (HUBSPOT_NOTE_PROPERTY)" in result.stdout
    assert "3 problem(s) with HubSpot" in result.stderr
    assert fake.calls_to("create_property") == []


def test_fix_creates_handoffs_own_in_their_group_and_never_anyone_elses(fake, monkeypatch) -> None:
    monkeypatch.setenv("HUBSPOT_STATUS_PROPERTY", "custom_lead_status")
    result = invoke("--fix", "demo_requested_at")
    assert result.exit_code == 2  # the two not Handoff's own are still missing
    found = lines(result.stdout)
    assert found["property handoff_rejection_reason"] == "created"
    assert found["property handoff_rejection_note"] == "created"
    assert found["property custom_lead_status"] == "missing"
    assert found["property demo_requested_at"] == "missing"
    created = [call.body["name"] for call in fake.calls_to("create_property")]
    assert created == ["handoff_rejection_reason", "handoff_rejection_note"]
    assert fake.properties["handoff_rejection_note"]["groupName"] == "handoff"
    assert [call.body["name"] for call in fake.calls_to("create_group")] == ["handoff"]

    monkeypatch.delenv("HUBSPOT_STATUS_PROPERTY")
    again = invoke("--fix")
    assert again.exit_code == 0, again.output
    assert len(fake.calls_to("create_property")) == 2  # nothing created twice


def test_a_wrong_token_is_refused(fake, monkeypatch) -> None:
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-na1-not-the-token")
    result = invoke()
    assert result.exit_code == 2
    assert lines(result.stdout) == {"token": "refused"}
    assert "the token was refused (401)" in result.stdout
    assert "not-the-token" not in result.output


def test_fix_without_the_schema_write_scope_names_it(monkeypatch) -> None:
    with FakeHubSpot(scopes=ALL_SCOPES - {"crm.schemas.contacts.write"}) as fake:
        monkeypatch.setenv("HUBSPOT_TOKEN", TOKEN)
        monkeypatch.setenv("HUBSPOT_API_URL", fake.url)
        result = invoke("--fix")
    assert result.exit_code == 2
    assert lines(result.stdout)["property handoff_rejection_reason"] == "refused"
    assert "missing scope (403)" in result.stdout
    assert "crm.schemas.contacts.write" in result.stdout


def test_an_unreachable_hubspot_and_no_token_are_clear(fake, monkeypatch) -> None:
    fake.set_outage(True)
    result = invoke()
    assert result.exit_code == 2
    assert lines(result.stdout) == {"token": "unavailable"}
    monkeypatch.delenv("HUBSPOT_TOKEN")
    result = invoke()
    assert result.exit_code == 2
    assert "HUBSPOT_TOKEN: required" in result.stderr
