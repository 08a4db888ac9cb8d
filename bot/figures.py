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
nurture            leads with marketing because they did not qualify (status  arrived
                   nurture, not qualified: a lead sales recycled counts as    (created_at);
                   rejected, not here)                                        status now
missing context    leads that qualified but lack a required field             arrived;
                                                                              status now
SLA met,           each rep's response clock, once it stops (a decision or a  clock stopped
SLA breached       reassignment); met when it stopped by the deadline. A      (decided_at)
                   lead reassigned after a breach counts the first rep's
                   breach, and the next rep's clock on its own
SLA compliance     met / (met + breached); none when no clock stopped         -

Grouped figures split the same counts: by the lead's `source` or `campaign`, by `rep`
(the owner of each handoff: a reassigned lead is handed off by the first rep and decided
by the next) or by rejection `reason`. The figures of leads that never reached sales
(nurture, missing context) have no rep or reason and fall in the `None` group there, so
every grouping adds up to the totals.

The statements filter on columns one of the handoff table's covering indexes holds,
(`assigned_at`, `previous_id`, ...) or (`status`, `decided_at`, ...), so a period costs
the same on a thousand handoffs as on a million; only the SLA figures read the rows
(`breached` is not in the decided index).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, null, or_, select

from store.models import Handoff, HandoffStatus, Lead, LeadStatus

GROUPS: dict[str, Any] = {
    "source": Lead.source,
    "campaign": Lead.campaign,
    "rep": Handoff.owner_email,
    "reason": Handoff.reason_id,
}
_LEAD_GROUPS = {"source", "campaign"}

HANDED_OFF, DECISIONS, SLA, OPEN, LEADS = "handed_off", "decisions", "sla", "open", "leads"
PARTS = (HANDED_OFF, DECISIONS, SLA, OPEN, LEADS)

DECIDED = (HandoffStatus.ACCEPTED, HandoffStatus.REJECTED)
CLOCK_STOPPED = (*DECIDED, HandoffStatus.REASSIGNED)  # every status with a decided_at


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


def handed_off_in(start: datetime, end: datetime) -> tuple[Any, ...]:
    """Leads handed to sales in the period (a reassignment is not a new handoff)."""
    return (
        Handoff.assigned_at >= start,
        Handoff.assigned_at < end,
        Handoff.previous_id.is_(None),
    )


def decided_in(
    start: datetime, end: datetime, statuses: Sequence[str] = DECIDED
) -> tuple[Any, ...]:
    """Handoffs whose clock stopped in the period with one of these outcomes."""
    return (
        Handoff.status.in_(statuses),
        Handoff.decided_at >= start,
        Handoff.decided_at < end,
    )


def open_at(end: datetime) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Handoffs waiting for a decision at `end`, as two filters to count and add: still
    open now, and decided since. Two index seeks; as one OR they would read every
    handoff made before `end`."""
    return (
        (Handoff.status == HandoffStatus.OPEN, Handoff.assigned_at < end),
        (
            Handoff.status.in_(CLOCK_STOPPED),
            Handoff.decided_at >= end,
            Handoff.assigned_at < end,
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
    if _LEAD_GROUPS.intersection(by):
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

    if HANDED_OFF in parts:
        for row in session.execute(
            _handoff_query(by, func.count()).where(*handed_off_in(start, end))
        ):
            figures(row).handed_off += row[width]
    if DECISIONS in parts or SLA in parts:
        _closed(session, start, end, by, parts, figures)
    if OPEN in parts:
        for where in open_at(end):
            for row in session.execute(_handoff_query(by, func.count()).where(*where)):
                figures(row).open += row[width]
    if LEADS in parts:
        keys = [GROUPS[n] if n in _LEAD_GROUPS else null() for n in by]
        lead_keys = [GROUPS[n] for n in by if n in _LEAD_GROUPS]
        for row in session.execute(
            select(*keys, Lead.status, func.count())
            .where(*arrived_in(start, end))
            .group_by(*lead_keys, Lead.status)
        ):
            status, count = row[width:]
            if status == LeadStatus.NURTURE:
                figures(row).nurture += count
            else:
                figures(row).missing_context += count
    if not by and not groups:
        groups[()] = Figures()
    return groups


def _closed(
    session: Any,
    start: datetime,
    end: datetime,
    by: Sequence[str],
    parts: Collection[str],
    figures: Any,
) -> None:
    """Decisions (by outcome and reason) and stopped clocks (met or breached) in one pass.
    Decisions alone read the decided index only; the SLA reads the rows for `breached`."""
    width = len(by)
    decisions, sla = DECISIONS in parts, SLA in parts
    outcome = [Handoff.status, Handoff.reason_id] if decisions else []
    columns = [*outcome, func.count()] if decisions else []
    if sla:
        columns += [
            func.count().filter(Handoff.breached.is_(False)),
            func.count().filter(Handoff.breached.is_(True)),
        ]
    query = _handoff_query(by, *columns).where(
        *decided_in(start, end, CLOCK_STOPPED if sla else DECIDED)
    )
    for row in session.execute(query.group_by(*outcome)):
        target = figures(row)
        if decisions:
            status, reason_id, count = row[width : width + 3]
            if status == HandoffStatus.ACCEPTED:
                target.accepted += count
            elif status == HandoffStatus.REJECTED:
                target.rejected += count
                target.rejections[reason_id or ""] += count
        if sla:
            met, breached = row[-2:]
            target.sla_met += met
            target.sla_breached += breached
