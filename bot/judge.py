"""The judge: one lead against the shared definition, with every reason written down.

A pure function of (lead, definition, now): no I/O, no clock. Fit is a gate
(every criterion must pass); intent is points from the signals inside the
window, capped per signal. The verdict explains every point it counts and every
signal it ignores, so a rep, a marketer and a backtest all see the same story.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(slots=True)
class _Prepared:
    """What the judge reads from a definition, flattened once rather than per lead."""

    definition: Definition
    fit_tests: tuple[tuple[str, str, str, bool, Callable[[Any], bool]], ...]
    window: timedelta
    too_old: str
    # signal id -> (position in the definition, label, points, cap)
    signals: dict[str, tuple[int, str, int, int | None]]
    required: tuple[tuple[str, bool], ...]  # (field, is a top-level field)
    mql: int
    hot_at: int


_prepared: _Prepared | None = None  # the last definition seen: an import judges with one


def _prepare(definition: Definition) -> _Prepared:
    global _prepared
    prepared = _prepared
    if prepared is not None and prepared.definition is definition:
        return prepared
    intent = definition.intent
    prepared = _Prepared(
        definition=definition,
        fit_tests=definition.fit_tests,
        window=timedelta(days=intent.window_days),
        too_old=intent.too_old,
        signals={
            signal.id: (position, signal.label, signal.points, signal.max)
            for position, signal in enumerate(intent.signals)
        },
        required=tuple((name, name in TOP_LEVEL_FIELDS) for name in definition.handoff.required),
        mql=definition.thresholds.mql,
        hot_at=definition.thresholds.hot,
    )
    _prepared = prepared
    return prepared


def _position(item: tuple[str, tuple[int, str, int, int | None]]) -> int:
    return item[1][0]


def judge(lead: LeadIn, definition: Definition, now: datetime) -> Verdict:
    # The loops below are the hot path of an import: locals, no helper calls.
    prepared = _prepare(definition)
    attributes = lead.attributes
    criteria = []
    fit_passed = True
    for criterion_id, label, name, allow_missing, test in prepared.fit_tests:
        value = getattr(lead, name) if name in TOP_LEVEL_FIELDS else attributes.get(name)
        missing = value is None or value == ""
        passed = allow_missing if missing else test(value)
        fit_passed = fit_passed and passed
        criteria.append(CriterionResult(criterion_id, label, passed, value, missing))

    scores = []
    total = 0
    ignored = []
    if lead.signals:
        window_start = now - prepared.window
        latest = now + CLOCK_SKEW
        known = prepared.signals
        counts: dict[str, int] = {}
        for signal in lead.signals:
            name, at = signal["name"], signal["at"]
            if name not in known:
                ignored.append(IgnoredSignal(name, at.isoformat(), "not in the definition"))
            elif at < window_start:
                ignored.append(IgnoredSignal(name, at.isoformat(), prepared.too_old))
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
        for name, top_level in prepared.required
        if (getattr(lead, name) if top_level else attributes.get(name)) in (None, "")
    )
    return Verdict(
        fit_passed,
        tuple(criteria),
        total,
        tuple(scores),
        tuple(ignored),
        prepared.mql,
        prepared.hot_at,
        missing,
    )
