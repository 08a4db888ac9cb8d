"""Loading the shared definition: every problem reported with its path, in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from bot.blocks.common import CHECKBOX_OPTIONS, GROUP_OPTIONS, OPTION_TEXT, OPTION_VALUE
from bot.cli import main
from bot.definition import REASON_ID_COLUMN, DefinitionError, load_definition, parse_definition
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


# --- what Slack would refuse or silently drop, refused by `handoff definition check` ---------


def check(tmp_path: Path, edit) -> Result:
    """`handoff definition check FILE` on tests/data/definition.yml after `edit`."""
    data = yaml.safe_load((DATA / "definition.yml").read_text())
    edit(data)
    path = tmp_path / "qualification.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return CliRunner().invoke(main, ["definition", "check", str(path)])


def refused(result: Result) -> list[str]:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.stderr.splitlines()[1:]


def reason(reason_id: str, criterion: str | None = None, label: str = "A reason") -> dict:
    item = {"id": reason_id, "label": label, "action": "recycle"}
    if criterion:
        item["criterion"] = criterion
    return item


def test_ids_longer_than_a_slack_option_value_are_refused(tmp_path: Path) -> None:
    def edit(data):
        data["reasons"][3]["id"] = "r" * 151
        data["commercial"][1]["id"] = "c" * 151
        data["reasons"][3]["criterion"] = "c" * 151  # the reason that points at it

    assert refused(check(tmp_path, edit)) == [
        f"commercial[1].id: at most {OPTION_VALUE} characters (Slack's option value limit), "
        "got 151",
        # a handoff stores the reason id in a narrower column: that is the binding limit
        f"reasons[3].id: at most {REASON_ID_COLUMN} characters "
        "(the longest reason id a handoff can store), got 151",
    ]


def test_a_reason_id_the_store_cannot_hold_is_refused(tmp_path: Path) -> None:
    def edit(data):
        data["reasons"][0]["id"] = "r" * (REASON_ID_COLUMN + 1)
        data["reasons"][1]["id"] = "r" * REASON_ID_COLUMN  # exactly at the limit: fine

    assert refused(check(tmp_path, edit)) == [
        f"reasons[0].id: at most {REASON_ID_COLUMN} characters "
        f"(the longest reason id a handoff can store), got {REASON_ID_COLUMN + 1}"
    ]


def test_more_commercial_items_than_slack_checkboxes_are_refused(tmp_path: Path) -> None:
    def edit(data):
        data["commercial"] += [
            {"id": f"item_{i}", "label": f"Item {i}"} for i in range(CHECKBOX_OPTIONS - 1)
        ]

    assert refused(check(tmp_path, edit)) == [
        f"commercial: at most {CHECKBOX_OPTIONS} items (Slack's checkbox limit), "
        f"got {CHECKBOX_OPTIONS + 1}"
    ]

    def ten(data):
        data["commercial"] += [{"id": f"item_{i}", "label": f"Item {i}"} for i in range(8)]

    assert check(tmp_path, ten).exit_code == 0


def test_more_reasons_than_one_menu_group_holds_are_refused(tmp_path: Path) -> None:
    def edit(data):
        # the reject menu groups reasons by what they point at: fit, commercial, other
        data["reasons"] = (
            [reason(f"fit_{i}", "size") for i in range(GROUP_OPTIONS + 1)]
            + [reason(f"deal_{i}", "budget") for i in range(GROUP_OPTIONS)]
            + [reason(f"other_{i}") for i in range(GROUP_OPTIONS + 2)]
        )

    assert refused(check(tmp_path, edit)) == [
        f"reasons: at most {GROUP_OPTIONS} reasons may point at fit criteria (Slack's limit of "
        f"options in one group of the reject menu), got {GROUP_OPTIONS + 1}",
        f"reasons: at most {GROUP_OPTIONS} reasons may point at no criterion (Slack's limit of "
        f"options in one group of the reject menu), got {GROUP_OPTIONS + 2}",
    ]


def test_labels_slack_would_cut_are_refused(tmp_path: Path) -> None:
    def edit(data):
        data["commercial"][0]["label"] = "B" * (OPTION_TEXT + 1)
        # the reject menu shows "<label> → <where the lead goes>" as one option text
        data["reasons"][0]["label"] = "x" * 61  # disqualify: 61 + " → disqualified" > 75
        data["reasons"][2]["label"] = "y" * 57  # recycle: 57 + " → back to nurture" = 75
        data["reasons"][3]["label"] = "z" * 58

    assert refused(check(tmp_path, edit)) == [
        f"commercial[0].label: at most {OPTION_TEXT} characters (Slack's option text limit), "
        f"got {OPTION_TEXT + 1}",
        "reasons[0].label: at most 60 characters (Slack's option text limit is 75 and the "
        "reject menu adds ' → disqualified'), got 61",
        "reasons[3].label: at most 57 characters (Slack's option text limit is 75 and the "
        "reject menu adds ' → back to nurture'), got 58",
    ]


def test_a_channel_slack_cannot_have_is_refused(tmp_path: Path) -> None:
    def edit(data):
        data["digest"]["channel"] = "#Marketing team"
        data["handoff"]["sla"]["escalation_channel"] = "#" + "s" * 81

    assert refused(check(tmp_path, edit)) == [
        "handoff.sla.escalation_channel: expected a Slack channel like #marketing or an id "
        f"(no spaces, at most 80 characters), got '#{'s' * 81}'",
        "digest.channel: expected a Slack channel like #marketing or an id "
        "(no spaces, at most 80 characters), got '#Marketing team'",
    ]
