"""Calibration: concrete edits to the definition, drawn from what sales rejected and why.

A rejection whose reason points at a fit criterion (`too_small` -> `size`) is evidence
against that criterion as written; one whose reason points at a commercial item (budget,
authority, timeline: what intent is meant to predict) is evidence against the intent
score. From the leads decided in the period, calibration proposes:

- a `between`/`gte`/`lte` bound moved just past the rejected values (the smallest value
  that clears them: rejected at 50-99 employees -> lower bound 100);
- a value removed from an `in` list, or added to a `not_in` list;
- the MQL threshold raised just above the rejected leads' scores;
- a signal's points lowered (to 3/4, 1/2 or 1/4).

Each suggestion carries its backtest on the same leads: the rejections it would have
prevented and the accepts it would have cost (leads, not handoffs; each lead by its
latest decision in the period, judged as of its last update as `handoff backtest` does).
Suggestions are ranked by that trade (prevented minus cost, then prevented). None is
made without evidence: at least `MIN_REJECTIONS` of the rejections it prevents must
have a reason pointing at what it changes, and it must prevent more than it costs.

The leads are streamed once and folded into histograms (per criterion value, per score,
per signal count), so memory is bounded by the number of distinct values, not of leads;
each candidate is then counted from the histograms without judging anything again. This
is exact because a candidate changes one thing: a lead that qualifies now stops
qualifying under it exactly when its value (or its score) falls in the part cut off.
"""

from __future__ import annotations

import copy
import math
import re
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import accumulate
from typing import Any

import yaml

from bot.backtest import fields_named, stored_leads
from bot.changes import describe
from bot.definition import (  # its own readings of a value: bins hold what the judge compares
    Definition,
    _norm,
    _number,
    parse_definition,
)
from bot.judge import judge
from store.db import Database
from store.models import HandoffStatus

MIN_REJECTIONS = 5
DEFAULT_WEEKS = 12
POINT_STEPS = (0.75, 0.5, 0.25)  # a signal's points lowered to these shares of today's
SHOWN = 5  # suggestions a review DM carries

REJECTED, ACCEPTED, EVIDENCE = 0, 1, 2


@dataclass(frozen=True)
class Suggestion:
    """One edit, its evidence, and the definition it would make."""

    change: str  # describe()'s line(s) for the edit, joined with "; "
    prevents: int  # rejected leads the edited definition would not have handed off
    costs: int  # accepted leads it would not have handed off
    evidence: int  # of `prevents`, those rejected for a reason pointing at what it edits
    definition: Definition
    text: str  # the edited definition as YAML, ready to propose

    @property
    def trade(self) -> tuple[int, int, int]:
        return (self.prevents - self.costs, self.prevents, -self.costs)

    @property
    def summary(self) -> str:
        return (
            f"prevents {self.prevents} rejection{'s' if self.prevents != 1 else ''}, "
            f"costs {self.costs} accept{'s' if self.costs != 1 else ''}"
        )


@dataclass
class Calibration:
    start: datetime
    end: datetime
    minimum: int
    decided: int = 0  # leads decided in the period that qualify today
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason id -> leads
    suggestions: list[Suggestion] = field(default_factory=list)


def _bins() -> defaultdict[Any, list[int]]:
    return defaultdict(lambda: [0, 0, 0])


@dataclass
class _Histograms:
    """What calibration keeps from each lead: counts by value, never the leads."""

    values: dict[str, defaultdict[Any, list[int]]]  # criterion id -> value -> bins
    shown: dict[str, dict[Any, Any]]  # criterion id -> normalised value -> as first seen
    scores: defaultdict[int, list[int]] = field(default_factory=_bins)
    # signal id -> (score, count, points counted) -> bins
    signals: defaultdict[str, defaultdict[tuple[int, int, int], list[int]]] = field(
        default_factory=lambda: defaultdict(_bins)
    )


NUMERIC = ("between", "gte", "lte")
LISTS = ("in", "not_in")


