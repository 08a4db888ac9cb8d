"""One lead's story, in time order: verdicts, handoffs, decisions, SLA events, write-backs.

It is read from the append-only audit log plus the rows that carry their own
times (verdicts, timers, outbox deliveries), so it is what actually happened,
not a reconstruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.definition import Definition
from bot.explain import stored_verdict_lines
from store.db import Database
from store.models import (
    Audit,
    Handoff,
    Lead,
    LeadStatus,
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
    lines: tuple[str, ...] = field(default=(), compare=False)  # printed under the event


def _describe_audit(row: Audit) -> str:
    detail: dict[str, Any] = dict(row.detail or {})
    words = {
        "handed_off": lambda d: (
            f"to {d.get('owner')} ({d.get('why')}), due {d.get('due_at')}"
            + (f", under definition v{d['version']}" if d.get("version") else "")
        ),
        "accepted": lambda d: "confirmed: " + (", ".join(d.get("commercial") or []) or "nothing"),
        "rejected": lambda d: (
            f"reason {d.get('reason')} ({d.get('outcome')})"
            + (f": {d['note']}" if d.get("note") else "")
            + (f"; cooldown until {d['returns_after']}" if d.get("returns_after") else "")
        ),
        "reassigned": lambda d: f"from {d.get('from_owner')} to {d.get('to_owner')}",
        "rerouted": lambda d: f"to {d.get('owner')}: {d.get('why')}",
        "not_routed": lambda d: str(d.get("why")),
        "kept_with_marketing": lambda d: str(d.get("why")),
        "disputed": lambda d: f"to {d.get('manager')}: {d.get('note')}",
        "dispute_reopened": lambda d: f"as handoff {d.get('new_handoff_id')}, with a fresh clock",
        "dispute_upheld": lambda d: "the rejection stands",
        "snoozed": lambda d: f"until {d.get('until')} ({d.get('length')}): {d.get('why')}",
        "held": lambda d: f"for {d.get('owner')} to assign ({d.get('why')})",
        "reassign_stuck": lambda d: str(d.get("why")),
    }
    describe = words.get(row.action)
    text = describe(detail) if describe else ", ".join(f"{k}={v}" for k, v in detail.items())
    return f"by {row.actor}: {text}"


def _verdict_event(verdict: Verdict, definition: Definition | None) -> Event:
    """The verdict's outcome on one line, then every criterion and signal under it."""
    detail = verdict.detail or {}
    outcome = "qualified" if verdict.qualified else "not qualified"
    if not verdict.fit_passed:
        outcome += ": fit failed"
    mql = detail.get("mql")
    points = f"{verdict.score} of {mql} points" if mql is not None else f"{verdict.score} points"
    missing = f", missing {', '.join(verdict.missing)}" if verdict.missing else ""
    # Labels only from the definition this verdict was judged under: another one may
    # have changed what a criterion means.
    same = definition is not None and definition.fingerprint == verdict.definition_fingerprint
    return Event(
        verdict.judged_at,
        0,
        "judged",
        f"{outcome}, {points}{missing} (definition v{verdict.definition_version})",
        tuple(stored_verdict_lines(detail, definition if same else None)),
    )


def lead_story(
    db: Database, external_id: str, definition: Definition | None = None
) -> tuple[Lead, list[Event]] | None:
    """The lead and its events; `definition` lends its labels to the verdicts it judged."""
    with db.session() as session:
        lead = session.scalars(select(Lead).where(Lead.external_id == external_id)).first()
        if lead is None:
            return None
        events: list[Event] = [
            _verdict_event(verdict, definition)
            for verdict in session.scalars(select(Verdict).where(Verdict.lead_id == lead.id))
        ]
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
    lines += _recycle_lines(lead)
    for event in events:
        stamp = event.at.strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"{stamp}  {event.what:<14} {event.detail}")
        lines += [f"{'':<{len(stamp) + 17}}{line}" for line in event.lines]
    return "\n".join(lines)


def _recycle_lines(lead: Lead) -> list[str]:
    """When a recycled lead may come back, and on what (still with marketing only)."""
    if lead.recycled_at is None or lead.status not in (LeadStatus.NURTURE, LeadStatus.COOLING_DOWN):
        return []
    since = lead.recycled_at.strftime("%Y-%m-%d %H:%M UTC")
    when = (
        f"after {lead.returns_after.strftime('%Y-%m-%d %H:%M UTC')} (its cooldown)"
        if lead.returns_after is not None
        else "at once"
    )
    return [f"Recycled {since}: may return {when}, on intent that arrives after the recycle"]
