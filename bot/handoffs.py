"""Opening handoffs: the rows, their SLA timers, their Slack cards, their audit lines.

All in the caller's transaction, so a handoff never exists without the message
that announces it, and never the other way round. Written with Core statements
built once (values go as parameters, so the compiled statement is reused), one
per table whatever the number of handoffs: intake opens a batch's handoffs on
the path from a lead arriving to its DM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import insert
from sqlmodel import Session

from bot.definition import Definition
from bot.sla import deadline, plan_timers
from store import audit, outbox
from store.models import Handoff, HandoffStatus, SlaTimer, TimerStatus

CARD = "handoff_card"
HELD_CARD = "held_card"  # the manager's "assign this lead" message of a held lead
# A held handoff's route_key is "held:<rule key>": it counts toward no cap, runs no
# clock, and names the pool whose managers may assign it.
HELD_ROUTE = "held:"


def held_pool(route_key: str | None) -> str | None:
    """The pool rule's key of a held handoff ("routing[1]"); None for any other."""
    if route_key is None or not route_key.startswith(HELD_ROUTE):
        return None
    return route_key.removeprefix(HELD_ROUTE)


_handoff = Handoff.__table__  # type: ignore[attr-defined]
_timer = SlaTimer.__table__  # type: ignore[attr-defined]
# Unordered RETURNING keeps an executemany one statement on SQLite (ordered, it
# runs row by row); the ids are matched back by lead.
_INSERT_HANDOFFS = insert(_handoff).returning(_handoff.c.id, _handoff.c.lead_id)
_INSERT_TIMERS = insert(_timer)


@dataclass(frozen=True)
class NewHandoff:
    lead_id: int
    owner_email: str
    routed_by: str
    previous_id: int | None = None
    owner_user_id: str | None = None
    definition_version: int | None = None  # a reassignment keeps its lead's version
    route_key: str | None = None  # the pool rule the owner came from


def open_handoffs(
    session: Session,
    *,
    definition: Definition,
    new: Sequence[NewHandoff],
    now: datetime,
    actor: str = "handoff",
    held: bool = False,
) -> list[int]:
    """Open a handoff for each of these (distinct) leads; returns their ids in order.

    `held`: the owners are managers asked to assign leads no rep of the pool can take
    today: no clock runs, and they get a message to assign it instead of a card.
    """
    if not new:
        return []
    due_at = deadline(definition, now)
    connection = session.connection()  # Core statements: no ORM layer needed
    inserted = connection.execute(
        _INSERT_HANDOFFS,
        [
            {
                "lead_id": item.lead_id,
                "owner_email": item.owner_email,
                "owner_user_id": item.owner_user_id,
                "routed_by": item.routed_by,
                "assigned_at": now,
                "due_at": due_at,
                "status": HandoffStatus.OPEN,
                "commercial": [],
                "previous_id": item.previous_id,
                "definition_version": item.definition_version or definition.version,
                "route_key": item.route_key,
            }
            for item in new
        ],
    )
    id_by_lead = {lead_id: handoff_id for handoff_id, lead_id in inserted}
    assert len(id_by_lead) == len(new), "one handoff per lead in a call"
    ids = [id_by_lead[item.lead_id] for item in new]

    timers = [] if held else plan_timers(definition, now)
    if timers:
        connection.execute(
            _INSERT_TIMERS,
            [
                {
                    "handoff_id": handoff_id,
                    "kind": plan.kind,
                    "fraction": plan.fraction,
                    "due_at": plan.due_at,
                    "status": TimerStatus.PENDING,
                    "late": False,
                }
                for handoff_id in ids
                for plan in timers
            ],
        )
    outbox.enqueue_many(
        session,
        [
            {
                "kind": HELD_CARD if held else CARD,
                "payload": {"handoff_id": handoff_id},
                "dedupe_key": f"handoff:{handoff_id}:card",
                "handoff_id": handoff_id,
            }
            for handoff_id in ids
        ],
        now=now,
    )
    audit.record_many(
        session,
        [
            {
                "at": now,
                "actor": actor,
                "action": "held" if held else "handed_off",
                "lead_id": item.lead_id,
                "handoff_id": handoff_id,
                "detail": {
                    "owner": item.owner_email,
                    "why": item.routed_by,
                    "due_at": due_at.isoformat(),
                    "version": item.definition_version or definition.version,
                },
            }
            for item, handoff_id in zip(new, ids, strict=True)
        ],
    )
    return ids


def hold_handoffs(
    session: Session,
    *,
    definition: Definition,
    held: Sequence[NewHandoff],
    others: Sequence[Sequence[str]],
    now: datetime,
    actor: str = "handoff",
) -> list[int]:
    """Leads every rep of their pool is too full for today, each given to the pool's
    manager to assign (through the reassign flow). `route_key` of each: the pool's rule;
    `others`: the pool's other managers, asked too (any of them may assign)."""
    marked = [replace(item, route_key=f"{HELD_ROUTE}{item.route_key}") for item in held]
    ids = open_handoffs(session, definition=definition, new=marked, now=now, actor=actor, held=True)
    outbox.enqueue_many(
        session,
        [
            {
                "kind": HELD_CARD,
                "payload": {"handoff_id": handoff_id, "to": manager},
                "dedupe_key": f"handoff:{handoff_id}:held:{manager}",
                "handoff_id": handoff_id,
            }
            for handoff_id, managers in zip(ids, others, strict=True)
            for manager in managers
        ],
        now=now,
    )
    return ids
