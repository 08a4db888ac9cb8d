"""What the App Home tab and `/handoff` show: one person's queue, their team, the contract."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from bot import clock
from bot.access import Viewer, team_of
from bot.reminders import timing
from bot.services import Services
from store import snoozes as snooze_store
from store.models import Handoff, HandoffStatus, Lead

PAGE = 15


@dataclass(frozen=True)
class QueueItem:
    handoff_id: int
    company: str
    owner_user_id: str | None
    owner_email: str
    timing: str
    breached: bool
    snoozed_until: datetime | None = None  # in a snooze now (bot/snooze.py)
    snooze_why: str | None = None


def _items(services: Services, where: list, now: datetime, tz: str | None) -> list[QueueItem]:
    with services.db.session() as session:
        rows = session.execute(
            select(Handoff, Lead.company, Lead.external_id)
            .join(Lead, Lead.id == Handoff.lead_id)
            .where(Handoff.status == HandoffStatus.OPEN, *where)
            .order_by(Handoff.due_at)
        ).all()
        snoozed = snooze_store.current(session, (h.id for h, _, _ in rows), now)
    return [
        QueueItem(
            h.id,
            company or external_id,
            h.owner_user_id,
            h.owner_email,
            timing(services, h, now, tz),
            h.due_at <= now,
            snoozed[h.id].until if h.id in snoozed else None,
            snoozed[h.id].why if h.id in snoozed else None,
        )
        for h, company, external_id in rows
    ]


def my_queue(services: Services, user_id: str, *, now: datetime | None = None) -> list[QueueItem]:
    """Open handoffs owned by this user (their card may still be on its way)."""
    person = services.directory.by_user_id(user_id)
    mine = Handoff.owner_user_id == user_id
    if person is not None:
        mine = or_(mine, Handoff.owner_email == person.email)
    return _items(services, [mine], now or clock.now(), person.tz if person else None)


def team_queue(services: Services, user_id: str, *, now: datetime | None = None) -> list[QueueItem]:
    """Open handoffs of the reps this user manages (per the definition), breached first."""
    reps = team_of(services.definition, Viewer(services, user_id))
    if not reps:
        return []
    items = _items(services, [Handoff.owner_email.in_(reps)], now or clock.now(), None)
    return sorted(items, key=lambda item: not item.breached)
