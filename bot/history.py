"""One lead's story, in time order: verdicts, handoffs, decisions, SLA events, write-backs.

It is read from the append-only audit log plus the rows that carry their own
times (verdicts, timers, outbox deliveries), so it is what actually happened,
not a reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from store.db import Database
from store.models import (
    Audit,
    Handoff,
    Lead,
    Outbox,
    OutboxStatus,
    SlaTimer,
    TimerStatus,
    Verdict,
)


@dataclass(frozen=True, order=True)
class Event:
    at: datetime
    order: int
    what: str
    detail: str


def _describe_audit(row: Audit) -> str:
    detail: dict[str, Any] = dict(row.detail or {})
    words = {
        "handed_off": lambda d: f"to {d.get('owner')} ({d.get('why')}), due {d.get('due_at')}",
        "accepted": lambda d: "confirmed: " + (", ".join(d.get("commercial") or []) or "nothing"),
        "rejected": lambda d: (
            f"reason {d.get('reason')} ({d.get('outcome')})"
            + (f": {d['note']}" if d.get("note") else "")
        ),
        "reassigned": lambda d: f"from {d.get('from_owner')} to {d.get('to_owner')}",
        "rerouted": lambda d: f"to {d.get('owner')}: {d.get('why')}",
        "not_routed": lambda d: str(d.get("why")),
    }
    describe = words.get(row.action)
    text = describe(detail) if describe else ", ".join(f"{k}={v}" for k, v in detail.items())
    return f"by {row.actor}: {text}"


def lead_story(db: Database, external_id: str) -> tuple[Lead, list[Event]] | None:
    with db.session() as session:
        lead = session.scalars(select(Lead).where(Lead.external_id == external_id)).first()
        if lead is None:
            return None
        events: list[Event] = []
        for verdict in session.scalars(select(Verdict).where(Verdict.lead_id == lead.id)):
            outcome = "qualified" if verdict.qualified else "not qualified"
            missing = f", missing {', '.join(verdict.missing)}" if verdict.missing else ""
            events.append(
                Event(
                    verdict.judged_at,
                    0,
                    "judged",
                    f"{outcome}, {verdict.score} points{missing} "
                    f"(definition v{verdict.definition_version})",
                )
            )
        for row in session.scalars(select(Audit).where(Audit.lead_id == lead.id)):
            events.append(Event(row.at, 1, row.action.replace("_", " "), _describe_audit(row)))
        handoff_ids = list(session.scalars(select(Handoff.id).where(Handoff.lead_id == lead.id)))
        for timer in session.scalars(
            select(SlaTimer).where(
                SlaTimer.handoff_id.in_(handoff_ids), SlaTimer.status == TimerStatus.FIRED
            )
        ):
            late = " (sent late, after downtime)" if timer.late else ""
            events.append(
                Event(
                    timer.fired_at or timer.due_at,
                    2,
                    f"sla {timer.kind}",
                    f"at {timer.fraction:.0%} of the window{late}",
                )
            )
        for item in session.scalars(select(Outbox).where(Outbox.handoff_id.in_(handoff_ids))):
            when = item.sent_at or item.created_at
            tries = f" after {item.attempts} attempt(s)" if item.attempts else ""
            if item.status == OutboxStatus.FAILED:  # given up on: say so, and why
                detail = f"NOT DELIVERED{tries}: {item.last_error or 'no reason recorded'}"
            else:
                error = f"; last error: {item.last_error}" if item.last_error else ""
                detail = f"{item.status}{tries}{error}"
            events.append(Event(when, 3, item.kind.replace("_", " "), detail))
    return lead, sorted(events)


def render_story(lead: Lead, events: list[Event]) -> str:
    lines = [
        f"Lead {lead.external_id}: {lead.company or '—'} <{lead.email or 'no email'}>, "
        f"status {lead.status}, score {lead.score}"
    ]
    for event in events:
        stamp = event.at.strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"{stamp}  {event.what:<14} {event.detail}")
    return "\n".join(lines)
