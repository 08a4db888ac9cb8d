"""Disputes of rejections (bot/disputes.py decides, this stores and counts)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlmodel import Session

from store.models import Dispute, DisputeStatus, Handoff, HandoffStatus, Lead


def of_handoff(session: Session, handoff_id: int) -> Dispute | None:
    return session.scalars(select(Dispute).where(Dispute.handoff_id == handoff_id)).first()


def latest_rejection(session: Session, external_id: str) -> Handoff | None:
    """The lead's most recent rejected handoff (what `/handoff dispute LEAD` disputes)."""
    return session.scalars(
        select(Handoff)
        .join(Lead, Lead.id == Handoff.lead_id)
        .where(Lead.external_id == external_id, Handoff.status == HandoffStatus.REJECTED)
        .order_by(Handoff.decided_at.desc(), Handoff.id.desc())
        .limit(1)
    ).first()


def open_handoff_of(session: Session, lead_id: int) -> Handoff | None:
    return session.scalars(
        select(Handoff).where(Handoff.lead_id == lead_id, Handoff.status == HandoffStatus.OPEN)
    ).first()


def claim(
    session: Session, dispute_id: int, *, status: str, decided_by: str, decided_at: datetime
) -> bool:
    """Decide an open dispute; False when it was decided first (the first decision wins)."""
    result = session.execute(
        update(Dispute)
        .where(Dispute.id == dispute_id, Dispute.status == DisputeStatus.OPEN)
        .values(status=status, decided_by=decided_by, decided_at=decided_at)
    )
    return result.rowcount == 1


def counts(session: Session, start: datetime, end: datetime) -> tuple[int, int, int]:
    """(disputed, reopened, upheld) in [start, end): disputes by when they were raised,
    outcomes by when they were decided."""
    disputed = session.scalar(
        select(func.count()).select_from(Dispute).where(Dispute.at >= start, Dispute.at < end)
    )
    decided = dict(
        session.execute(
            select(Dispute.status, func.count())
            .where(Dispute.decided_at >= start, Dispute.decided_at < end)
            .group_by(Dispute.status)
        ).all()
    )
    return (
        disputed or 0,
        decided.get(DisputeStatus.REOPENED, 0),
        decided.get(DisputeStatus.UPHELD, 0),
    )
