"""The definition and a verdict in plain words, for people rather than machines.

`handoff definition show`, the App Home, `/handoff definition` and the demo all
read from here, so sales and marketing see one wording of one contract.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.definition import ACTION_WORDS, Condition, Definition, RoutingRule, Signal
from bot.judge import CriterionResult, Verdict
from bot.leads import LeadIn


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def describe_condition(condition: Condition) -> str:
    """`country is AU or NZ`, `employees between 50 and 5,000`, ..."""
    name, argument = condition.field, condition.argument
    if condition.operator == "between":
        text = f"{name} between {_number(argument[0])} and {_number(argument[1])}"
    elif condition.operator == "gte":
        text = f"{name} at least {_number(argument)}"
    elif condition.operator == "lte":
        text = f"{name} at most {_number(argument)}"
    elif condition.operator == "in":
        text = f"{name} is {' or '.join(map(str, argument))}"
    elif condition.operator == "not_in":
        text = f"{name} is not {' or '.join(map(str, argument))}"
    elif condition.operator == "equals":
        text = f"{name} is {argument}"
    else:
        text = f"{name} matches /{argument}/"
    return text + (" (or is missing)" if condition.allow_missing else "")


def describe_points(signal: Signal) -> str:
    points = f"{signal.points:+d}"
    return points + (f", at most {signal.max}" if signal.max is not None else "")


def describe_definition(definition: Definition) -> str:
    """The whole contract in plain words."""
    fit = " and ".join(f"{c.label} ({describe_condition(c.condition)})" for c in definition.fit)
    positive = [s for s in definition.intent.signals if s.points > 0]
    negative = [s for s in definition.intent.signals if s.points < 0]
    sla = definition.handoff.sla
    owners = definition.owners
    lines = [
        f"Qualification definition, version {definition.version} "
        f"(owned by marketing: {owners.marketing} and sales: {owners.sales})",
        _review_line(definition),
        "",
        f"A lead is qualified when it passes every fit criterion — {fit} — and scores at "
        f"least {definition.thresholds.mql} points from "
        + ", ".join(f"{s.label} ({describe_points(s)})" for s in positive)
        + f" in the last {definition.intent.window_days} days"
        + (" (" + ", ".join(f"{s.label} {s.points:+d}" for s in negative) + ")" if negative else "")
        + f". It is hot at {definition.thresholds.hot} points.",
    ]
    if definition.handoff.required:
        lines.append(
            "It is handed to sales only with: " + ", ".join(definition.handoff.required) + "."
        )
    if definition.commercial:
        lines.append(
            "Sales confirms on the card: "
            + "; ".join(item.label for item in definition.commercial)
            + "."
        )
    lines += [
        "",
        f"Response time: {sla.respond_within.text} of business hours "
        f"({sla.business_hours.text}, {definition.timezone.key}); "
        + (f"reminders at {', '.join(map(_percent, sla.remind_at))}; " if sla.remind_at else "")
        + f"the manager is told at {_percent(sla.escalate_at)}"
        + (f" and {sla.escalation_channel}" if sla.escalation_channel else "")
        + (
            f"; at {_percent(sla.reassign_at)} the lead moves to the next rep of its pool"
            if sla.reassign_at
            else ""
        )
        + "."
        + (
            f" A rep may snooze a lead for up to {sla.snooze_max.text} of business time."
            if sla.snooze_max
            else ""
        )
        + (
            f" A lead is handed off at most {definition.handoff.max_cycles} time(s)."
            if definition.handoff.max_cycles
            else ""
        ),
        "Routing: the lead's own owner, else the first rule that matches:",
    ]
    for rule in definition.handoff.routing:
        lines.append(f"  {rule.key}: {describe_rule(rule)}")
    lines += ["", "Rejection reasons:"]
    for reason in definition.reasons:
        target = definition.criterion_label(reason.criterion)
        lines.append(
            f"  {reason.id}: {reason.label}"
            + (f" (points at: {target})" if target else "")
            + f"; {ACTION_WORDS[reason.action]}"
            + ("; a note is required" if reason.note_required else "")
            + (
                f"; not handed off again for {reason.cooldown_days} days"
                if reason.cooldown_days
                else ""
            )
        )
    lines.append(
        f"\nWeekly digest to {definition.digest.channel}, "
        f"{definition.digest.schedule.text} {definition.timezone.key}."
    )
    return "\n".join(lines)


def describe_rule(rule: RoutingRule) -> str:
    """One routing rule in words: `country is NZ -> round-robin over a (weight 2), b; at
    most 20 a day each`."""
    condition = describe_condition(rule.when) if rule.when else "any lead"
    if rule.match_account:
        return f"{condition} -> the owner of the account's open or accepted handoff"
    weights = rule.weights or (1,) * len(rule.reps)
    reps = ", ".join(
        f"{rep} (weight {weight})" if weight != 1 else rep
        for rep, weight in zip(rule.reps, weights, strict=True)
    )
    how = "round-robin over " if len(rule.reps) > 1 else ""
    cap = f"; at most {rule.daily_cap} a day each" if rule.daily_cap else ""
    return f"{condition} -> {how}{reps}{cap}"


def _review_line(definition: Definition) -> str:
    every = f"reviewed every {definition.review_every_days} days"
    if definition.reviewed_on is None:
        return f"Last review: not recorded; {every}."
    due = definition.reviewed_on + timedelta(days=definition.review_every_days)
    return f"Last review: {definition.reviewed_on.isoformat()}; {every}, next by {due.isoformat()}."


def explain_verdict(
    lead: LeadIn,
    verdict: Verdict,
    definition: Definition,
    *,
    owner: str | None = None,
    routed_by: str | None = None,
) -> str:
    """One lead's verdict with every reason: what the card says, as text."""
    person = ", ".join(part for part in (lead.name, lead.title) if part)
    lines = [
        f"{lead.company or lead.id}"
        + (f" — {person}" if person else "")
        + (f" <{lead.email}>" if lead.email else "")
    ]
    origin = [
        f"source: {lead.source}" if lead.source else "",
        f"campaign: {lead.campaign}" if lead.campaign else "",
    ]
    if any(origin):
        lines.append("  " + " · ".join(part for part in origin if part))
    lines.append("Fit: " + ("every criterion met" if verdict.fit_passed else "failed"))
    for criterion in verdict.criteria:
        mark = "✓" if criterion.passed else "✗"
        seen = "missing" if criterion.missing else f"{criterion.value}"
        lines.append(f"  {mark} {criterion.label} (saw {seen})")
    lines.append(
        f"Intent: {verdict.score} points (qualifies at {verdict.mql}, "
        f"hot at {verdict.hot_at}) in the last {definition.intent.window_days} days"
    )
    for signal in verdict.signals:
        times = f" ×{signal.count}" if signal.count > 1 else ""
        cap = f", capped from {signal.uncapped:+d}" if signal.points != signal.uncapped else ""
        lines.append(f"  {signal.points:+d} {signal.label}{times}{cap}")
    for ignored in verdict.ignored:
        lines.append(f"  not counted: {ignored.name} at {ignored.at} ({ignored.why})")
    if verdict.missing:
        lines.append("Missing before sales can take it: " + ", ".join(verdict.missing))
    outcome = "qualified" if verdict.qualified else "not qualified (stays in nurture)"
    lines.append("Verdict: " + outcome + (", hot" if verdict.hot else ""))
    if owner:
        lines.append(f"Goes to: {owner}" + (f" ({routed_by})" if routed_by else ""))
    if definition.commercial and verdict.qualified:
        lines.append("The rep confirms: " + "; ".join(item.label for item in definition.commercial))
    return "\n".join(lines)


