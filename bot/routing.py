"""Who gets the lead: a pure decision, explained.

Order: the lead's explicit owner, else the first routing rule whose condition
matches (round-robin among its reps), else nobody. Reps marked away are
skipped. Rotation positions are passed in and the new position handed back, so
the caller keeps them in the store and rotation stays fair across restarts.

`why` is read by the rep on the card ("Why you: country is NZ — next in the
rotation of 2 reps"), by the CRM in the intake answer and in `handoff lead`, so
it says what happened in words, never a rule's position in the YAML.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from bot.definition import Definition, RoutingRule
from bot.explain import describe_condition
from bot.leads import LeadIn


@dataclass(frozen=True)
class Route:
    owner: str | None
    why: str
    rotation_key: str | None = None
    next_position: int | None = None


def _matches(rule: RoutingRule, lead: LeadIn) -> bool:
    if rule.when is None:
        return True
    value = lead.field(rule.when.field)
    if value is None or value == "":
        return rule.when.allow_missing
    return rule.when.test(value)


def route(
    lead: LeadIn,
    definition: Definition,
    *,
    rotation: Mapping[str, int],
    away: Collection[str] = (),
    exclude: Collection[str] = (),
) -> Route:
    """Pick the owner.

    Args:
        rotation: current round-robin position per rule key.
        away: reps marked away (skipped, said so in `why`).
        exclude: reps that cannot take it for another reason (unknown to Slack).
    """
    unavailable = set(away) | set(exclude)
    skipped = []
    if lead.owner:
        if lead.owner not in unavailable:
            return Route(lead.owner, "named as the lead's owner")
        skipped.append(f"owner {lead.owner} is {'away' if lead.owner in away else 'not in Slack'}")

    for position, rule in enumerate(definition.handoff.routing):
        if not _matches(rule, lead):
            continue
        start = rotation.get(rule.key, 0)
        count = len(rule.reps)
        for step in range(count):
            index = (start + step) % count
            rep = rule.reps[index]
            if rep in unavailable:
                continue
            why = _why(rule, position)
            if skipped:
                why = "; ".join([*skipped, why])
            return Route(rep, why, rule.key, (index + 1) % count)
        skipped.append(
            f"no rep available for {describe_condition(rule.when)}"
            if rule.when is not None
            else "no rep available in the general rotation"
        )

    return Route(None, "; ".join(skipped) or "no routing rule matched")


def _why(rule: RoutingRule, position: int) -> str:
    """Why this rule's rep got the lead, in the words a rep reads on the card."""
    several = len(rule.reps) > 1
    if rule.when is None:
        if several:
            return f"next in the general rotation of {len(rule.reps)} reps"
        return "the rep for every lead" if position == 0 else "the rep for all other leads"
    if several:
        return f"{describe_condition(rule.when)} — next in the rotation of {len(rule.reps)} reps"
    return f"{describe_condition(rule.when)} — the rep for leads like this"