def _gather(
    db: Database, definition: Definition, start: datetime, end: datetime
) -> tuple[Calibration, _Histograms]:
    calibration = Calibration(start, end, MIN_REJECTIONS)
    kinds = {c.id: c.condition.operator for c in definition.fit}
    tracked = {c.id for c in definition.fit if c.condition.operator in (*NUMERIC, *LISTS)}
    hist = _Histograms({cid: _bins() for cid in tracked}, {cid: {} for cid in tracked})
    commercial = {item.id for item in definition.commercial}
    decided = stored_leads(
        db, decided_only=True, start=start, end=end, fields=fields_named(definition)
    )
    for lead, at, status, reason_id in decided:
        verdict = judge(lead, definition, at)
        if not verdict.qualified:
            continue  # already filtered out today: no edit can prevent it again
        calibration.decided += 1
        rejected = status == HandoffStatus.REJECTED
        if rejected:
            calibration.rejected[reason_id or "—"] += 1
        else:
            calibration.accepted += 1
        reason = definition.reason(reason_id) if rejected and reason_id else None
        points_at = reason.criterion if reason else None
        column = REJECTED if rejected else ACCEPTED
        for result in verdict.criteria:
            if result.id not in tracked or result.missing:
                continue
            if kinds[result.id] in NUMERIC:
                key = _number(result.value)
            else:
                key = _norm(result.value)
                hist.shown[result.id].setdefault(key, result.value)
            if key is None:
                continue
            bins = hist.values[result.id][key]
            bins[column] += 1
            if points_at == result.id:
                bins[EVIDENCE] += 1
        about_intent = points_at in commercial
        bins = hist.scores[verdict.score]
        bins[column] += 1
        bins[EVIDENCE] += about_intent
        for scored in verdict.signals:
            bins = hist.signals[scored.id][(verdict.score, scored.count, scored.points)]
            bins[column] += 1
            bins[EVIDENCE] += about_intent
    return calibration, hist


class _Cumulative:
    """Bins over sorted numbers, summed below or above any cut in O(log n)."""

    def __init__(self, bins: dict[float, list[int]]) -> None:
        self.keys = sorted(bins)
        self.sums = [
            list(accumulate((bins[key][i] for key in self.keys), initial=0)) for i in range(3)
        ]

    def below(self, cut: float) -> list[int]:
        index = bisect_left(self.keys, cut)
        return [self.sums[i][index] for i in range(3)]

    def above(self, cut: float) -> list[int]:
        index = bisect_right(self.keys, cut)
        return [self.sums[i][-1] - self.sums[i][index] for i in range(3)]


def _median(bins: dict[float, list[int]], column: int) -> float | None:
    """The median value of one column of the bins (None: the column is empty)."""
    total = sum(counts[column] for counts in bins.values())
    seen = 0
    for value in sorted(bins):
        seen += bins[value][column]
        if total and seen * 2 > total:
            return value
    return None


def _whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class _Dumper(yaml.SafeDumper):
    """Safe YAML that also writes subclasses of date and datetime (as freezegun makes)."""


_Dumper.add_multi_representer(datetime, yaml.representer.SafeRepresenter.represent_datetime)
_Dumper.add_multi_representer(date, yaml.representer.SafeRepresenter.represent_date)


class _Editor:
    """Builds an edited definition from the YAML text, one change at a time."""

    def __init__(self, definition: Definition, text: str) -> None:
        self.definition = definition
        self.data = yaml.safe_load(text)

    def build(self, edit: Any, evidence: list[int], what: str) -> Suggestion:
        data = copy.deepcopy(self.data)
        edit(data)
        data["version"] = int(data.get("version", self.definition.version)) + 1
        text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
        edited = parse_definition(yaml.safe_load(text), source=f"calibration: {what}")
        lines = describe(self.definition, edited)
        return Suggestion(
            "; ".join(lines),
            evidence[REJECTED],
            evidence[ACCEPTED],
            evidence[EVIDENCE],
            edited,
            text,
        )


def _fit_item(data: dict[str, Any], criterion_id: str) -> dict[str, Any]:
    return next(item for item in data["fit"] if item.get("id") == criterion_id)


def _relabel(label: str, old: Any, new: Any) -> str:
    """`50-5000 employees` -> `100-5000 employees` when the old bound appears once."""
    pattern = rf"(?<![\d.]){re.escape(str(_whole(old)))}(?![\d.])"
    if len(re.findall(pattern, label)) != 1:
        return label
    return re.sub(pattern, str(_whole(new)), label)


