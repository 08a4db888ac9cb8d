"""The response clock: when a handoff is due and when to nudge and escalate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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


def time_left(definition: Definition, due_at: datetime, now: datetime) -> str:
    """The card's clock in business time: '2h 30m left', 'due now', 'overdue by 30m'.

    Slack cannot tick, so the card is re-rendered with this at each reminder and at
    the breach (bot/reminders.py), and whenever it is posted or updated.
    """
    calendar = definition.calendar()
    if now < due_at:
        left = calendar.elapsed(now, due_at)
        return "due now" if left < _MINUTE else f"{_short(left)} left"
    late = calendar.elapsed(due_at, now)
    return "due now" if late < _MINUTE else f"overdue by {_short(late)}"


_MINUTE = timedelta(minutes=1)


def _short(delta: timedelta) -> str:
    """'2h', '2h 30m', '45m' (to the nearest minute)."""
    hours, minutes = divmod(round(delta.total_seconds() / 60), 60)
    if not hours:
        return f"{minutes}m"
    return f"{hours}h {minutes}m" if minutes else f"{hours}h"
