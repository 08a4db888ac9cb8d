"""What changed between two definitions, in the words a person would write in a message.

`describe(old, new)` gives one short line per change ("MQL threshold 50 → 70",
"fit `size` between 50–5000 → 100–5000", "reason `no_budget` added"): the proposal DM,
`handoff definition diff` and each calibration suggestion read from here. A line names
the item by its id (ids are stable; labels are prose) and shows before → after. Pure:
no I/O, and the order of the lines follows the order of the definition's sections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from bot.definition import Condition, Definition, FitCriterion, Reason, RoutingRule, Signal

T = TypeVar("T")
ARROW = "→"


def _n(value: Any) -> str:
    """A number as written in the file: 100, not 100.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _values(values: Iterable[Any]) -> str:
    return ", ".join(_n(value) for value in values)


def _percents(fractions: Iterable[float]) -> str:
    return ", ".join(f"{fraction * 100:g}%" for fraction in fractions) or "none"


def condition_words(condition: Condition) -> str:
    """The test alone, short: `between 50–5000`, `at least 100`, `AU, NZ`, `not Agency`."""
    op, arg = condition.operator, condition.argument
    if op == "between":
        return f"between {_n(arg[0])}–{_n(arg[1])}"
    if op == "gte":
        return f"at least {_n(arg)}"
    if op == "lte":
        return f"at most {_n(arg)}"
    if op == "in":
        return _values(arg)
    if op == "not_in":
        return f"not {_values(arg)}"
    if op == "equals":
        return f"= {_n(arg)}"
    return f"matching /{arg}/"


def _list_change(before: Sequence[Any], after: Sequence[Any], prefix: str = "") -> str:
    """`AU, NZ → AU, NZ, SG (added SG)`: the two lists and what moved between them."""
    added = [value for value in after if value not in before]
    removed = [value for value in before if value not in after]
    moved = []
    if added:
        moved.append(f"added {_values(added)}")
    if removed:
        moved.append(f"removed {_values(removed)}")
    note = f" ({'; '.join(moved)})" if moved else ""
    return f"{prefix}{_values(before)} {ARROW} {prefix}{_values(after)}{note}"


def _condition_change(before: Condition, after: Condition) -> list[str]:
    lines = []
    if before.field != after.field:
        lines.append(f"field {before.field} {ARROW} {after.field}")
    if (before.operator, before.argument) != (after.operator, after.argument):
        if before.operator == after.operator == "between":
            low, high = before.argument
            new_low, new_high = after.argument
            lines.append(f"between {_n(low)}–{_n(high)} {ARROW} {_n(new_low)}–{_n(new_high)}")
        elif before.operator == after.operator and before.operator in ("in", "not_in"):
            prefix = "not " if before.operator == "not_in" else ""
            lines.append(_list_change(before.argument, after.argument, prefix))
        elif before.operator == after.operator and before.operator in ("gte", "lte"):
            word = "at least" if before.operator == "gte" else "at most"
            lines.append(f"{word} {_n(before.argument)} {ARROW} {_n(after.argument)}")
        else:
            lines.append(f"{condition_words(before)} {ARROW} {condition_words(after)}")
    if before.allow_missing != after.allow_missing:
        lines.append(
            "now passes when the value is missing"
            if after.allow_missing
            else "now fails when the value is missing"
        )
    return lines


def _by_id(
    kind: str,
    before: Iterable[T],
    after: Iterable[T],
    key: Callable[[T], str],
    added: Callable[[T], str],
    changed: Callable[[T, T], list[str]],
) -> list[str]:
    """Lines for a list of items with ids: removed, changed, then added, in file order."""
    old = {key(item): item for item in before}
    new = {key(item): item for item in after}
    lines = [f"{kind} `{item_id}` removed" for item_id in old if item_id not in new]
    for item_id, item in new.items():
        if item_id not in old:
            lines.append(f"{kind} `{item_id}` added{added(item)}")
        else:
            lines += [f"{kind} `{item_id}` {change}" for change in changed(old[item_id], item)]
    return lines


def _label(before: Any, after: Any, others: list[str]) -> list[str]:
    """A renamed label is worth a line only when nothing else about the item changed:
    a moved bound brings its new label along, and one line says it."""
    if before.label != after.label and not others:
        return [f'label "{before.label}" {ARROW} "{after.label}"']
    return []


def _fit(before: FitCriterion, after: FitCriterion) -> list[str]:
    lines = _condition_change(before.condition, after.condition)
    return lines + _label(before, after, lines)


def _signal(before: Signal, after: Signal) -> list[str]:
    lines = []
    if before.points != after.points:
        lines.append(f"points {before.points} {ARROW} {after.points}")
    if before.max != after.max:
        if before.max is None:
            lines.append(f"capped at {after.max}")
        elif after.max is None:
            lines.append(f"cap {before.max} removed")
        else:
            lines.append(f"cap {before.max} {ARROW} {after.max}")
    return lines + _label(before, after, lines)


def _signal_added(signal: Signal) -> str:
    cap = f", cap {signal.max}" if signal.max is not None else ""
    return f" ({signal.points} points{cap})"


