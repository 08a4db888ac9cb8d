"""Opening a handoff: the row, its SLA timers, its Slack card, its audit line.

All in the caller's transaction, so a handoff never exists without the message
that announces it, and never the other way round. Written with Core inserts
(statement first, values as parameters, so SQLAlchemy reuses the compiled
statement): this runs once per handed-off lead inside intake's transaction,
which is on the path from a lead arriving to its DM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from bot.definition import Definition
from bot.sla import deadline, plan_timers
from store import audit, outbox
from store.models import Handoff, HandoffStatus, SlaTimer, TimerStatus

CARD = "handoff_card"

_handoff = Handoff.__table__  # type: ignore[attr-defined]
_timer = SlaTimer.__table__  # type: ignore[attr-defined]
_INSERT_HANDOFF = insert(_handoff).returning(_handoff.c.id)
_INSERT_TIMER = insert(_timer)


def open_handoff(
    session: Session,
    *,
    definition: Definition,
    lead_id: int,
    owner_email: str,
    routed_by: str,
    now: datetime,
    actor: str = "handoff",
    previous_id: int | None = None,
    owner_user_id: str | None = None,
) -> int:
    """Open the handoff; returns its id."""
    values: dict[str, Any] = {
        "lead_id": lead_id,
        "owner_email": owner_email,
        "owner_user_id": owner_user_id,
        "routed_by": routed_by,
        "assigned_at": now,
        "due_at": deadline(definition, now),
        "status": HandoffStatus.OPEN,
        "commercial": [],
        "previous_id": previous_id,
    }
    connection = session.connection()  # Core statements: no ORM layer needed
    handoff_id: int = connection.execute(_INSERT_HANDOFF, values).scalar_one()
    connection.execute(
        _INSERT_TIMER,
        [
            {
                "handoff_id": handoff_id,
                "kind": plan.kind,
                "fraction": plan.fraction,
                "due_at": plan.due_at,
                "status": TimerStatus.PENDING,
                "late": False,
            }
            for plan in plan_timers(definition, now)
        ],
    )
    outbox.enqueue(
        session,
        kind=CARD,
        payload={"handoff_id": handoff_id},
        dedupe_key=f"handoff:{handoff_id}:card",
        handoff_id=handoff_id,
        now=now,
    )
    audit.record_many(
        session,
        [
            {
                "at": now,
                "actor": actor,
                "action": "handed_off",
                "lead_id": lead_id,
                "handoff_id": handoff_id,
                "detail": {
                    "owner": owner_email,
                    "why": routed_by,
                    "due_at": values["due_at"].isoformat(),
                },
            }
        ],
    )
    return handoff_id
