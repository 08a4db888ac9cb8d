"""The shared definition (`qualification.yml`): loaded, validated, and held as plain data.

Validation collects *every* problem with its path (`fit[1].in: expected a list`)
before giving up, because the person fixing the file is RevOps, not a Python
developer, and one problem per run is a slow way to fix a file. The result is a
tree of frozen dataclasses the judge can read a million times a second.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from bot.blocks.common import CHECKBOX_OPTIONS, GROUP_OPTIONS, OPTION_TEXT, OPTION_VALUE
from bot.calendar import (
    BusinessCalendar,
    BusinessDuration,
    CalendarError,
    WeeklyHours,
    WeeklySchedule,
    parse_business_hours,
    parse_duration,
    parse_schedule,
)
from bot.leads import TOP_LEVEL_FIELDS
from store.models import Handoff

OPERATORS = ("between", "in", "not_in", "equals", "gte", "lte", "matches")
ACTIONS = ("recycle", "disqualify")
# Where a rejected lead goes, in the words the reject menu and `definition show` use.
ACTION_WORDS = {"recycle": "back to nurture", "disqualify": "disqualified"}
# What a rejection reason points at; the reject menu has one option group per kind.
REASON_GROUPS = ("fit", "commercial", "other")
# A handoff stores the rejection reason's id in a column this wide (VARCHAR on PostgreSQL).
REASON_ID_COLUMN = Handoff.__table__.c.reason_id.type.length  # type: ignore[attr-defined]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)\s*%$")
# Slack channel names: no spaces, at most 80 characters (a channel id fits too).
_CHANNEL = re.compile(r"^#?[^\s#]{1,80}$")


def reason_choice(label: str, action: str) -> str:
    """How the reject menu offers a reason: its label and where the lead goes."""
    return f"{label} → {ACTION_WORDS.get(action, action)}"


def reason_group(criterion: str | None, fit: Iterable[str], commercial: Iterable[str]) -> str:
    """What a rejection reason points at: fit, commercial or other."""
    if criterion in fit:
        return "fit"
    if criterion in commercial:
        return "commercial"
    return "other"


class DefinitionError(ValueError):
    """The definition does not validate; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- the definition as data ------------------------------------------------------------------


def _number(value: Any) -> float | None:
    kind = type(value)  # exact type checks first: this runs for every lead and criterion
    if kind is int or kind is float:
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(",", ""))
    except ValueError:
        return None


def _norm(value: Any) -> str:
    """How `in`, `not_in` and `equals` compare: as text, case-insensitively."""
    if type(value) is str:
        return value.strip().casefold()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().casefold()


@dataclass(frozen=True, slots=True)
class Condition:
    """One test on one lead field (a top-level field or an attribute)."""

    field: str
    operator: str
    argument: Any
    allow_missing: bool = False
    test: Callable[[Any], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "test", _compile(self.operator, self.argument))


def _compile(operator: str, argument: Any) -> Callable[[Any], bool]:
    """A fast predicate for one operator; values arrive as str, int or float."""
    if operator == "between":
        low, high = argument

        def between(value: Any) -> bool:
            number = _number(value)
            return number is not None and low <= number <= high

        return between
    if operator in ("gte", "lte"):
        bound = argument
        if operator == "gte":
            return lambda value: (n := _number(value)) is not None and n >= bound
        return lambda value: (n := _number(value)) is not None and n <= bound
    if operator in ("in", "not_in"):
        allowed = frozenset(_norm(item) for item in argument)
        if operator == "in":
            return lambda value: _norm(value) in allowed
        return lambda value: _norm(value) not in allowed
    if operator == "equals":
        expected = _norm(argument)
        return lambda value: _norm(value) == expected
    pattern = re.compile(argument, re.IGNORECASE)
    return lambda value: pattern.search(str(value)) is not None


@dataclass(frozen=True, slots=True)
class FitCriterion:
    id: str
    label: str
    condition: Condition


@dataclass(frozen=True, slots=True)
class Signal:
    id: str
    label: str
    points: int
    max: int | None = None


@dataclass(frozen=True)
class Intent:
    window_days: int
    signals: tuple[Signal, ...]

    @cached_property
    def by_id(self) -> dict[str, Signal]:
        return {signal.id: signal for signal in self.signals}

    @cached_property
    def too_old(self) -> str:
        """Why a signal before the window is ignored."""
        return f"older than {self.window_days} days"


