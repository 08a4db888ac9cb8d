"""Stored definitions and proposals: the queries governance needs.

The database referees every change of state with a conditional UPDATE (`... WHERE
state = 'proposed'`): only the caller whose update touched the row goes on, so double
clicks and two processes approving at once give one approval each and one activation.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlmodel import Session

from store.models import DefinitionState, DefinitionVersion, ProposalMessage

ROLES = ("marketing", "sales")
# Held only inside the activating transaction, never committed.
_ACTIVATING = "activating"


def active(session: Session) -> DefinitionVersion | None:
    return session.scalars(
        select(DefinitionVersion).where(DefinitionVersion.state == DefinitionState.ACTIVE)
    ).first()


def active_key(session: Session) -> tuple[int, int] | None:
    """(row id, version number) of the active version: the sweep's cheap indexed check."""
    row = session.execute(
        select(DefinitionVersion.id, DefinitionVersion.number).where(
            DefinitionVersion.state == DefinitionState.ACTIVE
        )
    ).first()
    return (row[0], row[1]) if row else None


def get(session: Session, row_id: int) -> DefinitionVersion | None:
    return session.get(DefinitionVersion, row_id)


def by_number(session: Session, number: int) -> DefinitionVersion | None:
    return session.scalars(
        select(DefinitionVersion).where(DefinitionVersion.number == number)
    ).first()


def open_proposals(session: Session) -> list[DefinitionVersion]:
    return list(
        session.scalars(
            select(DefinitionVersion)
            .where(DefinitionVersion.state == DefinitionState.PROPOSED)
            .order_by(DefinitionVersion.id)
        )
    )


def versions(session: Session) -> list[DefinitionVersion]:
    """Every version that has been active, oldest first."""
    return list(
        session.scalars(
            select(DefinitionVersion)
            .where(DefinitionVersion.number.is_not(None))  # type: ignore[union-attr]
            .order_by(DefinitionVersion.number)
        )
    )


def add(session: Session, row: DefinitionVersion) -> DefinitionVersion:
    session.add(row)
    session.flush()
    return row


def next_number(session: Session) -> int:
    return (session.scalar(select(func.max(DefinitionVersion.number))) or 0) + 1


def approve(session: Session, row_id: int, role: str, *, user_id: str, at: datetime) -> bool:
    """Record one owner's approval; False when the proposal is not open or `role`
    approved already."""
    by = getattr(DefinitionVersion, f"{role}_approved_by")
    result = session.execute(
        update(DefinitionVersion)
        .where(
            DefinitionVersion.id == row_id,
            DefinitionVersion.state == DefinitionState.PROPOSED,
            by.is_(None),
        )
        .values({f"{role}_approved_by": user_id, f"{role}_approved_at": at})
    )
    return result.rowcount == 1


def end(
    session: Session, row_id: int, state: str, *, by: str, at: datetime, note: str | None
) -> bool:
    """Close an open proposal (declined or withdrawn); False when it was not open."""
    result = session.execute(
        update(DefinitionVersion)
        .where(DefinitionVersion.id == row_id, DefinitionVersion.state == DefinitionState.PROPOSED)
        .values(state=state, ended_by=by, ended_at=at, end_note=note)
    )
    return result.rowcount == 1


def activate(
    session: Session, row_id: int, *, how: str, by: str, at: datetime, why: str | None = None
) -> int | None:
    """Make an open proposal the active version (the active one becomes superseded in the
    same transaction); its new number, or None when it was not open."""
    claimed = session.execute(
        update(DefinitionVersion)
        .where(DefinitionVersion.id == row_id, DefinitionVersion.state == DefinitionState.PROPOSED)
        .values(state=_ACTIVATING)
    )
    if claimed.rowcount != 1:
        return None
    session.execute(
        update(DefinitionVersion)
        .where(DefinitionVersion.state == DefinitionState.ACTIVE)
        .values(state=DefinitionState.SUPERSEDED)
    )
    number = next_number(session)
    session.execute(
        update(DefinitionVersion)
        .where(DefinitionVersion.id == row_id)
        .values(
            state=DefinitionState.ACTIVE,
            number=number,
            activated_how=how,
            activated_by=by,
            activated_at=at,
            why=why,
        )
    )
    return number


def save_message(session: Session, proposal_id: int, role: str, email: str) -> None:
    session.add(ProposalMessage(proposal_id=proposal_id, role=role, email=email))


def messages(session: Session, proposal_id: int) -> list[ProposalMessage]:
    return list(
        session.scalars(select(ProposalMessage).where(ProposalMessage.proposal_id == proposal_id))
    )


def message_posted(session: Session, proposal_id: int, role: str, channel: str, ts: str) -> None:
    session.execute(
        update(ProposalMessage)
        .where(ProposalMessage.proposal_id == proposal_id, ProposalMessage.role == role)
        .values(channel=channel, ts=ts)
    )
