"""Round-robin positions and who is away."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from store.models import RepStatus, RoutingState


def positions(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """Current positions, locked for the transaction where the database can."""
    rows = session.execute(
        select(RoutingState.key, RoutingState.position)
        .where(RoutingState.key.in_(list(keys)))
        .with_for_update()
    )
    return {key: position for key, position in rows}


def save_position(session: Session, key: str, position: int) -> None:
    state = session.get(RoutingState, key)
    if state is None:
        session.add(RoutingState(key=key, position=position))
    else:
        state.position = position
    session.flush()


def away_reps(session: Session) -> set[str]:
    return set(session.scalars(select(RepStatus.email).where(RepStatus.away)))


def set_away(session: Session, email: str, away: bool, *, now: datetime) -> None:
    status = session.get(RepStatus, email)
    if status is None:
        session.add(RepStatus(email=email, away=away, updated_at=now))
    else:
        status.away = away
        status.updated_at = now
    session.flush()