@dataclass(frozen=True, slots=True)
class Thresholds:
    mql: int
    hot: int


@dataclass(frozen=True, slots=True)
class CommercialItem:
    id: str
    label: str


@dataclass(frozen=True, slots=True)
class Sla:
    respond_within: BusinessDuration
    business_hours: WeeklyHours
    holidays: tuple[date, ...]
    remind_at: tuple[float, ...]
    escalate_at: float
    escalation_channel: str | None = None
    snooze_max: BusinessDuration | None = None  # None: the card offers no snooze
    reassign_at: float | None = None  # a breached lead moves on to the next rep of its pool


def weighted_slots(reps: tuple[str, ...], weights: tuple[int, ...]) -> tuple[str, ...]:
    """One cycle of smooth weighted round-robin (nginx's): each rep appears `weight`
    times, spread out (3:1 gives a, a, b, a), so any run of leads is shared by weight."""
    if not weights or all(weight == 1 for weight in weights):
        return reps
    current = [0] * len(reps)
    total = sum(weights)
    slots = []
    for _ in range(total):
        for i, weight in enumerate(weights):
            current[i] += weight
        best = max(range(len(reps)), key=lambda i: (current[i], -i))
        current[best] -= total
        slots.append(reps[best])
    return tuple(slots)


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """A routing rule: a pool of reps (rotated by weight, each at most `daily_cap` leads
    a day), or `match_account` (the owner of the account's open or accepted handoff)."""

    key: str  # "routing[1]": how routing explanations and rotation state name it
    when: Condition | None
    reps: tuple[str, ...]
    weights: tuple[int, ...] = ()  # per rep; () when every weight is 1
    daily_cap: int | None = None
    match_account: bool = False
    # The rotation: each rep once per unit of weight, interleaved (position indexes it).
    slots: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", weighted_slots(self.reps, self.weights))


@dataclass(frozen=True, slots=True)
class HandoffRules:
    required: tuple[str, ...]
    sla: Sla
    routing: tuple[RoutingRule, ...]
    managers: dict[str, str]
    # Handoffs a lead may have before a recycle leaves it with marketing for good.
    max_cycles: int | None = None


@dataclass(frozen=True, slots=True)
class Reason:
    id: str
    label: str
    criterion: str | None
    action: str  # recycle | disqualify
    note_required: bool = False
    cooldown_days: int = 0  # a recycled lead is not handed off again before these end


@dataclass(frozen=True, slots=True)
class DigestConfig:
    channel: str
    schedule: WeeklySchedule


@dataclass(frozen=True, slots=True)
class Target:
    """A revenue goal the digest works backwards from to the leads it needs."""

    revenue: float
    deal_value: float
    period: str  # year | quarter | month
    win_rate: float  # accepted lead -> won deal, as sales measures it


@dataclass(frozen=True, slots=True)
class Owners:
    marketing: str
    sales: str


@dataclass(frozen=True, slots=True)
class JudgePlan:
    """What the judge reads from a definition, flattened once rather than per lead."""

    fit_tests: tuple[tuple[str, str, str, bool, Callable[[Any], bool]], ...]
    window: timedelta
    too_old: str
    # signal id -> (position in the definition, label, points, cap)
    signals: dict[str, tuple[int, str, int, int | None]]
    required: tuple[tuple[str, bool], ...]  # (field, is a top-level field)
    mql: int
    hot_at: int


