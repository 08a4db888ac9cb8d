"""Opening a handoff: the row, its SLA timers, its Slack card, its audit line.

All in the caller's transaction, so a handoff never exists without the message
that announces it, and never the other way round.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.definition import Definition
from bot.sla import deadline, plan_timers
from store import audit, outbox
from store.models import Handoff, SlaTimer

CARD = "handoff_card"


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
) -> Handoff:
    handoff = Handoff(
        lead_id=lead_id,
        owner_email=owner_email,
        owner_user_id=owner_user_id,
        routed_by=routed_by,
        assigned_at=now,
        due_at=deadline(definition, now),
        previous_id=previous_id,
    )
    session.add(handoff)
    session.flush()
    assert handoff.id is not None
    for plan in plan_timers(definition, now):
        session.add(
            SlaTimer(
                handoff_id=handoff.id, kind=plan.kind, fraction=plan.fraction, due_at=plan.due_at
            )
        )
    outbox.enqueue(
        session,
        kind=CARD,
        payload={"handoff_id": handoff.id},
        dedupe_key=f"handoff:{handoff.id}:card",
        handoff_id=handoff.id,
        now=now,
    )
    audit.record(
        session,
        at=now,
        actor=actor,
        action="handed_off",
        lead_id=lead_id,
        handoff_id=handoff.id,
        owner=owner_email,
        why=routed_by,
        due_at=handoff.due_at.isoformat(),
    )
    return handoff
