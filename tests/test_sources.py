"""sources.yml: the CRM mapping, validated like the definition (every problem, by path),
and checked by `handoff definition check` (exit 2 with the problems)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from bot.cli import main
from bot.crm.sources import SourcesError, load_sources, parse_sources, read_sources
from bot.settings import Settings
from tests.conftest import DATA

ROOT = DATA.parent.parent


def problems(data) -> list[str]:
    with pytest.raises(SourcesError) as error:
        parse_sources(data)
    return error.value.problems


def test_the_example_file_validates_against_the_shipped_definition() -> None:
    sources = load_sources(
        ROOT / "sources.example.yml", signal_ids=frozenset({"demo_request", "pricing_page"})
    )
    hubspot = sources.hubspot
    assert hubspot is not None and sources.salesforce is None
    assert hubspot.object == "contacts"
    assert hubspot.fields["name"] == ("firstname", "lastname")
    assert hubspot.fields["owner"] == ("hubspot_owner_id",)
    assert hubspot.attributes["employees"] == "numemployees"
    assert hubspot.signals == {
        "demo_request": "demo_requested_at",
        "pricing_page": "last_pricing_visit",
    }
    assert hubspot.poll_every is None
    assert "firstname" in hubspot.properties and "createdate" in hubspot.properties


def test_poll_every_and_salesforce_take_the_same_shape() -> None:
    sources = parse_sources(
        {
            "hubspot": {"fields": {"email": "email"}, "poll_every": "1m30s"},
            "salesforce": {"fields": {"email": "Email", "company": "Company"}, "poll_every": "5m"},
        }
    )
    assert sources.hubspot and sources.hubspot.poll_every == 90
    assert sources.salesforce and sources.salesforce.object == "Lead"
    assert sources.salesforce.poll_every == 300


def test_every_problem_is_named_by_its_path() -> None:
    data = {
        "hubspot": {
            "object": "contacts",
            "fields": {
                "id": "hs_object_id",
                "owner": 12,
                "email": ["email", "work_email"],
                "name": ["firstname", ""],
                "industry": "industry",
            },
            "attributes": {"employees": "num employees"},
            "signals": {"Demo": "demo_at", "pricing_page": None},
            "poll_every": "often",
            "poll_evry": True,
        },
        "pipedrive": {},
    }
    assert problems(data) == [
        "pipedrive: unknown key",
        "hubspot.poll_evry: unknown key; did you mean 'poll_every'?",
        "hubspot.fields.industry: unknown key",
        "hubspot.fields.id: not mappable: the lead id is hubspot:<record id>",
        "hubspot.fields.owner: expected a property name (letters, digits and _), got 12",
        "hubspot.fields.email: expected one property name, got a list (email is not joined)",
        "hubspot.fields.name[1]: expected a property name (letters, digits and _), got ''",
        "hubspot.attributes.employees: expected a property name (letters, digits and _), "
        "got 'num employees'",
        "hubspot.signals.Demo: expected a signal id of lower-case letters, digits and _",
        "hubspot.signals.pricing_page: expected a property name (letters, digits and _), "
        "got nothing",
        "hubspot.poll_every: expected a duration like 30s, 5m or 1h, got 'often'",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "expected a mapping, got a list"),
        ({}, "expected a hubspot: or salesforce: section"),
        ({"hubspot": {"object": "contacts"}}, "hubspot: maps nothing"),
        ({"hubspot": {"fields": {"email": "email"}, "poll_every": "1s"}}, "expected at least 5s"),
        ({"hubspot": {"fields": {"email": "email"}, "poll_every": 30}}, "expected a duration"),
    ],
)
def test_malformed_files_are_refused(data, expected) -> None:
    assert any(expected in problem for problem in problems(data))


def test_no_file_is_no_connector_but_a_named_missing_file_is_a_problem(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert read_sources(None) is None
    with pytest.raises(SourcesError) as error:
        read_sources(str(tmp_path / "nope.yml"))
    assert error.value.problems == [f"HANDOFF_SOURCES: {tmp_path / 'nope.yml'} does not exist"]


def check(tmp_path: Path, monkeypatch, data) -> Result:
    path = tmp_path / "sources.yml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    monkeypatch.setenv("HANDOFF_SOURCES", str(path))
    return CliRunner().invoke(main, ["definition", "check", str(DATA / "definition.yml")])


def test_definition_check_covers_the_mapping(tmp_path: Path, monkeypatch) -> None:
    good = {"hubspot": {"fields": {"email": "email"}, "signals": {"webinar": "webinar_at"}}}
    result = check(tmp_path, monkeypatch, good)
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'sources.yml'}: OK (hubspot: contacts, 2 properties, push only)" in (
        result.stdout
    )

    bad = {
        "hubspot": {
            "fields": {"owner": "hubspot_owner_id"},
            "signals": {"demo_requested": "demo_at"},
        }
    }
    result = check(tmp_path, monkeypatch, bad)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'sources.yml'}: the CRM mapping has 1 problem(s):",
        "hubspot.signals.demo_requested: not a signal of the definition's intent.signals; "
        "did you mean 'demo_request'?",
    ]


def test_definition_check_reports_broken_yaml_with_its_line(tmp_path: Path, monkeypatch) -> None:
    result = check(tmp_path, monkeypatch, "hubspot:\n  fields: [\n")
    assert result.exit_code == 2
    assert "not valid YAML" in result.stderr and "line 3" in result.stderr


def test_the_hubspot_secrets_are_masked_in_the_log() -> None:
    settings = Settings(
        hubspot_client_secret="client-secret-value", hubspot_webhook_key="webhook-key-value"
    )
    assert {"client-secret-value", "webhook-key-value"} <= set(settings.secrets())
