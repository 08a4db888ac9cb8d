"""The judge: one lead against the shared definition, with every reason written down.

A pure function of (lead, definition, now): no I/O, no clock. Fit is a gate
(every criterion must pass); intent is points from the signals inside the
window, capped per signal. The verdict explains every point it counts and every
signal it ignores, so a rep, a marketer and a backtest all see the same story.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.definition import Definition
from bot.leads import TOP_LEVEL_FIELDS, LeadIn

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


def judge(lead: LeadIn, definition: Definition, now: datetime) -> Verdict:
    # The loops below are the hot path of an import: locals, no helper calls.
    attributes = lead.attributes
    criteria = []
    fit_passed = True
    for criterion_id, label, name, allow_missing, test in definition.fit_tests:
        value = getattr(lead, name) if name in TOP_LEVEL_FIELDS else attributes.get(name)
        missing = value is None or value == ""
        passed = allow_missing if missing else test(value)
        fit_passed = fit_passed and passed
        criteria.append(CriterionResult(criterion_id, label, passed, value, missing))

    intent = definition.intent
    window_start = now - timedelta(days=intent.window_days)
    latest = now + CLOCK_SKEW
    known = intent.by_id
    counts: dict[str, int] = {}
    ignored = []
    for signal in lead.signals:
        name, at = signal["name"], signal["at"]
        if name not in known:
            ignored.append(IgnoredSignal(name, at.isoformat(), "not in the definition"))
        elif at < window_start:
            ignored.append(IgnoredSignal(name, at.isoformat(), intent.too_old))
        elif at > latest:
            ignored.append(IgnoredSignal(name, at.isoformat(), "in the future"))
        else:
            counts[name] = counts.get(name, 0) + 1

    scores = []
    total = 0
    for definition_signal in intent.signals:  # definition order: stable explanations
        count = counts.get(definition_signal.id)
        if not count:
            continue
        uncapped = definition_signal.points * count
        points = uncapped
        if definition_signal.max is not None and points > definition_signal.max:
            points = definition_signal.max
        total += points
        scores.append(
            SignalScore(definition_signal.id, definition_signal.label, count, points, uncapped)
        )

    missing = tuple(
        field for field in definition.handoff.required if lead.field(field) in (None, "")
    )
    return Verdict(
        fit_passed=fit_passed,
        criteria=tuple(criteria),
        score=total,
        signals=tuple(scores),
        ignored=tuple(ignored),
        mql=definition.thresholds.mql,
        hot_at=definition.thresholds.hot,
        missing=missing,
    )
