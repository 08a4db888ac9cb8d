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

from sqlalchemy import func, select

from bot.definition import Definition
from bot.judge import judge
from bot.leads import LeadIn, lead_from_stored
from store.db import Database
from store.models import Handoff, HandoffStatus, Lead

EXAMPLES = 5


@dataclass
class Backtest:
    leads: int = 0
    qualified: Counter[str] = field(default_factory=Counter)  # "current" / "candidate"
    hot: Counter[str] = field(default_factory=Counter)
    newly_qualified: list[str] = field(default_factory=list)
    no_longer_qualified: list[str] = field(default_factory=list)
    accepted: Counter[str] = field(default_factory=Counter)  # "kept" / "dropped"
    rejected: Counter[str] = field(default_factory=Counter)  # "kept" / "filtered"
    filtered_by_reason: Counter[str] = field(default_factory=Counter)
    dropped_accepted: list[str] = field(default_factory=list)


def _decisions(db: Database) -> dict[int, tuple[str, str | None]]:
    """The latest decision per lead: (status, reason id)."""
    latest = (
        select(Handoff.lead_id, func.max(Handoff.id).label("id"))
        .where(Handoff.status.in_([HandoffStatus.ACCEPTED, HandoffStatus.REJECTED]))
        .group_by(Handoff.lead_id)
        .subquery()
    )
    with db.session() as session:
        rows = session.execute(
            select(Handoff.lead_id, Handoff.status, Handoff.reason_id).join(
                latest, Handoff.id == latest.c.id
            )
        )
        return {lead_id: (status, reason) for lead_id, status, reason in rows}


def _stored_leads(db: Database, batch: int = 2000) -> Iterator[tuple[int, LeadIn, Lead]]:
    with db.session() as session:
        result = session.execute(select(Lead).execution_options(yield_per=batch))
        for (lead,) in result:
            yield (
                lead.id,
                lead_from_stored(
                    {  # type: ignore[misc]
                        "id": lead.external_id,
                        "email": lead.email,
                        "name": lead.name,
                        "title": lead.title,
                        "company": lead.company,
                        "owner": lead.owner,
                        "source": lead.source,
                        "campaign": lead.campaign,
                        "attributes": lead.attributes,
                        "signals": lead.signals,
                    }
                ),
                lead,
            )


def run_backtest(db: Database, current: Definition, candidate: Definition) -> Backtest:
    decisions = _decisions(db)
    report = Backtest()
    for lead_id, lead, row in _stored_leads(db):
        report.leads += 1
        at = row.updated_at
        before = judge(lead, current, at)
        after = judge(lead, candidate, at)
        report.qualified["current"] += before.qualified
        report.qualified["candidate"] += after.qualified
        report.hot["current"] += before.hot
        report.hot["candidate"] += after.hot
        label = f"{lead.id} ({lead.company or lead.email or '—'})"
        if after.qualified and not before.qualified:
            report.newly_qualified.append(label)
        elif before.qualified and not after.qualified:
            report.no_longer_qualified.append(label)
        status, reason = decisions.get(lead_id, (None, None))
        if status == HandoffStatus.ACCEPTED:
            kept = after.qualified
            report.accepted["kept" if kept else "dropped"] += 1
            if not kept:
                report.dropped_accepted.append(label)
        elif status == HandoffStatus.REJECTED:
            kept = after.qualified
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
    lines.append(
        "\nTo make it live: handoff definition propose FILE (both owners approve it in Slack)."
    )
    return "\n".join(lines)