def _reason(before: Reason, after: Reason) -> list[str]:
    lines = []
    if before.criterion != after.criterion:
        lines.append(f"points at {_ref(before.criterion)} {ARROW} {_ref(after.criterion)}")
    if before.action != after.action:
        lines.append(f"{before.action} {ARROW} {after.action}")
    if before.note_required != after.note_required:
        lines.append("now needs a note" if after.note_required else "no longer needs a note")
    return lines + _label(before, after, lines)


def _ref(criterion: str | None) -> str:
    return f"`{criterion}`" if criterion else "no criterion"


def _rule(rule: RoutingRule) -> str:
    reps = ", ".join(rule.reps)
    if rule.when is None:
        return f"round robin {reps}" if len(rule.reps) > 1 else f"everyone else to {reps}"
    return f"{rule.when.field} {condition_words(rule.when)} to {reps}"


def _pair(what: str, before: Any, after: Any, unit: str = "") -> list[str]:
    if before == after:
        return []
    return [f"{what} {_n(before)} {ARROW} {_n(after)}{unit}"]


def _routing(before: Sequence[RoutingRule], after: Sequence[RoutingRule]) -> list[str]:
    old, new = [_rule(rule) for rule in before], [_rule(rule) for rule in after]
    lines = [f"routing: {text} removed" for text in old if text not in new]
    lines += [f"routing: {text} added" for text in new if text not in old]
    if not lines and old != new:
        lines.append("routing rules reordered")
    return lines


def _managers(before: dict[str, str], after: dict[str, str]) -> list[str]:
    lines = []
    for rep in sorted(before.keys() | after.keys()):
        old, new = before.get(rep), after.get(rep)
        if old == new:
            continue
        if old is None:
            lines.append(f"manager of {rep}: {new}")
        elif new is None:
            lines.append(f"manager of {rep} removed (was {old})")
        else:
            lines.append(f"manager of {rep} {old} {ARROW} {new}")
    return lines


def _sla(old: Definition, new: Definition) -> list[str]:
    before, after = old.handoff.sla, new.handoff.sla
    lines = _pair("SLA respond within", before.respond_within.text, after.respond_within.text)
    lines += _pair("SLA business hours", before.business_hours.text, after.business_hours.text)
    if before.holidays != after.holidays:
        lines.append("SLA holidays " + _list_change(before.holidays, after.holidays))
    if before.remind_at != after.remind_at:
        lines.append(
            f"SLA reminders at {_percents(before.remind_at)} {ARROW} {_percents(after.remind_at)}"
        )
    lines += _pair(
        "SLA escalation at", _percents([before.escalate_at]), _percents([after.escalate_at])
    )
    lines += _pair(
        "SLA escalation channel",
        before.escalation_channel or "none",
        after.escalation_channel or "none",
    )
    return lines


def _target(old: Definition, new: Definition) -> list[str]:
    if old.target == new.target:
        return []

    def words(definition: Definition) -> str:
        t = definition.target
        if t is None:
            return "none"
        return f"{_n(t.revenue)} a {t.period} at {_n(t.deal_value)} a deal, {t.win_rate:.0%} won"

    return [f"target {words(old)} {ARROW} {words(new)}"]


def describe(old: Definition, new: Definition) -> list[str]:
    """One plain line per difference between two definitions (empty: the same rules)."""
    lines: list[str] = []
    lines += _pair("marketing owner", old.owners.marketing, new.owners.marketing)
    lines += _pair("sales owner", old.owners.sales, new.owners.sales)
    lines += _pair("review every", old.review_every_days, new.review_every_days, " days")
    lines += _pair("reviewed on", old.reviewed_on or "never", new.reviewed_on or "never")
    lines += _pair("time zone", old.timezone.key, new.timezone.key)
    lines += _by_id(
        "fit",
        old.fit,
        new.fit,
        lambda c: c.id,
        lambda c: f" ({c.condition.field} {condition_words(c.condition)})",
        _fit,
    )
    lines += _pair("intent window", old.intent.window_days, new.intent.window_days, " days")
    lines += _by_id(
        "signal", old.intent.signals, new.intent.signals, lambda s: s.id, _signal_added, _signal
    )
    lines += _pair("MQL threshold", old.thresholds.mql, new.thresholds.mql)
    lines += _pair("hot threshold", old.thresholds.hot, new.thresholds.hot)
    lines += _by_id(
        "commercial",
        old.commercial,
        new.commercial,
        lambda c: c.id,
        lambda c: "",
        lambda a, b: _label(a, b, []),
    )
    if old.handoff.required != new.handoff.required:
        lines.append("required fields " + _list_change(old.handoff.required, new.handoff.required))
    lines += _sla(old, new)
    lines += _routing(old.handoff.routing, new.handoff.routing)
    lines += _managers(old.handoff.managers, new.handoff.managers)
    lines += _by_id("reason", old.reasons, new.reasons, lambda r: r.id, lambda r: "", _reason)
    lines += _pair("digest channel", old.digest.channel, new.digest.channel)
    lines += _pair("digest schedule", old.digest.schedule.text, new.digest.schedule.text)
    lines += _target(old, new)
    return lines