# --- why a lead was not handed off, in one line --------------------------------------------

_VALUE_CHARS = 40  # a lead's value quoted in a one-line answer
_IGNORED_SHOWN = 3


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _failed(criterion: CriterionResult, fields: dict[str, str]) -> str:
    seen = "missing" if criterion.missing else _short(criterion.value)
    return (
        f"{criterion.id} ({fields.get(criterion.id, criterion.id)} {seen}, needs {criterion.label})"
    )


def why_not_handed_off(verdict: Verdict, definition: Definition) -> str:
    """What kept a lead from sales, in short: the criteria it failed (with the value
    seen), its points against the threshold (and the signals not counted), the fields
    missing. `fit failed: size (employees 20, needs 50-5000 employees); intent 30 of
    50 points; missing: company`. Empty when the verdict itself was ready."""
    parts = []
    failed = [c for c in verdict.criteria if not c.passed]
    if failed:
        fields = {c.id: c.condition.field for c in definition.fit}
        parts.append("fit failed: " + ", ".join(_failed(c, fields) for c in failed))
    if verdict.score < verdict.mql:
        intent = f"intent {verdict.score} of {verdict.mql} points"
        if verdict.ignored:
            shown = [f"{i.name} {i.why}" for i in verdict.ignored[:_IGNORED_SHOWN]]
            more = len(verdict.ignored) - len(shown)
            intent += (
                " (not counted: " + ", ".join(shown) + (f", {more} more" if more else "") + ")"
            )
        parts.append(intent)
    if verdict.missing:
        parts.append("missing: " + ", ".join(verdict.missing))
    return "; ".join(parts)


# --- a stored verdict, line by line (`handoff lead ID`) -------------------------------------


def stored_verdict_lines(detail: dict[str, Any], definition: Definition | None) -> list[str]:
    """Every criterion with the value seen and pass/fail, every signal counted with its
    points, every signal not counted with the reason, from a verdict's stored detail.

    Labels come from `definition` when the verdict was judged under it; an older
    verdict names its criteria and signals by id (the ids are what it stored)."""
    fit = {c.id: c for c in definition.fit} if definition else {}
    signals = definition.intent.by_id if definition else {}
    lines = []
    for criterion in detail.get("criteria") or []:
        known = fit.get(criterion.get("id"))
        seen = "missing" if criterion.get("missing") else _short(criterion.get("value"))
        mark = "✓ {} passed" if criterion.get("passed") else "✗ {} failed"
        line = mark.format(criterion.get("id")) + ": "
        if known:
            line += f"{known.condition.field} {seen} (needs {known.label})"
        else:
            line += seen
        lines.append(line)
    for signal in detail.get("signals") or []:
        known_signal = signals.get(signal.get("id"))
        count = signal.get("count") or 1
        points, uncapped = signal.get("points", 0), signal.get("uncapped")
        lines.append(
            f"{points:+d} {signal.get('id')}"
            + (f" ×{count}" if count > 1 else "")
            + (f" ({known_signal.label})" if known_signal else "")
            + (f", capped from {uncapped:+d}" if uncapped not in (None, points) else "")
        )
    for ignored in detail.get("ignored") or []:
        lines.append(
            f"not counted: {ignored.get('name')} at {ignored.get('at')} ({ignored.get('why')})"
        )
    return lines
