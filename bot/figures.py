"""The one definition of every figure Handoff reports.

The digest, `/handoff stats` (the digest's first section) and `handoff report` (table,
CSV, JSON) count through this module and nowhere else, so the same period gives the
same numbers everywhere. A period is the half-open interval [start, end) of instants.

Each figure, what it counts, and the time that places it in a period:

figure             counts                                                     placed by
-----------------  ---------------------------------------------------------  -------------
handed off         leads handed to sales: handoffs that are not a             handed off
                   reassignment (a lead recycled and handed off again         (assigned_at)
                   counts again)
accepted,          decisions, on whichever handoff of the lead they land      decided
rejected                                                                      (decided_at)
rejections         rejected, split by the reason given                        decided
by reason
accept rate        accepted / (accepted + rejected); none without decisions   -
open               leads waiting for a decision at the end of the period:     the end
                   handed off before it, decided at or after it or not yet
                   (a reassigned lead once: only its current handoff is open)
SLA met,           each rep's response clock, once it has stopped (a          handed to
SLA breached       decision or a reassignment): met when it stopped by the    that rep
                   deadline. A lead reassigned after a breach counts the      (assigned_at)
                   first rep's breach, and the next rep's clock on its own;
                   a clock still running counts once it stops
SLA compliance     met / (met + breached); none when no clock stopped         -
nurture            leads with marketing because they did not qualify (status  arrived
                   nurture, not qualified: a lead sales recycled counts as    (created_at);
                   rejected, not here)                                        status now
missing context    leads that qualified but lack a required field             arrived;
                                                                              status now

Grouped figures split the same counts, so a grouping adds up to the totals: by the
lead's `source` or `campaign`, by `rep` (the owner of each handoff: a reassigned lead is
handed off by the first rep and decided by the next) or by rejection `reason`. Leads that
never reached sales (nurture, missing context) have no rep or reason: they are counted
whole or by source or campaign only.

Every handoff statement seeks the period in one of the handoff table's covering indexes,
(`assigned_at`, `previous_id`, `status`, `reason_id`, `breached`, `lead_id`) or (`status`,
`decided_at`, ..., `reason_id`, `lead_id`), and reads index entries only, so a period
costs the same on a thousand handoffs as on a million. Rows are read only to group by
rep (the owner) or by source or campaign (the lead), and for `open` at an end in the past
(the handoffs decided since). This is also why the SLA is placed by when the handoff was
made: `breached` is in the first index only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from store.models import Handoff, HandoffStatus, Lead, LeadStatus

GROUPS: dict[str, Any] = {
    "source": Lead.source,
    "campaign": Lead.campaign,
    "rep": Handoff.owner_email,
    "reason": Handoff.reason_id,
}
LEAD_GROUPS = {"source", "campaign"}

HANDED_OFF, DECISIONS, SLA, OPEN, LEADS = "handed_off", "decisions", "sla", "open", "leads"
PARTS = (HANDED_OFF, DECISIONS, SLA, OPEN, LEADS)

DECIDED = (HandoffStatus.ACCEPTED, HandoffStatus.REJECTED)
CLOCK_STOPPED = (*DECIDED, HandoffStatus.REASSIGNED)  # every status with a decided_at
FIRST = Handoff.previous_id.is_(None)  # a handoff that is not a reassignment


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Figures:
    handed_off: int = 0
    accepted: int = 0
    rejected: int = 0
    open: int = 0
    nurture: int = 0
    missing_context: int = 0
    sla_met: int = 0
    sla_breached: int = 0
    rejections: Counter[str] = field(default_factory=Counter)  # reason id -> rejected

    @property
    def accept_rate(self) -> float | None:
        return _rate(self.accepted, self.accepted + self.rejected)

    @property
    def sla_compliance(self) -> float | None:
        return _rate(self.sla_met, self.sla_met + self.sla_breached)

    def add(self, other: Figures) -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def total(groups: Iterable[Figures]) -> Figures:
    """The figures of the groups added up: the whole period's, as every grouping adds up."""
    whole = Figures()
    for figures in groups:
        whole.add(figures)
    return whole


# --- the filters: one per figure, shared with the digest's other queries ----------------------


def assigned_in(start: datetime, end: datetime) -> tuple[Any, ...]:
    """Handoffs made in the period: to a first rep, or to the next after a reassignment."""
    return (Handoff.assigned_at >= start, Handoff.assigned_at < end)


def handed_off_in(start: datetime, end: datetime) -> tuple[Any, ...]:
    """Leads handed to sales in the period (a reassignment is not a new handoff)."""
    return (*assigned_in(start, end), FIRST)


def decided_in(
    start: datetime, end: datetime, statuses: Sequence[str] = DECIDED
) -> tuple[Any, ...]:
    """Handoffs decided in the period (`statuses`: accepted or rejected unless told)."""
    return (
        Handoff.status.in_(statuses),
        Handoff.decided_at >= start,
        Handoff.decided_at < end,
    )


