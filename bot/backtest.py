"""Backtest: what a changed definition would have done to the stored leads.

Each stored lead is judged under the active and the candidate definition, as of
the moment it was last updated (so intent windows mean what they meant then).
Leads sales already decided are the evidence: a good change keeps what sales
accepted and filters out what sales rejected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic_core import from_json
from sqlalchemy import Text, func, select, type_coerce
from sqlalchemy.orm import aliased

from bot.definition import Definition
from bot.judge import Judged, outcome
from bot.leads import lead_from_stored
from store.db import Database
from store.models import Handoff, HandoffStatus, Lead

EXAMPLES = 5


class Examples:
    """A count and the first few of what it counts: a list's face (len, slices,
    iteration over the examples) at the memory of `EXAMPLES` items on any history."""

    def __init__(self, keep: int = EXAMPLES) -> None:
        self.count = 0
        self.keep = keep
        self.items: list[str] = []

    def append(self, item: str) -> None:
        self.count += 1
        if len(self.items) < self.keep:
            self.items.append(item)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        return iter(self.items)

    def __getitem__(self, index: Any) -> Any:
        return self.items[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return self.count == len(other) and self.items == other[: self.keep]
        return isinstance(other, Examples) and (self.count, self.items) == (
            other.count,
            other.items,
        )

    def __repr__(self) -> str:
        return f"Examples({self.count}, {self.items!r})"


@dataclass
class Backtest:
    leads: int = 0
    qualified: Counter[str] = field(default_factory=Counter)  # "current" / "candidate"
    hot: Counter[str] = field(default_factory=Counter)
    newly_qualified: Examples = field(default_factory=Examples)
    no_longer_qualified: Examples = field(default_factory=Examples)
    accepted: Counter[str] = field(default_factory=Counter)  # "kept" / "dropped"
    rejected: Counter[str] = field(default_factory=Counter)  # "kept" / "filtered"
    filtered_by_reason: Counter[str] = field(default_factory=Counter)
    dropped_accepted: Examples = field(default_factory=Examples)


DECIDED = (HandoffStatus.ACCEPTED, HandoffStatus.REJECTED)
BATCH = 5000


class StoredView:
    """A stored lead as the judge reads it, rebuilt without validation: it was validated
    when it arrived. Rows this cannot read (a signal time in an older form) go through
    lead_from_stored instead, so both say the same; this is 3x cheaper per lead."""

    __slots__ = (
        "id",
        "email",
        "name",
        "title",
        "company",
        "owner",
        "source",
        "campaign",
        "attributes",
        "signals",
    )

    def __init__(self, row: Any) -> None:
        (
            self.id,
            self.email,
            self.name,
            self.title,
            self.company,
            self.owner,
            self.source,
            self.campaign,
        ) = row[:8]
        self.attributes = _decoded(row[8]) or {}
        self.signals = [
            {"name": signal["name"], "at": _at(signal["at"])} for signal in _decoded(row[9]) or ()
        ]


def _decoded(value: Any) -> Any:
    """SQLite hands JSON over as text (decoded here, in Rust); PostgreSQL already decoded."""
    return from_json(value) if isinstance(value, str | bytes) else value


def _at(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise ValueError("a signal time without a zone")
    return at.astimezone(UTC)


def _view(row: Any) -> Judged:
    try:
        return StoredView(row)
    except (ValueError, TypeError, KeyError):
        return lead_from_stored(
            {  # type: ignore[misc]
                "id": row[0],
                "email": row[1],
                "name": row[2],
                "title": row[3],
                "company": row[4],
                "owner": row[5],
                "source": row[6],
                "campaign": row[7],
                "attributes": _decoded(row[8]),
                "signals": _decoded(row[9]),
            }
        )


@dataclass(frozen=True, slots=True)
class StoredLead:
    """One stored lead as a backtest reads it, with its latest decision (if any)."""

    lead: Judged  # read .id, .company, .email and what the definition names
    updated_at: datetime
    status: str | None  # accepted / rejected / None: never decided
    reason_id: str | None


def _latest_decisions(start: datetime | None, end: datetime | None) -> Any:
    """The id of each lead's latest decision (decided in [start, end) when given)."""
    where = [Handoff.status.in_(DECIDED)]
    if start is not None:
        where.append(Handoff.decided_at >= start)
    if end is not None:
        where.append(Handoff.decided_at < end)
    return (
        select(Handoff.lead_id, func.max(Handoff.id).label("id"))
        .where(*where)
        .group_by(Handoff.lead_id)
        .subquery()
    )