def _bound_candidates(
    editor: _Editor, criterion_id: str, bins: dict[Any, list[int]], minimum: int
) -> list[Suggestion]:
    criterion = next(c for c in editor.definition.fit if c.id == criterion_id)
    op, arg = criterion.condition.operator, criterion.condition.argument
    low = arg[0] if op == "between" else (arg if op == "gte" else None)
    high = arg[1] if op == "between" else (arg if op == "lte" else None)
    criterion_low = low if low is not None else -math.inf
    criterion_high = high if high is not None else math.inf
    cumulative = _Cumulative(bins)
    flagged = [value for value, counts in bins.items() if counts[EVIDENCE]]
    best: list[tuple[tuple[int, int, int], str, float, list[int]]] = []
    if op == "between":
        # Move the bound on the evidence's side: rejected "too small" leads sit below the
        # accepted ones (or below the middle of the range when nothing was accepted).
        accepted = _median(bins, ACCEPTED)
        middle = accepted if accepted is not None else (low + high) / 2
        flagged_middle = _median(bins, EVIDENCE)
        below = flagged_middle is None or flagged_middle < middle
        low, high = (low, None) if below else (None, high)
    if low is not None:
        options = {math.floor(v) + 1 for v in flagged}
        for cut in options:
            if cut > criterion_high:
                continue
            counts = cumulative.below(cut)
            best.append(((counts[0] - counts[1], counts[0], -counts[1]), "low", cut, counts))
    if high is not None:
        options = {math.ceil(v) - 1 for v in flagged}
        for cut in options:
            if cut < criterion_low:
                continue
            counts = cumulative.above(cut)
            best.append(((counts[0] - counts[1], counts[0], -counts[1]), "high", cut, counts))
    suggestions = []
    for side in ("low", "high"):
        sided = [b for b in best if b[1] == side and b[3][EVIDENCE] >= minimum and b[0][0] > 0]
        if not sided:
            continue
        _, _, cut, counts = max(sided, key=lambda b: (b[0], -abs(b[2])))

        def edit(data: dict[str, Any], side: str = side, cut: float = cut) -> None:
            item = _fit_item(data, criterion_id)
            if op == "between":
                old = item["between"][0 if side == "low" else 1]
                item["between"] = (
                    [_whole(cut), item["between"][1]]
                    if side == "low"
                    else [item["between"][0], _whole(cut)]
                )
            else:
                old = item[op]
                item[op] = _whole(cut)
            item["label"] = _relabel(str(item["label"]), old, cut)

        suggestions.append(editor.build(edit, counts, f"fit {criterion_id} {side} bound"))
    return suggestions


def _list_candidates(
    editor: _Editor,
    criterion_id: str,
    bins: dict[Any, list[int]],
    shown: dict[Any, Any],
    minimum: int,
) -> list[Suggestion]:
    criterion = next(c for c in editor.definition.fit if c.id == criterion_id)
    op, arg = criterion.condition.operator, criterion.condition.argument
    suggestions = []
    for value, counts in bins.items():
        if counts[EVIDENCE] < minimum or counts[REJECTED] <= counts[ACCEPTED]:
            continue
        if op == "in":
            keep = [item for item in arg if _norm(item) != value]
            if not keep or len(keep) == len(arg):
                continue

            def edit(data: dict[str, Any], value: Any = value) -> None:
                item = _fit_item(data, criterion_id)
                item["in"] = [v for v in item["in"] if _norm(v) != value]

        else:

            def edit(data: dict[str, Any], value: Any = value) -> None:
                item = _fit_item(data, criterion_id)
                item["not_in"] = [*item["not_in"], shown[value]]

        suggestions.append(editor.build(edit, counts, f"fit {criterion_id} {shown[value]}"))
    return suggestions


def _threshold_candidate(
    editor: _Editor, scores: dict[int, list[int]], minimum: int
) -> list[Suggestion]:
    thresholds = editor.definition.thresholds
    cumulative = _Cumulative({float(score): bins for score, bins in scores.items()})
    options = []
    for score, bins in scores.items():
        cut = score + 1
        if bins[EVIDENCE] and thresholds.mql < cut <= thresholds.hot:
            counts = cumulative.below(cut)
            if counts[EVIDENCE] >= minimum and counts[REJECTED] > counts[ACCEPTED]:
                options.append(((counts[0] - counts[1], counts[0], -cut), cut, counts))
    if not options:
        return []
    _, cut, counts = max(options)

    def edit(data: dict[str, Any]) -> None:
        data["thresholds"]["mql"] = cut

    return [editor.build(edit, counts, "MQL threshold")]


