"""Backtest: what a changed definition would have done to the stored leads.

Each stored lead is judged under the active and the candidate definition, as of
the moment it was last updated (so intent windows mean what they meant then).
Leads sales already decided are the evidence: a good change keeps what sales
accepted and filters out what sales rejected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic_core import from_json
from sqlalchemy import Text, null, select, type_coerce
from sqlalchemy.orm import aliased

from bot.definition import Definition
from bot.judge import Judged, fit_passes, intent_score, same_intent
from bot.leads import TOP_LEVEL_FIELDS, lead_from_stored
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
            attributes,
            signals,
        ) = row[:10]
        if type(attributes) is str:
            attributes = from_json(attributes)
        if type(signals) is str:
            signals = from_json(signals)
        self.attributes = attributes or {}
        self.signals = [
            {"name": signal["name"], "at": _at(signal["at"])} for signal in signals or ()
        ]


def _at(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    if at.tzinfo is UTC:  # how Handoff stores them ("...Z"); else one conversion
        return at
    if at.tzinfo is None:
        raise ValueError("a signal time without a zone")
    return at.astimezone(UTC)


def _decoded(value: Any) -> Any:
    """SQLite hands JSON over as text (decoded here, in Rust); PostgreSQL already decoded."""
    return from_json(value) if isinstance(value, str | bytes) else value


def _when(value: Any) -> datetime:
    """A stored time: SQLite's text (UTC, without a zone), or PostgreSQL's datetime."""
    if type(value) is str:
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:  # a time written with its zone
            value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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


# One stored lead as a backtest reads it: (lead, updated_at, status of its latest decision
# (accepted / rejected / None: never decided), reason id). A plain tuple: there are a million.
StoredLead = tuple[Judged, datetime, str | None, str | None]
LABEL_FIELDS = ("email", "company")  # what a backtest names a lead by, with its id


def _latest_decision(start: datetime | None, end: datetime | None) -> Any:
    """The id of the lead's latest decision (decided in [start, end) when given), looked
    up per lead in the handoff index: nothing is gathered or sorted on the side, so the
    database's memory does not grow with the history either."""
    where = [Handoff.lead_id == Lead.id, Handoff.status.in_(DECIDED)]
    if start is not None:
        where.append(Handoff.decided_at >= start)
    if end is not None:
        where.append(Handoff.decided_at < end)
    return (
        select(Handoff.id)
        .where(*where)
        .order_by(Handoff.id.desc())
        .limit(1)
        .correlate(Lead)
        .scalar_subquery()
    )


def stored_leads(
    db: Database,
    *,
    decided_only: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
    fields: Iterable[str] | None = None,
    batch: int = BATCH,
) -> Iterator[StoredLead]:
    """Every stored lead (or, with `decided_only`, every lead decided in the period) with
    its latest decision, streamed: one query read `batch` rows at a time (a server-side
    cursor on PostgreSQL), so a million leads cost the memory of one batch.

    Args:
        fields: the top-level fields to read besides id, email and company (None: all);
            the others are None, which is all a definition that names none of them needs.
    """
    wanted = set(TOP_LEVEL_FIELDS if fields is None else (*fields, *LABEL_FIELDS))
    decision = aliased(Handoff)
    query = (
        select(
            Lead.external_id,
            *(
                getattr(Lead, name) if name in wanted else null()
                for name in ("email", "name", "title", "company", "owner", "source", "campaign")
            ),
            type_coerce(Lead.attributes, Text),  # decoded by _decoded, faster
            type_coerce(Lead.signals, Text),
            type_coerce(Lead.updated_at, Text),  # read by _when: SQLAlchemy's is 10x slower
            decision.status,
            decision.reason_id,
        )
        .select_from(Lead)
        .join(decision, decision.id == _latest_decision(start, end), isouter=not decided_only)
        .order_by(Lead.id)
        .execution_options(yield_per=batch)
    )
    with db.session() as session:
        # Core rows from the session's connection: the ORM's row handling costs a third.
        for row in session.connection().execute(query):
            yield _view(row), _when(row[10]), row[11], row[12]


def fields_named(*definitions: Definition) -> set[str]:
    """The top-level lead fields the definitions read (fit criteria, required fields)."""
    named = {
        name
        for definition in definitions
        for name in (*(c.condition.field for c in definition.fit), *definition.handoff.required)
    }
    return named & TOP_LEVEL_FIELDS


def run_backtest(
    db: Database, current: Definition, candidate: Definition, *, batch: int = BATCH
) -> Backtest:
    report = Backtest()
    # The loop runs once per stored lead: plain locals, counted into the report at the end.
    shared = same_intent(current, candidate)  # score once when both score alike
    now_plan, new_plan = current.judge_plan, candidate.judge_plan
    leads = qualified_now = qualified_new = hot_now = hot_new = 0
    kept_accepts = dropped_accepts = kept_rejects = filtered_rejects = 0
    filtered = report.filtered_by_reason
    for lead, at, status, reason_id in stored_leads(
        db, fields=fields_named(current, candidate), batch=batch
    ):
        leads += 1
        fit_now = fit_passes(lead, current)
        fit_new = fit_passes(lead, candidate)
        score_now = score_new = 0
        if shared:
            if fit_now or fit_new:
                score_now = score_new = intent_score(lead, current, at)
        else:
            score_now = intent_score(lead, current, at) if fit_now else 0
            score_new = intent_score(lead, candidate, at) if fit_new else 0
        qualified = fit_now and score_now >= now_plan.mql
        kept = fit_new and score_new >= new_plan.mql
        qualified_now += qualified
        qualified_new += kept
        hot_now += qualified and score_now >= now_plan.hot_at
        hot_new += kept and score_new >= new_plan.hot_at
        if kept != qualified:
            label = f"{lead.id} ({lead.company or lead.email or '—'})"  # type: ignore[attr-defined]
            (report.newly_qualified if kept else report.no_longer_qualified).append(label)
        if status == HandoffStatus.ACCEPTED:
            if kept:
                kept_accepts += 1
            else:
                dropped_accepts += 1
                report.dropped_accepted.append(
                    f"{lead.id} ({lead.company or lead.email or '—'})"  # type: ignore[attr-defined]
                )
        elif status == HandoffStatus.REJECTED:
            if kept:
                kept_rejects += 1
            else:
                filtered_rejects += 1
                filtered[reason_id or "—"] += 1
    report.leads = leads
    report.qualified.update(current=qualified_now, candidate=qualified_new)
    report.hot.update(current=hot_now, candidate=hot_new)
    report.accepted.update(kept=kept_accepts, dropped=dropped_accepts)
    report.rejected.update(kept=kept_rejects, filtered=filtered_rejects)
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
    lines.append(
        "\nTo make it live: handoff definition propose FILE (both owners approve it in Slack)."
    )
    return "\n".join(lines)
