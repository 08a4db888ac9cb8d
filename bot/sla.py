"""The response clock: when a handoff is due and when to nudge and escalate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session

from bot.definition import Definition
from store.models import Handoff, SlaTimer, TimerStatus

REASSIGN = "reassign"  # the timer of `handoff.sla.reassign_at`


@dataclass(frozen=True)
class TimerPlan:
    kind: str  # remind | escalate | reassign
    fraction: float
    due_at: datetime


def deadline(definition: Definition, assigned_at: datetime) -> datetime:
    sla = definition.handoff.sla
    return definition.calendar().add(assigned_at, sla.respond_within)


def plan_timers(definition: Definition, assigned_at: datetime) -> list[TimerPlan]:
    """Each reminder and the escalation, in business time from the assignment."""
    sla = definition.handoff.sla
    calendar = definition.calendar()
    plans = [
        TimerPlan("remind", fraction, calendar.point(assigned_at, sla.respond_within, fraction))
        for fraction in sla.remind_at
    ]
    plans.append(
        TimerPlan(
            "escalate",
            sla.escalate_at,
            calendar.point(assigned_at, sla.respond_within, sla.escalate_at),
        )
    )
    plans += _reassign_plan(definition, assigned_at)
    return plans


def _reassign_plan(definition: Definition, assigned_at: datetime) -> list[TimerPlan]:
    """The auto-reassign timer (`handoff.sla.reassign_at`), when the definition has one."""
    sla = definition.handoff.sla
    if sla.reassign_at is None:
        return []
    calendar = definition.calendar()
    due = calendar.point(assigned_at, sla.respond_within, sla.reassign_at)
    return [TimerPlan(REASSIGN, sla.reassign_at, due)]


def close_clock(
    session: Session, definition: Definition, handoff: Handoff, *, at: datetime
) -> None:
    """Stop the clock on a handoff that was decided or reassigned at `at`.

    Cancels its pending reminders and escalation and records the SLA figures
    the digest and report read: time to decision in business and wall time,
    breached or not, and how late.
    """
    session.execute(
        update(SlaTimer)
        .where(SlaTimer.handoff_id == handoff.id, SlaTimer.status == TimerStatus.PENDING)
        .values(status=TimerStatus.CANCELLED)
    )
    calendar = definition.calendar()
    handoff.business_seconds = int(calendar.elapsed(handoff.assigned_at, at).total_seconds())
    handoff.wall_seconds = int((at - handoff.assigned_at).total_seconds())
    handoff.breached = at > handoff.due_at
    handoff.late_seconds = (
        int(calendar.elapsed(handoff.due_at, at).total_seconds()) if handoff.breached else 0
    )
    session.add(handoff)