def _signal_candidates(
    editor: _Editor, signals: dict[str, dict[tuple[int, int, int], list[int]]], minimum: int
) -> list[Suggestion]:
    mql = editor.definition.thresholds.mql
    suggestions = []
    for position, signal in enumerate(editor.definition.intent.signals):
        if signal.points <= 1 or signal.id not in signals:
            continue
        options = []
        for share in POINT_STEPS:
            points = max(1, round(signal.points * share))
            if points >= signal.points:
                continue
            counts = [0, 0, 0]
            for (score, count, counted), bins in signals[signal.id].items():
                now = points * count
                if signal.max is not None:
                    now = min(now, signal.max)
                if score - counted + now < mql:
                    for i in range(3):
                        counts[i] += bins[i]
            if counts[EVIDENCE] >= minimum and counts[REJECTED] > counts[ACCEPTED]:
                options.append(((counts[0] - counts[1], counts[0], points), points, counts))
        if not options:
            continue
        _, points, counts = max(options)

        def edit(data: dict[str, Any], position: int = position, points: int = points) -> None:
            data["intent"]["signals"][position]["points"] = points

        suggestions.append(editor.build(edit, counts, f"signal {signal.id}"))
    return suggestions


def calibrate(
    db: Database,
    definition: Definition,
    text: str,
    *,
    start: datetime,
    end: datetime,
    minimum: int = MIN_REJECTIONS,
) -> Calibration:
    """Suggestions from the leads decided in [start, end), best trade first.

    Args:
        definition: the active definition, as judged today.
        text: its YAML text: each suggestion is this with one edit (and `version` + 1).
        minimum: rejections pointing at what a suggestion edits that it must prevent.
    """
    calibration, hist = _gather(db, definition, start, end)
    calibration.minimum = minimum
    editor = _Editor(definition, text)
    suggestions: list[Suggestion] = []
    for criterion in definition.fit:
        bins = hist.values.get(criterion.id)
        if not bins:
            continue
        if criterion.condition.operator in NUMERIC:
            suggestions += _bound_candidates(editor, criterion.id, bins, minimum)
        else:
            suggestions += _list_candidates(
                editor, criterion.id, bins, hist.shown[criterion.id], minimum
            )
    suggestions += _threshold_candidate(editor, hist.scores, minimum)
    suggestions += _signal_candidates(editor, hist.signals, minimum)
    calibration.suggestions = sorted(suggestions, key=lambda s: s.trade, reverse=True)
    return calibration


def render(calibration: Calibration, definition: Definition) -> str:
    """The numbered suggestions, as `handoff calibrate` prints them."""
    rejected = sum(calibration.rejected.values())
    zone = definition.timezone
    start, end = calibration.start.astimezone(zone), calibration.end.astimezone(zone)
    lines = [
        f"Calibration from {rejected} rejection(s) and {calibration.accepted} accept(s) decided "
        f"between {start:%Y-%m-%d} and {end:%Y-%m-%d} "
        f"(each lead by its latest decision).",
        f"A suggestion needs at least {calibration.minimum} rejections whose reason points at "
        "what it changes, and must prevent more rejections than the accepts it costs.",
    ]
    if calibration.rejected:
        by_reason = ", ".join(
            f"{_reason_label(definition, reason)} {count}"
            for reason, count in calibration.rejected.most_common()
        )
        lines.append(f"Rejections by reason: {by_reason}")
    lines.append("")
    if not calibration.suggestions:
        lines.append("No suggestion: not enough rejections point at one criterion or threshold.")
    for number, suggestion in enumerate(calibration.suggestions, 1):
        lines.append(f"{number}. {suggestion.change}: {suggestion.summary}")
    return "\n".join(lines)


def _reason_label(definition: Definition, reason_id: str) -> str:
    reason = definition.reason(reason_id)
    return reason.label if reason else reason_id
