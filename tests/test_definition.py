"""Loading the shared definition: every problem reported with its path, in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.definition import DefinitionError, load_definition, parse_definition
from bot.explain import describe_definition
from tests.conftest import DATA

ROOT = Path(__file__).parent.parent


def problems_of(edit) -> list[str]:
    data = yaml.safe_load((DATA / "definition.yml").read_text())
    edit(data)
    with pytest.raises(DefinitionError) as error:
        parse_definition(data)
    return error.value.problems


def test_the_example_definition_is_valid_and_explains_itself() -> None:
    definition = load_definition(ROOT / "qualification.yml")
    text = describe_definition(definition)
    assert "A lead is qualified when it passes every fit criterion" in text
    assert "scores at least 50 points from Requested a demo (+40)" in text


def test_every_problem_is_listed_with_its_path() -> None:
    def edit(data):
        data["fit"][1]["in"] = "AU"
        data["reasons"][0]["criterion"] = "sise"
        data["timezone"] = "Australia/Sydny"
        data["handoff"]["sla"]["respond_within"] = "4 hours"
        data["handoff"]["routing"][1]["round_robin"][0] = "rep1"
        data["intent"]["signals"][1]["id"] = "demo_request"
        data["thresholds"]["hott"] = 3

    assert problems_of(edit) == [
        "timezone: 'Australia/Sydny' is not an IANA time zone (like Australia/Sydney)",
        "fit[1].in: expected a list, got 'AU'",
        "thresholds.hott: unknown key; did you mean 'hot'?",
        "handoff.sla.respond_within: expected a duration like 30m, 4h, 1d or 1h30m, got '4 hours'",
        "handoff.routing[1].round_robin[0]: expected an email address, got 'rep1'",
        "reasons[0].criterion: no criterion 'sise'; did you mean 'size'?",
        "intent.signals[1].id: duplicate id 'demo_request' (also at intent.signals[0].id)",
    ]


def test_missing_sections_and_wrong_types() -> None:
    def edit(data):
        del data["digest"]
        data["version"] = "three"
        data["fit"][0]["between"] = [5000, 50]
        data["reasons"][1]["action"] = "bin"

    assert problems_of(edit) == [
        "digest: required",
        "version: expected a whole number, got 'three'",
        "fit[0].between: low (5000) is above high (50)",
        "reasons[1].action: expected recycle or disqualify, got 'bin'",
        "digest: expected a mapping, got nothing",
    ]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("version: 1\nfit: [\n")
    with pytest.raises(DefinitionError) as error:
        load_definition(path)
    [problem] = error.value.problems
    assert problem.startswith("line 3, column 1: not valid YAML")
