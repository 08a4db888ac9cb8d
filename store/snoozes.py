"""Snoozes of handoffs' response clocks (bot/snooze.py decides, this stores)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from store.models import Snooze


def current(session: Session, handoff_ids: Iterable[int], now: datetime) -> dict[int, Snooze]:
    """The snooze each handoff is in at `now` (handoffs not snoozed are left out)."""
    ids = list(set(handoff_ids))
    if not ids:
        return {}
    rows = session.scalars(
        select(Snooze).where(Snooze.handoff_id.in_(ids), Snooze.until > now).order_by(Snooze.id)
    )
    return {row.handoff_id: row for row in rows}
