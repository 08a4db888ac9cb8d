"""Round-robin positions and who is away."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlmodel import Session

from store.models import RepStatus, RoutingState

# Built once: both run in intake's transaction, on the way from a lead to its DM.
_POSITIONS = (
    select(RoutingState.key, RoutingState.position)
    .where(RoutingState.key.in_(bindparam("keys", expanding=True)))  # type: ignore[attr-defined]
    .with_for_update()
)
_AWAY = select(RepStatus.email).where(RepStatus.away)


def positions(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """Current positions, locked for the transaction where the database can."""
    rows = session.connection().execute(_POSITIONS, {"keys": list(keys)})
    return {key: position for key, position in rows}


def save_position(session: Session, key: str, position: int) -> None:
    state = session.get(RoutingState, key)
    if state is None:
        session.add(RoutingState(key=key, position=position))
    else:
        state.position = position
    session.flush()


def away_reps(session: Session) -> set[str]:
    return set(session.connection().execute(_AWAY).scalars())


def set_away(session: Session, email: str, away: bool, *, now: datetime) -> None:
    status = session.get(RepStatus, email)
    if status is None:
        session.add(RepStatus(email=email, away=away, updated_at=now))
    else:
        status.away = away
        status.updated_at = now
    session.flush()