def stored_leads(
    db: Database,
    *,
    decided_only: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
    batch: int = BATCH,
) -> Iterator[StoredLead]:
    """Every stored lead (or, with `decided_only`, every lead decided in the period) with
    its latest decision, streamed: one query read `batch` rows at a time (a server-side
    cursor on PostgreSQL), so a million leads cost the memory of one batch."""
    latest = _latest_decisions(start, end)
    decision = aliased(Handoff)
    query = (
        select(
            Lead.external_id,
            Lead.email,
            Lead.name,
            Lead.title,
            Lead.company,
            Lead.owner,
            Lead.source,
            Lead.campaign,
            type_coerce(Lead.attributes, Text),  # decoded by _decoded, faster
            type_coerce(Lead.signals, Text),
            Lead.updated_at,
            decision.status,
            decision.reason_id,
        )
        .select_from(Lead)
        .join(latest, latest.c.lead_id == Lead.id, isouter=not decided_only)
        .join(decision, decision.id == latest.c.id, isouter=not decided_only)
        .order_by(Lead.id)
        .execution_options(yield_per=batch)
    )
    with db.session() as session:
        # Core rows from the session's connection: the ORM's row handling costs a third.
        for row in session.connection().execute(query):
            yield StoredLead(_view(row), row[10], row[11], row[12])


def run_backtest(
    db: Database, current: Definition, candidate: Definition, *, batch: int = BATCH
) -> Backtest:
    report = Backtest()
    for stored in stored_leads(db, batch=batch):
        report.leads += 1
        lead, at, status, reason = stored.lead, stored.updated_at, stored.status, stored.reason_id
        qualified, hot = outcome(lead, current, at)
        kept, hot_after = outcome(lead, candidate, at)
        report.qualified["current"] += qualified
        report.qualified["candidate"] += kept
        report.hot["current"] += hot
        report.hot["candidate"] += hot_after
        label = f"{lead.id} ({lead.company or lead.email or '—'})"  # type: ignore[attr-defined]
        if kept and not qualified:
            report.newly_qualified.append(label)
        elif qualified and not kept:
            report.no_longer_qualified.append(label)
        if status == HandoffStatus.ACCEPTED:
            report.accepted["kept" if kept else "dropped"] += 1
            if not kept:
                report.dropped_accepted.append(label)
        elif status == HandoffStatus.REJECTED:
            report.rejected["kept" if kept else "filtered"] += 1
            if not kept:
                report.filtered_by_reason[reason or "—"] += 1
    return report


def _change(before: int, after: int) -> str:
    return f"{after - before:+d}"


def render(report: Backtest, current: Definition, candidate: Definition) -> str:
    lines = [
        f"Backtest of {candidate.source} (version {candidate.version}) against "
        f"{current.source} (version {current.version}) on {report.leads} stored leads",
        "",
        f"{'':<12}{'current':>10}{'candidate':>11}{'change':>8}",
    ]
    for name, counter in (("qualified", report.qualified), ("hot", report.hot)):
        lines.append(
            f"{name:<12}{counter['current']:>10}{counter['candidate']:>11}"
            f"{_change(counter['current'], counter['candidate']):>8}"
        )
    accepted = report.accepted["kept"] + report.accepted["dropped"]
    rejected = report.rejected["kept"] + report.rejected["filtered"]
    lines += [
        "",
        f"Leads sales accepted ({accepted}): {report.accepted['kept']} still qualify, "
        f"{report.accepted['dropped']} would no longer reach sales",
        f"Leads sales rejected ({rejected}): {report.rejected['filtered']} would be filtered out, "
        f"{report.rejected['kept']} would still reach sales",
    ]
    for reason_id, count in report.filtered_by_reason.most_common():
        reason = candidate.reason(reason_id) or current.reason(reason_id)
        lines.append(f"  filtered, rejected as {reason.label if reason else reason_id}: {count}")
    for title, items in (
        ("Accepted leads that would be lost", report.dropped_accepted),
        ("Newly qualifying", report.newly_qualified),
        ("No longer qualifying", report.no_longer_qualified),
    ):
        if items:
            shown = ", ".join(items[:EXAMPLES]) + (" …" if len(items) > EXAMPLES else "")
            lines.append(f"{title} ({len(items)}): {shown}")
    if candidate.version <= current.version:
        lines.append(
            f"\nNote: the candidate's version ({candidate.version}) is not above the "
            f"active one ({current.version}); bump `version` before it goes live."
        )
    return "\n".join(lines)