def open_at(end: datetime) -> tuple[tuple[tuple[Any, ...], int], ...]:
    """Handoffs waiting for a decision at `end`, as filters to count with a sign and add up:
    open now, minus those made at or after `end`, plus those made before it and decided at
    or after it. A period that ends now reads the open handoffs' index entries only; an
    earlier one also the handoffs made or decided since."""
    return (
        ((Handoff.status == HandoffStatus.OPEN,), 1),
        # "Not stopped" rather than "open": an equality on status would draw SQLite's planner
        # (no statistics) to the status index and every open handoff instead of the range.
        ((Handoff.assigned_at >= end, Handoff.status.not_in(CLOCK_STOPPED)), -1),
        (
            (
                Handoff.status.in_(CLOCK_STOPPED),
                Handoff.decided_at >= end,
                Handoff.assigned_at < end,
            ),
            1,
        ),
    )


def arrived_in(start: datetime, end: datetime) -> tuple[Any, ...]:
    """Leads that arrived in the period and are with marketing: nurture, missing context."""
    return (
        Lead.created_at >= start,
        Lead.created_at < end,
        Lead.status.in_([LeadStatus.NURTURE, LeadStatus.MISSING_CONTEXT]),
        or_(Lead.status == LeadStatus.MISSING_CONTEXT, Lead.qualified.is_(False)),
    )


# --- counting ---------------------------------------------------------------------------------


def _handoff_query(by: Sequence[str], *columns: Any) -> Any:
    query = select(*(GROUPS[name] for name in by), *columns).select_from(Handoff)
    if LEAD_GROUPS.intersection(by):
        query = query.join(Lead, Lead.id == Handoff.lead_id)
    return query.group_by(*(GROUPS[name] for name in by))


def tally(
    session: Any,
    start: datetime,
    end: datetime,
    by: Sequence[str] = (),
    *,
    parts: Collection[str] = PARTS,
) -> dict[tuple[Any, ...], Figures]:
    """The figures of the period, one `Figures` per group (keyed by the tuple of the `by`
    values; `()` without grouping). `parts` leaves out what a caller does not show."""
    unknown = set(by) - GROUPS.keys()
    if unknown:
        raise ValueError(f"cannot group by {sorted(unknown)}")
    groups: dict[tuple[Any, ...], Figures] = {}
    width = len(by)

    def figures(row: Sequence[Any]) -> Figures:
        return groups.setdefault(tuple(row[:width]), Figures())

    if HANDED_OFF in parts or SLA in parts:
        _assigned(session, start, end, by, parts, figures)
    if DECISIONS in parts:
        for row in session.execute(
            _handoff_query(by, Handoff.status, Handoff.reason_id, func.count())
            .where(*decided_in(start, end))
            .group_by(Handoff.status, Handoff.reason_id)
        ):
            status, reason_id, count = row[width:]
            if status == HandoffStatus.ACCEPTED:
                figures(row).accepted += count
            else:
                figures(row).rejected += count
                figures(row).rejections[reason_id or ""] += count
    if OPEN in parts:
        for where, sign in open_at(end):
            for row in session.execute(_handoff_query(by, func.count()).where(*where)):
                figures(row).open += sign * row[width]
    if LEADS in parts:
        if not LEAD_GROUPS.issuperset(by):
            raise ValueError("leads that never reached sales have no rep or reason")
        keys = [GROUPS[name] for name in by]
        for row in session.execute(
            select(*keys, Lead.status, func.count())
            .where(*arrived_in(start, end))
            .group_by(*keys, Lead.status)
        ):
            status, count = row[width:]
            if status == LeadStatus.NURTURE:
                figures(row).nurture += count
            else:
                figures(row).missing_context += count
    if not by:
        return {(): groups.get((), Figures())}
    # A group can add up to nothing (a handoff made after the period and still open counts
    # +1 and -1 in `open_at`): it has nothing in the period.
    return {key: counted for key, counted in groups.items() if counted != Figures()}


def _assigned(
    session: Any,
    start: datetime,
    end: datetime,
    by: Sequence[str],
    parts: Collection[str],
    figures: Any,
) -> None:
    """Handed off and the SLA in one pass over the handoffs made in the period."""
    width = len(by)
    if SLA not in parts:
        for row in session.execute(
            _handoff_query(by, func.count()).where(*handed_off_in(start, end))
        ):
            figures(row).handed_off += row[width]
        return
    query = _handoff_query(
        by,
        func.count().filter(FIRST),
        func.count().filter(Handoff.breached.is_(False)),
        func.count().filter(Handoff.breached.is_(True)),
    ).where(*assigned_in(start, end))
    for row in session.execute(query):
        first, met, breached = row[width:]
        target = figures(row)
        if HANDED_OFF in parts:
            target.handed_off += first
        target.sla_met += met
        target.sla_breached += breached
