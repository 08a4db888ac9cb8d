"""describe(): what changed between two definitions, in the lines a person would write."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.changes import describe
from bot.definition import Definition, parse_definition

DATA = yaml.safe_load((Path(__file__).parent / "data" / "definition.yml").read_text())


def changed(edit: Any) -> tuple[Definition, Definition]:
    """The test definition, and a copy with `edit(data)` applied to its YAML data."""
    data = copy.deepcopy(DATA)
    edit(data)
    return parse_definition(DATA), parse_definition(data)


def test_the_same_definition_has_no_lines():
    assert describe(*changed(lambda d: None)) == []


def test_a_version_bump_alone_is_no_change_of_rules():
    assert describe(*changed(lambda d: d.update(version=4))) == []


@pytest.mark.parametrize(
    ("edit", "lines"),
    [
        (lambda d: d["thresholds"].update(mql=70), ["MQL threshold 50 → 70"]),
        (lambda d: d["thresholds"].update(hot=90), ["hot threshold 80 → 90"]),
        (lambda d: d["intent"].update(window_days=14), ["intent window 30 → 14 days"]),
        (
            lambda d: d["fit"][0].update(between=[100, 5000], label="100-5000 employees"),
            ["fit `size` between 50–5000 → 100–5000"],
        ),
        (
            lambda d: d["fit"][1].update(**{"in": ["AU", "NZ", "SG"]}),
            ["fit `region` AU, NZ → AU, NZ, SG (added SG)"],
        ),
        (
            lambda d: d["fit"][1].update(**{"in": ["AU"]}),
            ["fit `region` AU, NZ → AU (removed NZ)"],
        ),
        (
            lambda d: (d["fit"][1].pop("in"), d["fit"][1].update(not_in=["US"])),
            ["fit `region` AU, NZ → not US"],
        ),
        (
            lambda d: (d["fit"][0].pop("between"), d["fit"][0].update(gte=100)),
            ["fit `size` between 50–5000 → at least 100"],
        ),
        (
            lambda d: d["fit"][0].update(allow_missing=True),
            ["fit `size` now passes when the value is missing"],
        ),
        (
            lambda d: d["fit"][1].update(label="Based in AU or NZ"),
            ['fit `region` label "AU or NZ" → "Based in AU or NZ"'],
        ),
        (
            lambda d: d["fit"].append(
                {
                    "id": "industry",
                    "label": "No agencies",
                    "field": "industry",
                    "not_in": ["Agency"],
                }
            ),
            ["fit `industry` added (industry not Agency)"],
        ),
        (
            lambda d: (
                d.update(fit=d["fit"][:1])
                or d.update(reasons=[r for r in d["reasons"] if r["id"] != "wrong_region"])
            ),
            ["fit `region` removed", "reason `wrong_region` removed"],
        ),
        (
            lambda d: d["intent"]["signals"][1].update(points=5),
            ["signal `pricing_page` points 10 → 5"],
        ),
        (
            lambda d: d["intent"]["signals"][1].update(max=20),
            ["signal `pricing_page` cap 30 → 20"],
        ),
        (lambda d: d["intent"]["signals"][1].pop("max"), ["signal `pricing_page` cap 30 removed"]),
        (
            lambda d: d["intent"]["signals"][0].update(max=40),
            ["signal `demo_request` capped at 40"],
        ),
        (
            lambda d: d["intent"]["signals"].append(
                {"id": "trial", "label": "Started a trial", "points": 30, "max": 30}
            ),
            ["signal `trial` added (30 points, cap 30)"],
        ),
        (
            lambda d: d["reasons"].insert(
                0, {"id": "no_need", "label": "No need", "action": "disqualify"}
            ),
            ["reason `no_need` added"],
        ),
        (
            lambda d: d["reasons"][2].update(action="disqualify", criterion="timeline"),
            [
                "reason `no_budget` points at `budget` → `timeline`",
                "reason `no_budget` recycle → disqualify",
            ],
        ),
        (
            lambda d: d["reasons"][0].update(note_required=True),
            ["reason `too_small` now needs a note"],
        ),
        (
            lambda d: d["commercial"].append({"id": "authority", "label": "Decision maker"}),
            ["commercial `authority` added"],
        ),
        (lambda d: d["handoff"]["sla"].update(respond_within="2h"), ["SLA respond within 4h → 2h"]),
        (
            lambda d: d["handoff"]["sla"].update(business_hours="24x7"),
            ["SLA business hours mon-fri 09:00-17:00 → 24x7"],
        ),
        (
            lambda d: d["handoff"]["sla"].update(remind_at=["75%"], escalate_at="150%"),
            ["SLA reminders at 50%, 100% → 75%", "SLA escalation at 100% → 150%"],
        ),
        (
            lambda d: d["handoff"]["sla"].update(escalation_channel="#sales"),
            ["SLA escalation channel none → #sales"],
        ),
        (
            lambda d: d["handoff"].update(required=["email", "company", "title"]),
            ["required fields email, company → email, company, title (added title)"],
        ),
        (
            lambda d: d["handoff"]["routing"][1].update(
                round_robin=["rep1@example.com", "rep2@example.com", "rep3@example.com"]
            ),
            [
                "routing: round robin rep1@example.com, rep2@example.com removed",
                "routing: round robin rep1@example.com, rep2@example.com, rep3@example.com added",
            ],
        ),
        (lambda d: d["handoff"]["routing"].reverse(), ["routing rules reordered"]),
        (
            lambda d: d["handoff"]["managers"].update(
                {"rep1@example.com": "boss@example.com", "rep3@example.com": "mgr@example.com"}
            ),
            [
                "manager of rep1@example.com mgr@example.com → boss@example.com",
                "manager of rep3@example.com: mgr@example.com",
            ],
        ),
        (
            lambda d: d["owners"].update(sales="vp-sales@example.com"),
            ["sales owner sales-lead@example.com → vp-sales@example.com"],
        ),
        (lambda d: d.update(review_every_days=30), ["review every 90 → 30 days"]),
        (
            lambda d: d["digest"].update(schedule="fri 16:00"),
            ["digest schedule mon 09:00 → fri 16:00"],
        ),
    ],
)
def test_each_change_in_plain_words(edit, lines):
    assert describe(*changed(edit)) == lines


def test_several_changes_follow_the_order_of_the_file():
    def edit(d):
        d["reasons"].append({"id": "no_budget_yet", "label": "Later", "action": "recycle"})
        d["thresholds"].update(mql=70)
        d["fit"][0].update(between=[100, 5000])

    assert describe(*changed(edit)) == [
        "fit `size` between 50–5000 → 100–5000",
        "MQL threshold 50 → 70",
        "reason `no_budget_yet` added",
    ]


def test_reverse_reads_back():
    old, new = changed(lambda d: d["fit"][0].update(between=[100.5, 5000]))
    assert describe(new, old) == ["fit `size` between 100.5–5000 → 50–5000"]
