"""SLA timers: claimed in one conditional UPDATE so no two processes fire the same one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, select, update
from sqlmodel import Session

from store.models import SlaTimer, TimerStatus

_timer = SlaTimer.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FiredTimer:
    id: int
    handoff_id: int
    kind: str
    fraction: float
    due_at: datetime
    late: bool


def claim_due(
    session: Session, *, now: datetime, late_after: timedelta, limit: int = 1000
) -> list[FiredTimer]:
    """Mark up to `limit` due timers fired and return them (commit with their messages).

    The status test inside the UPDATE is what makes this safe with several
    processes: a row another sweep fired first no longer matches.
    """
    due_ids = (
        select(_timer.c.id)
        .where(_timer.c.status == TimerStatus.PENDING, _timer.c.due_at <= now)
        .order_by(_timer.c.due_at)
        .limit(limit)
        .scalar_subquery()
    )
    statement = (
        update(_timer)
        .where(and_(_timer.c.id.in_(due_ids), _timer.c.status == TimerStatus.PENDING))
        .values(
            status=TimerStatus.FIRED,
            fired_at=now,
            late=case((_timer.c.due_at < now - late_after, True), else_=False),
        )
        .returning(
            _timer.c.id,
            _timer.c.handoff_id,
            _timer.c.kind,
            _timer.c.fraction,
            _timer.c.due_at,
            _timer.c.late,
        )
    )
    rows = session.execute(statement).all()
    return [FiredTimer(*row) for row in rows]