@dataclass(frozen=True)
class Definition:
    version: int
    owners: Owners
    review_every_days: int
    reviewed_on: date | None
    timezone: ZoneInfo
    fit: tuple[FitCriterion, ...]
    intent: Intent
    thresholds: Thresholds
    commercial: tuple[CommercialItem, ...]
    handoff: HandoffRules
    reasons: tuple[Reason, ...]
    digest: DigestConfig
    target: Target | None
    source: str
    fingerprint: str
    # The parsed YAML it was read from: its text when it came from no file (tests, a
    # definition built in code) and must be stored as a version (bot/versions.py).
    data: Any = field(default=None, compare=False, repr=False)

    def calendar(self) -> BusinessCalendar:
        return self._calendar

    @cached_property
    def _calendar(self) -> BusinessCalendar:
        sla = self.handoff.sla
        return BusinessCalendar(sla.business_hours, self.timezone, sla.holidays)

    @cached_property
    def fit_tests(self) -> tuple[tuple[str, str, str, bool, Callable[[Any], bool]], ...]:
        """Each criterion flattened to (id, label, field, allow_missing, test) for the judge."""
        return tuple(
            (c.id, c.label, c.condition.field, c.condition.allow_missing, c.condition.test)
            for c in self.fit
        )

    @cached_property
    def judge_plan(self) -> JudgePlan:
        intent = self.intent
        return JudgePlan(
            fit_tests=self.fit_tests,
            window=timedelta(days=intent.window_days),
            too_old=intent.too_old,
            signals={
                signal.id: (position, signal.label, signal.points, signal.max)
                for position, signal in enumerate(intent.signals)
            },
            required=tuple((name, name in TOP_LEVEL_FIELDS) for name in self.handoff.required),
            mql=self.thresholds.mql,
            hot_at=self.thresholds.hot,
        )

    @cached_property
    def _reasons(self) -> dict[str, Reason]:
        return {reason.id: reason for reason in self.reasons}

    def reason(self, reason_id: str) -> Reason | None:
        return self._reasons.get(reason_id)

    def criterion_label(self, criterion_id: str | None) -> str | None:
        """The label of a fit criterion or commercial item a reason points at."""
        for item in (*self.fit, *self.commercial):
            if item.id == criterion_id:
                return item.label
        return None

    def points_at(self, reason: Reason) -> str:
        """What a rejection reason points at: fit, commercial or other."""
        return reason_group(reason.criterion, self._fit_ids, self._commercial_ids)

    @cached_property
    def _fit_ids(self) -> frozenset[str]:
        return frozenset(c.id for c in self.fit)

    @cached_property
    def _commercial_ids(self) -> frozenset[str]:
        return frozenset(c.id for c in self.commercial)

    def manager_of(self, rep_email: str | None) -> str | None:
        return self.handoff.managers.get((rep_email or "").lower())

    @property
    def all_reps(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for rule in self.handoff.routing:
            seen.update(dict.fromkeys(rule.reps))
        return tuple(seen)


# --- loading and validation ------------------------------------------------------------------


class _Reader:
    """Walks the parsed YAML, collecting problems by path instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def mapping(
        self, node: Any, path: str, *, required: Iterable[str] = (), optional: Iterable[str] = ()
    ) -> dict[str, Any] | None:
        if not isinstance(node, dict):
            self.problem(path, f"expected a mapping, got {_kind(node)}")
            return None
        required, optional = tuple(required), tuple(optional)
        known = (*required, *optional)
        for key in node:
            if key not in known:
                self.problem(_join(path, str(key)), "unknown key" + _did_you_mean(str(key), known))
        for key in required:
            if key not in node or node[key] is None:
                self.problem(_join(path, key), "required")
        return node

    def sequence(self, node: Any, path: str, *, non_empty: bool = True) -> list[Any]:
        if not isinstance(node, list):
            self.problem(path, f"expected a list, got {_kind(node)}")
            return []
        if non_empty and not node:
            self.problem(path, "expected at least one item")
        return node

    def text(self, node: Any, path: str) -> str | None:
        if isinstance(node, str) and node.strip():
            return node.strip()
        self.problem(path, f"expected text, got {_kind(node)}")
        return None

    def email(self, node: Any, path: str) -> str | None:
        value = self.text(node, path)
        if value is not None and not _EMAIL.match(value):
            self.problem(path, f"expected an email address, got '{value}'")
            return None
        return value.lower() if value else None

    def identifier(self, node: Any, path: str) -> str | None:
        value = self.text(node, path)
        if value is not None and not _ID.match(value):
            self.problem(path, f"expected an id of lower-case letters, digits and _, got '{value}'")
            return None
        return value

    def at_most(self, value: str | None, path: str, limit: int, why: str) -> str | None:
        """Refuse text longer than what Slack (or the store) takes: cut, it would break.

        The value is kept, so what refers to it (a reason's criterion) adds no problem."""
        if value is not None and len(value) > limit:
            self.problem(path, f"at most {limit} characters ({why}), got {len(value)}")
        return value

    def channel(self, node: Any, path: str) -> str | None:
        value = self.text(node, path)
        if value is not None and not _CHANNEL.match(value):
            self.problem(
                path,
                "expected a Slack channel like #marketing or an id "
                f"(no spaces, at most 80 characters), got '{value}'",
            )
            return None
        return value

    def integer(self, node: Any, path: str, *, minimum: int | None = None) -> int | None:
        if isinstance(node, bool) or not isinstance(node, int):
            self.problem(path, f"expected a whole number, got {_kind(node)}")
            return None
        if minimum is not None and node < minimum:
            self.problem(path, f"expected at least {minimum}, got {node}")
            return None
        return node

    def number(self, node: Any, path: str) -> float | None:
        if isinstance(node, bool) or not isinstance(node, int | float):
            self.problem(path, f"expected a number, got {_kind(node)}")
            return None
        return float(node)

    def boolean(self, node: Any, path: str) -> bool:
        if node is None:
            return False
        if not isinstance(node, bool):
            self.problem(path, f"expected true or false, got {_kind(node)}")
            return False
        return node

    def fraction(self, node: Any, path: str) -> float | None:
        """'50%' -> 0.5 (a bare number is read as a fraction: 0.5 -> 0.5)."""
        if isinstance(node, int | float) and not isinstance(node, bool) and node > 0:
            return float(node)
        match = _PERCENT.match(str(node).strip()) if isinstance(node, str) else None
        if match and float(match.group(1)) > 0:
            return float(match.group(1)) / 100
        self.problem(path, f'expected a percentage like "50%", got {_kind(node)}')
        return None

    def parsed(self, parse: Callable[[str], Any], node: Any, path: str) -> Any:
        value = self.text(node, path)
        if value is None:
            return None
        try:
            return parse(value)
        except CalendarError as exc:
            self.problem(path, str(exc))
            return None

    def unique(self, ids: list[tuple[str, str | None]]) -> None:
        seen: dict[str, str] = {}
        for path, item_id in ids:
            if item_id is None:
                continue
            if item_id in seen:
                self.problem(path, f"duplicate id '{item_id}' (also at {seen[item_id]})")
            else:
                seen[item_id] = path


def _kind(node: Any) -> str:
    if node is None:
        return "nothing"
    if isinstance(node, bool):
        return f"{str(node).lower()}"
    if isinstance(node, dict):
        return "a mapping"
    if isinstance(node, list):
        return "a list"
    if isinstance(node, str):
        return f"'{node}'"
    return repr(node)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


TOP_LEVEL = (
    "version",
    "owners",
    "review_every_days",
    "reviewed_on",
    "timezone",
    "fit",
    "intent",
    "thresholds",
    "commercial",
    "handoff",
    "reasons",
    "digest",
    "target",
)
REQUIRED_TOP_LEVEL = (
    "version",
    "owners",
    "timezone",
    "fit",
    "intent",
    "thresholds",
    "handoff",
    "reasons",
    "digest",
)


def _condition(r: _Reader, node: dict[str, Any], path: str) -> Condition | None:
    operators = [key for key in OPERATORS if key in node]
    field_name = r.text(node.get("field"), _join(path, "field"))
    allow_missing = r.boolean(node.get("allow_missing"), _join(path, "allow_missing"))
    if len(operators) != 1:
        r.problem(
            path,
            f"expected exactly one of {', '.join(OPERATORS)}"
            + (f", got {' and '.join(operators)}" if operators else ""),
        )
        return None
    operator = operators[0]
    where = _join(path, operator)
    raw = node[operator]
    argument: Any = None
    if operator == "between":
        items = r.sequence(raw, where)
        numbers = [r.number(item, _join(where, i)) for i, item in enumerate(items)]
        if items and len(items) != 2:
            r.problem(where, f"expected two numbers [low, high], got {len(items)} items")
        elif len(numbers) == 2 and None not in numbers:
            if numbers[0] > numbers[1]:
                r.problem(where, f"low ({items[0]}) is above high ({items[1]})")
            argument = (numbers[0], numbers[1])
    elif operator in ("in", "not_in"):
        items = r.sequence(raw, where)
        for i, item in enumerate(items):
            if isinstance(item, dict | list) or item is None:
                r.problem(_join(where, i), f"expected a value, got {_kind(item)}")
        argument = tuple(items)
    elif operator in ("gte", "lte"):
        argument = r.number(raw, where)
    elif operator == "equals":
        if isinstance(raw, dict | list) or raw is None:
            r.problem(where, f"expected a value, got {_kind(raw)}")
        argument = raw
    else:
        argument = r.text(raw, where)
        if argument is not None:
            try:
                re.compile(argument)
            except re.error as exc:
                r.problem(where, f"not a valid regular expression: {exc}")
                argument = None
    if field_name is None or argument is None:
        return None
    return Condition(field_name, operator, argument, allow_missing)


CONDITION_KEYS = ("field", "allow_missing", *OPERATORS)


def _fit(r: _Reader, node: Any) -> tuple[FitCriterion, ...]:
    criteria = []
    for i, item in enumerate(r.sequence(node, "fit")):
        path = f"fit[{i}]"
        data = r.mapping(item, path, required=("id", "label", "field"), optional=CONDITION_KEYS)
        if data is None:
            continue
        criterion_id = r.identifier(data.get("id"), _join(path, "id"))
        label = r.text(data.get("label"), _join(path, "label"))
        condition = _condition(r, data, path)
        if criterion_id and label and condition:
            criteria.append(FitCriterion(criterion_id, label, condition))
    return tuple(criteria)


def _intent(r: _Reader, node: Any) -> Intent | None:
    data = r.mapping(node, "intent", required=("window_days", "signals"))
    if data is None:
        return None
    window = r.integer(data.get("window_days"), "intent.window_days", minimum=1)
    signals = []
    for i, item in enumerate(r.sequence(data.get("signals"), "intent.signals")):
        path = f"intent.signals[{i}]"
        entry = r.mapping(item, path, required=("id", "label", "points"), optional=("max",))
        if entry is None:
            continue
        signal_id = r.identifier(entry.get("id"), _join(path, "id"))
        label = r.text(entry.get("label"), _join(path, "label"))
        points = r.integer(entry.get("points"), _join(path, "points"))
        if points == 0:
            r.problem(_join(path, "points"), "expected a positive or negative number, got 0")
        cap = None
        if entry.get("max") is not None:
            cap = r.integer(entry["max"], _join(path, "max"), minimum=1)
            if points is not None and points < 0:
                r.problem(_join(path, "max"), "a cap only applies to positive points")
        if signal_id and label and points:
            signals.append(Signal(signal_id, label, points, cap))
    if window is None:
        return None
    return Intent(window, tuple(signals))


def _thresholds(r: _Reader, node: Any) -> Thresholds | None:
    data = r.mapping(node, "thresholds", required=("mql", "hot"))
    if data is None:
        return None
    mql = r.integer(data.get("mql"), "thresholds.mql", minimum=1)
    hot = r.integer(data.get("hot"), "thresholds.hot", minimum=1)
    if mql is None or hot is None:
        return None
    if hot < mql:
        r.problem("thresholds.hot", f"expected at least mql ({mql}), got {hot}")
    return Thresholds(mql, hot)


def _commercial(r: _Reader, node: Any) -> tuple[CommercialItem, ...]:
    """The card's checkboxes: each id is an option's value, each label its text."""
    items = []
    nodes = r.sequence(node or [], "commercial", non_empty=False)
    if len(nodes) > CHECKBOX_OPTIONS:
        r.problem(
            "commercial",
            f"at most {CHECKBOX_OPTIONS} items (Slack's checkbox limit), got {len(nodes)}",
        )
    for i, item in enumerate(nodes):
        path = f"commercial[{i}]"
        data = r.mapping(item, path, required=("id", "label"))
        if data is None:
            continue
        item_id = r.at_most(
            r.identifier(data.get("id"), _join(path, "id")),
            _join(path, "id"),
            OPTION_VALUE,
            "Slack's option value limit",
        )
        label = r.at_most(
            r.text(data.get("label"), _join(path, "label")),
            _join(path, "label"),
            OPTION_TEXT,
            "Slack's option text limit",
        )
        if item_id and label:
            items.append(CommercialItem(item_id, label))
    return tuple(items)


def _sla(r: _Reader, node: Any) -> Sla | None:
    data = r.mapping(
        node,
        "handoff.sla",
        required=("respond_within",),
        optional=(
            "business_hours",
            "holidays",
            "remind_at",
            "escalate_at",
            "escalation_channel",
            "snooze_max",
            "reassign_at",
        ),
    )
    if data is None:
        return None
    within = r.parsed(parse_duration, data.get("respond_within"), "handoff.sla.respond_within")
    hours = r.parsed(
        parse_business_hours,
        data.get("business_hours", "mon-fri 09:00-17:00"),
        "handoff.sla.business_hours",
    )
    holidays = []
    for i, item in enumerate(
        r.sequence(data.get("holidays") or [], "handoff.sla.holidays", non_empty=False)
    ):
        if isinstance(item, date):
            holidays.append(item)
        else:
            r.problem(
                f"handoff.sla.holidays[{i}]", f"expected a date like 2026-12-25, got {_kind(item)}"
            )
    remind_at = tuple(
        fraction
        for i, item in enumerate(
            r.sequence(data.get("remind_at", ["50%"]), "handoff.sla.remind_at", non_empty=False)
        )
        if (fraction := r.fraction(item, f"handoff.sla.remind_at[{i}]")) is not None
    )
    escalate_at = r.fraction(data.get("escalate_at", "100%"), "handoff.sla.escalate_at")
    channel = None
    if data.get("escalation_channel") is not None:
        channel = r.channel(data["escalation_channel"], "handoff.sla.escalation_channel")
    snooze_max = None
    if data.get("snooze_max") is not None:
        snooze_max = r.parsed(parse_duration, data["snooze_max"], "handoff.sla.snooze_max")
    reassign_at = None
    if data.get("reassign_at") is not None:
        reassign_at = r.fraction(data["reassign_at"], "handoff.sla.reassign_at")
    if within is None or hours is None or escalate_at is None:
        return None
    return Sla(
        within,
        hours,
        tuple(holidays),
        tuple(sorted(set(remind_at))),
        escalate_at,
        channel,
        snooze_max,
        reassign_at,
    )


_TARGETS = ("to", "round_robin", "match_account")
# A weight is a share of the rotation: a cycle holds sum(weights) slots.
MAX_WEIGHT = 100


def _rule_reps(r: _Reader, node: Any, where: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A rule's reps: emails, or `{rep: email, weight: 2}`; weights () when all are 1."""
    reps: list[str] = []
    weights: list[int] = []
    for j, item in enumerate(r.sequence(node, where)):
        path = _join(where, j)
        weight: int | None = 1
        if isinstance(item, dict):
            entry = r.mapping(item, path, required=("rep",), optional=("weight",))
            if entry is None:
                continue
            email = r.email(entry.get("rep"), _join(path, "rep"))
            if entry.get("weight") is not None:
                weight = r.integer(entry["weight"], _join(path, "weight"), minimum=1)
                if weight is not None and weight > MAX_WEIGHT:
                    r.problem(_join(path, "weight"), f"expected at most {MAX_WEIGHT}, got {weight}")
                    weight = None
        else:
            email = r.email(item, path)
        if email is None or weight is None:
            continue
        if email in reps:
            r.problem(path, f"'{email}' is listed twice (give one entry a weight instead)")
            continue
        reps.append(email)
        weights.append(weight)
    return tuple(reps), (tuple(weights) if any(w != 1 for w in weights) else ())


def _routing(r: _Reader, node: Any) -> tuple[RoutingRule, ...]:
    rules = []
    for i, item in enumerate(r.sequence(node, "handoff.routing")):
        path = f"handoff.routing[{i}]"
        data = r.mapping(item, path, optional=("when", *_TARGETS, "daily_cap"))
        if data is None:
            continue
        targets = [key for key in _TARGETS if key in data]
        if len(targets) != 1:
            r.problem(path, "expected exactly one of to, round_robin, match_account")
            continue
        when = None
        if "when" in data:
            when_data = r.mapping(
                data["when"], _join(path, "when"), required=("field",), optional=CONDITION_KEYS
            )
            when = _condition(r, when_data, _join(path, "when")) if when_data else None
        key = path.removeprefix("handoff.")
        if targets[0] == "match_account":
            if data["match_account"] is not True:
                r.problem(
                    _join(path, "match_account"),
                    f"expected true, got {_kind(data['match_account'])}",
                )
            elif "daily_cap" in data:
                r.problem(
                    _join(path, "daily_cap"),
                    "a cap applies to a pool of reps (to or round_robin), not to match_account",
                )
            else:
                rules.append(RoutingRule(key, when, (), match_account=True))
            continue
        reps, weights = _rule_reps(r, data[targets[0]], _join(path, targets[0]))
        cap = None
        if data.get("daily_cap") is not None:
            cap = r.integer(data["daily_cap"], _join(path, "daily_cap"), minimum=1)
        elif "daily_cap" in data:
            r.problem(_join(path, "daily_cap"), "expected a whole number, got nothing")
        if reps:
            rules.append(RoutingRule(key, when, reps, weights, cap))
    return tuple(rules)


def _handoff(r: _Reader, node: Any) -> HandoffRules | None:
    data = r.mapping(
        node,
        "handoff",
        required=("sla", "routing"),
        optional=("required", "managers", "max_cycles"),
    )
    if data is None:
        return None
    required = tuple(
        name
        for i, item in enumerate(
            r.sequence(data.get("required") or [], "handoff.required", non_empty=False)
        )
        if (name := r.text(item, f"handoff.required[{i}]"))
    )
    sla = _sla(r, data.get("sla"))
    routing = _routing(r, data.get("routing"))
    managers: dict[str, str] = {}
    raw_managers = data.get("managers") or {}
    if not isinstance(raw_managers, dict):
        r.problem(
            "handoff.managers",
            f"expected a mapping of rep email to manager email, got {_kind(raw_managers)}",
        )
        raw_managers = {}
    for rep, manager in raw_managers.items():
        path = f"handoff.managers.{rep}"
        rep_email = r.email(rep, path)
        manager_email = r.email(manager, path)
        if rep_email and manager_email:
            managers[rep_email] = manager_email
    max_cycles = None
    if data.get("max_cycles") is not None:
        max_cycles = r.integer(data["max_cycles"], "handoff.max_cycles", minimum=1)
    if sla is None:
        return None
    return HandoffRules(required, sla, routing, managers, max_cycles)


# A reason id is the value of an option in the reject menu, then a stored column.
_REASON_ID_LIMIT, _REASON_ID_WHY = (
    (OPTION_VALUE, "Slack's option value limit")
    if OPTION_VALUE <= REASON_ID_COLUMN
    else (REASON_ID_COLUMN, "the longest reason id a handoff can store")
)
_GROUP_WORDS = {
    "fit": "point at fit criteria",
    "commercial": "point at commercial items",
    "other": "point at no criterion",
}


def _reasons(r: _Reader, node: Any, fit: list[str], commercial: list[str]) -> tuple[Reason, ...]:
    reasons = []
    criteria = fit + commercial
    for i, item in enumerate(r.sequence(node, "reasons")):
        path = f"reasons[{i}]"
        data = r.mapping(
            item,
            path,
            required=("id", "label", "action"),
            optional=("criterion", "note_required", "cooldown_days"),
        )
        if data is None:
            continue
        reason_id = r.at_most(
            r.identifier(data.get("id"), _join(path, "id")),
            _join(path, "id"),
            _REASON_ID_LIMIT,
            _REASON_ID_WHY,
        )
        label = r.text(data.get("label"), _join(path, "label"))
        action = data.get("action")
        if label and action in ACTIONS:
            # The menu shows "<label> → <where the lead goes>" as one option text.
            added = len(reason_choice("", action))
            label = r.at_most(
                label,
                _join(path, "label"),
                OPTION_TEXT - added,
                f"Slack's option text limit is {OPTION_TEXT} and the reject menu adds "
                f"'{reason_choice('', action)}'",
            )
        criterion = None
        if data.get("criterion") is not None:
            criterion = r.text(data["criterion"], _join(path, "criterion"))
            if criterion and criterion not in criteria:
                r.problem(
                    _join(path, "criterion"),
                    f"no criterion '{criterion}'" + _did_you_mean(criterion, criteria),
                )
        if action is not None and action not in ACTIONS:
            r.problem(_join(path, "action"), f"expected recycle or disqualify, got {_kind(action)}")
        note_required = r.boolean(data.get("note_required"), _join(path, "note_required"))
        cooldown = 0
        if data.get("cooldown_days") is not None:
            where = _join(path, "cooldown_days")
            cooldown = r.integer(data["cooldown_days"], where, minimum=0) or 0
            if cooldown and action == "disqualify":
                r.problem(
                    where,
                    "only a recycle reason has a cooldown (a disqualified lead never returns)",
                )
        if reason_id and label and action in ACTIONS:
            reasons.append(Reason(reason_id, label, criterion, action, note_required, cooldown))
    groups = Counter(reason_group(reason.criterion, fit, commercial) for reason in reasons)
    for group in REASON_GROUPS:
        if groups[group] > GROUP_OPTIONS:
            r.problem(
                "reasons",
                f"at most {GROUP_OPTIONS} reasons may {_GROUP_WORDS[group]} (Slack's limit of "
                f"options in one group of the reject menu), got {groups[group]}",
            )
    return tuple(reasons)


def _digest(r: _Reader, node: Any) -> DigestConfig | None:
    data = r.mapping(node, "digest", required=("channel", "schedule"))
    if data is None:
        return None
    channel = r.channel(data.get("channel"), "digest.channel")
    schedule = r.parsed(parse_schedule, data.get("schedule"), "digest.schedule")
    return DigestConfig(channel, schedule) if channel and schedule else None


def _target(r: _Reader, node: Any) -> Target | None:
    if node is None:
        return None
    data = r.mapping(node, "target", required=("revenue", "deal_value", "period", "win_rate"))
    if data is None:
        return None
    revenue = r.number(data.get("revenue"), "target.revenue")
    deal_value = r.number(data.get("deal_value"), "target.deal_value")
    period = data.get("period")
    if period not in ("year", "quarter", "month"):
        r.problem("target.period", f"expected year, quarter or month, got {_kind(period)}")
    win_rate = r.fraction(data.get("win_rate"), "target.win_rate")
    if deal_value is not None and deal_value <= 0:
        r.problem("target.deal_value", "expected more than 0")
        return None
    if revenue is None or deal_value is None or win_rate is None or period is None:
        return None
    return Target(revenue, deal_value, period, win_rate)


def _timezone(r: _Reader, node: Any) -> ZoneInfo | None:
    name = r.text(node, "timezone")
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        r.problem("timezone", f"'{name}' is not an IANA time zone (like Australia/Sydney)")
        return None


def parse_definition(data: Any, *, source: str = "<definition>") -> Definition:
    """Validate parsed YAML into a Definition, or raise DefinitionError listing every problem."""
    r = _Reader()
    top = r.mapping(data, "", required=REQUIRED_TOP_LEVEL, optional=TOP_LEVEL)
    if top is None:
        raise DefinitionError(r.problems)
    version = r.integer(top.get("version"), "version", minimum=1)
    owners_data = r.mapping(top.get("owners"), "owners", required=("marketing", "sales"))
    owners = None
    if owners_data is not None:
        marketing = r.email(owners_data.get("marketing"), "owners.marketing")
        sales = r.email(owners_data.get("sales"), "owners.sales")
        owners = Owners(marketing, sales) if marketing and sales else None
    review_days = r.integer(top.get("review_every_days", 90), "review_every_days", minimum=1)
    reviewed_on = top.get("reviewed_on")
    if reviewed_on is not None and not isinstance(reviewed_on, date):
        r.problem("reviewed_on", f"expected a date like 2026-11-01, got {_kind(reviewed_on)}")
        reviewed_on = None
    timezone = _timezone(r, top.get("timezone"))
    fit = _fit(r, top.get("fit"))
    intent = _intent(r, top.get("intent"))
    thresholds = _thresholds(r, top.get("thresholds"))
    commercial = _commercial(r, top.get("commercial"))
    handoff = _handoff(r, top.get("handoff"))
    reasons = _reasons(r, top.get("reasons"), [c.id for c in fit], [c.id for c in commercial])
    digest = _digest(r, top.get("digest"))
    target = _target(r, top.get("target"))

    r.unique(
        [(f"fit[{i}].id", c.id) for i, c in enumerate(fit)]
        + [(f"commercial[{i}].id", c.id) for i, c in enumerate(commercial)]
    )
    if intent:
        r.unique([(f"intent.signals[{i}].id", s.id) for i, s in enumerate(intent.signals)])
    r.unique([(f"reasons[{i}].id", reason.id) for i, reason in enumerate(reasons)])
    if r.problems:
        raise DefinitionError(r.problems)
    assert owners and intent and thresholds and handoff and digest and timezone and version
    canonical = json.dumps(data, sort_keys=True, default=str).encode()
    return Definition(
        version=version,
        owners=owners,
        review_every_days=review_days or 90,
        reviewed_on=reviewed_on,
        timezone=timezone,
        fit=fit,
        intent=intent,
        thresholds=thresholds,
        commercial=commercial,
        handoff=handoff,
        reasons=reasons,
        digest=digest,
        target=target,
        source=source,
        fingerprint=hashlib.sha256(canonical).hexdigest()[:16],
        data=data,
    )


def load_definition(path: str | Path) -> Definition:
    """Read and validate a definition file. OSError if it cannot be read at all."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefinitionError([yaml_problem(exc)]) from None
    return parse_definition(data, source=str(path))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML parse error in one line, with where it is: `line 3, column 5: not valid YAML (…)`."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}not valid YAML ({problem})"
