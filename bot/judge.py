"""The judge: one lead against the shared definition, with every reason written down.

A pure function of (lead, definition, now): no I/O, no clock. Fit is a gate
(every criterion must pass); intent is points from the signals inside the
window, capped per signal. The verdict explains every point it counts and every
signal it ignores, so a rep, a marketer and a backtest all see the same story.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.definition import Definition
from bot.leads import TOP_LEVEL_FIELDS


class Judged(Protocol):
    """What the judge reads from a lead: a LeadIn, or a stored lead read for a backtest
    (bot/backtest.py). Top-level fields are read by name with getattr."""

    attributes: dict[str, Any]
    signals: list[Any]  # {"name": str, "at": datetime in UTC}


# Marketing automation clocks drift; a signal a few minutes "in the future" is not a typo.
CLOCK_SKEW = timedelta(minutes=5)


# Plain slotted dataclasses: one verdict builds a dozen of these, and a frozen
# dataclass's __init__ costs several times more (the judge runs 1M times in an import).
@dataclass(slots=True)
class CriterionResult:
    id: str
    label: str
    passed: bool
    value: Any
    missing: bool


@dataclass(slots=True)
class SignalScore:
    id: str
    label: str
    count: int
    points: int  # what counted, after the cap
    uncapped: int


@dataclass(slots=True)
class IgnoredSignal:
    name: str
    at: str
    why: str


@dataclass(slots=True)
class Verdict:
    fit_passed: bool
    criteria: tuple[CriterionResult, ...]
    score: int
    signals: tuple[SignalScore, ...]
    ignored: tuple[IgnoredSignal, ...]
    mql: int
    hot_at: int
    missing: tuple[str, ...]

    @property
    def qualified(self) -> bool:
        return self.fit_passed and self.score >= self.mql

    @property
    def hot(self) -> bool:
        return self.qualified and self.score >= self.hot_at

    @property
    def ready(self) -> bool:
        """Qualified and carrying the context sales needs: what gets handed off."""
        return self.qualified and not self.missing

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        return tuple(c for c in self.criteria if not c.passed)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(qualified=self.qualified, hot=self.hot)
        return data


def _position(item: tuple[str, tuple[int, str, int, int | None]]) -> int:
    return item[1][0]


def judge(lead: Judged, definition: Definition, now: datetime) -> Verdict:
    # The loops below are the hot path of an import: locals, no helper calls.
    plan = definition.judge_plan
    attributes = lead.attributes
    criteria = []
    fit_passed = True
    for criterion_id, label, name, allow_missing, test in plan.fit_tests:
        value = getattr(lead, name) if name in TOP_LEVEL_FIELDS else attributes.get(name)
        missing = value is None or value == ""
        passed = allow_missing if missing else test(value)
        fit_passed = fit_passed and passed
        criteria.append(CriterionResult(criterion_id, label, passed, value, missing))

    scores = []
    total = 0
    ignored = []
    if lead.signals:
        window_start = now - plan.window
        latest = now + CLOCK_SKEW
        known = plan.signals
        counts: dict[str, int] = {}
        for signal in lead.signals:
            name, at = signal["name"], signal["at"]
            if name not in known:
                ignored.append(IgnoredSignal(name, at.isoformat(), "not in the definition"))
            elif at < window_start:
                ignored.append(IgnoredSignal(name, at.isoformat(), plan.too_old))
            elif at > latest:
                ignored.append(IgnoredSignal(name, at.isoformat(), "in the future"))
            else:
                counts[name] = counts.get(name, 0) + 1
        # Definition order, for stable explanations; only the signals that counted.
        counted = sorted(((name, known[name]) for name in counts), key=_position)
        for name, (_, label, points_each, cap) in counted:
            count = counts[name]
            uncapped = points_each * count
            points = uncapped if cap is None or uncapped <= cap else cap
            total += points
            scores.append(SignalScore(name, label, count, points, uncapped))

    missing = tuple(
        name
        for name, top_level in plan.required
        if (getattr(lead, name) if top_level else attributes.get(name)) in (None, "")
    )
    return Verdict(
        fit_passed,
        tuple(criteria),
        total,
        tuple(scores),
        tuple(ignored),
        plan.mql,
        plan.hot_at,
        missing,
    )


def fit_passes(lead: Judged, definition: Definition) -> bool:
    """The fit gate alone, stopping at the first failed criterion."""
    attributes = lead.attributes
    for _, _, name, allow_missing, test in definition.judge_plan.fit_tests:
        value = getattr(lead, name) if name in TOP_LEVEL_FIELDS else attributes.get(name)
        if value is None or value == "":
            if not allow_missing:
                return False
        elif not test(value):
            return False
    return True


def intent_score(lead: Judged, definition: Definition, now: datetime) -> int:
    """The intent points alone: the verdict's score without the explanation."""
    total = 0
    if lead.signals:
        plan = definition.judge_plan
        window_start = now - plan.window
        latest = now + CLOCK_SKEW
        known = plan.signals
        counts: dict[str, int] = {}
        for signal in lead.signals:
            name, at = signal["name"], signal["at"]
            if name in known and window_start <= at <= latest:
                counts[name] = counts.get(name, 0) + 1
        for name, count in counts.items():
            _, _, points_each, cap = known[name]
            points = points_each * count
            total += points if cap is None or points <= cap else cap
    return total


def same_intent(one: Definition, other: Definition) -> bool:
    """Whether two definitions score every lead the same (the window and the signals)."""
    a, b = one.judge_plan, other.judge_plan
    return a.window == b.window and a.signals == b.signals


def outcome(lead: Judged, definition: Definition, now: datetime) -> tuple[bool, bool]:
    """(qualified, hot): the verdict's two booleans without the explanation, for a
    backtest that judges a million leads twice. tests/test_judge.py checks it against
    judge() on generated leads."""
    if not fit_passes(lead, definition):
        return False, False
    plan = definition.judge_plan
    score = intent_score(lead, definition, now)
    return score >= plan.mql, score >= plan.mql and score >= plan.hot_at
