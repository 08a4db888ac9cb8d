"""Routing: explicit owner, then rules, then round-robin; away reps skipped."""

from __future__ import annotations

from bot.definition import load_definition
from bot.leads import parse_lead
from bot.routing import route
from tests.conftest import DATA

DEFINITION = load_definition(DATA / "definition.yml")


def lead(country: str = "AU", owner: str | None = None):
    return parse_lead({"id": "L1", "owner": owner, "attributes": {"country": country}})


def test_explicit_owner_wins() -> None:
    decision = route(lead(owner="Rep9@Example.com"), DEFINITION, rotation={})
    assert (decision.owner, decision.why) == ("rep9@example.com", "named as the lead's owner")


def test_first_matching_rule() -> None:
    decision = route(lead("NZ"), DEFINITION, rotation={})
    assert decision.owner == "nz-rep@example.com"
    assert decision.why == "country is NZ — the rep for leads like this"


def test_why_says_it_in_words_a_rep_understands() -> None:
    decision = route(lead("AU"), DEFINITION, rotation={})
    assert decision.why == "next in the general rotation of 2 reps"
    assert "routing[" not in decision.why


def test_round_robin_rotates_and_returns_the_next_position() -> None:
    rotation: dict[str, int] = {}
    owners = []
    for _ in range(4):
        decision = route(lead(), DEFINITION, rotation=rotation)
        rotation[decision.rotation_key] = decision.next_position
        owners.append(decision.owner)
    assert owners == ["rep1@example.com", "rep2@example.com"] * 2


def test_away_reps_are_skipped_and_said_so() -> None:
    decision = route(
        lead(owner="rep1@example.com"), DEFINITION, rotation={}, away={"rep1@example.com"}
    )
    assert decision.owner == "rep2@example.com"
    assert "owner rep1@example.com is away" in decision.why


def test_nobody_available() -> None:
    decision = route(
        lead("NZ"),
        DEFINITION,
        rotation={},
        away={"nz-rep@example.com", "rep1@example.com", "rep2@example.com"},
    )
    assert decision.owner is None
    assert decision.why == (
        "no rep available for country is NZ; no rep available in the general rotation"
    )
