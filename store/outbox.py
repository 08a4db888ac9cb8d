"""The outbox: durable work for the outside world, claimed row by row.

A row is written in the same transaction as the change that causes it, so a
crash can lose neither. Workers claim due rows with a lease by a conditional
UPDATE, so two processes sharing a database never work on the same row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from store.models import Outbox, OutboxStatus

_outbox = Outbox.__table__  # type: ignore[attr-defined]


def _row(
    kind: str,
    payload: dict[str, Any],
    dedupe_key: str,
    handoff_id: int | None,
    due: datetime,
    now: datetime,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "payload": payload,
        "dedupe_key": dedupe_key,
        "handoff_id": handoff_id,
        "status": OutboxStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": due,
        "result": {},
        "created_at": now,
    }


def _insert_unless_queued(session: Session) -> Any:
    """INSERT that skips a row whose dedupe key is already queued."""
    dialect = session.get_bind().dialect.name
    insert_for = sqlite_insert if dialect == "sqlite" else pg_insert
    return insert_for(_outbox).on_conflict_do_nothing()


def enqueue(
    session: Session,
    *,
    kind: str,
    payload: dict[str, Any],
    dedupe_key: str,
    now: datetime,
    handoff_id: int | None = None,
    not_before: datetime | None = None,
) -> bool:
    """Add work unless work with the same key exists; True when added."""
    row = _row(kind, payload, dedupe_key, handoff_id, not_before or now, now)
    return session.execute(_insert_unless_queued(session).values(row)).rowcount == 1


def enqueue_many(session: Session, items: list[dict[str, Any]], *, now: datetime) -> None:
    """Add many rows (kind, payload, dedupe_key, handoff_id) in one executemany,
    skipping keys that already exist."""
    if items:
        rows = [_row(**item, due=now, now=now) for item in items]
        session.execute(_insert_unless_queued(session), rows)


def claim_due(
    session: Session,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    kinds: tuple[str, ...] | None = None,
) -> list[Outbox]:
    """Lease up to `limit` due rows to the caller (commit right after)."""
    due = and_(
        _outbox.c.status == OutboxStatus.PENDING,
        _outbox.c.next_attempt_at <= now,
        or_(_outbox.c.lease_until.is_(None), _outbox.c.lease_until <= now),
    )
    if kinds:
        due = and_(due, _outbox.c.kind.in_(kinds))
    candidate_ids = list(
        session.scalars(
            select(_outbox.c.id)
            .where(due)
            .order_by(_outbox.c.next_attempt_at, _outbox.c.id)
            .limit(limit)
        )
    )
    if not candidate_ids:
        return []
    claimed = session.execute(
        update(_outbox)
        .where(_outbox.c.id.in_(candidate_ids), due)
        .values(lease_until=now + lease, attempts=_outbox.c.attempts + 1)
        .returning(_outbox.c.id)
    )
    ids = [row[0] for row in claimed]
    if not ids:
        return []
    return list(session.scalars(select(Outbox).where(Outbox.id.in_(ids)).order_by(Outbox.id)))


def mark_sent(session: Session, item_id: int, *, now: datetime, result: dict[str, Any]) -> None:
    session.execute(
        update(_outbox)
        .where(_outbox.c.id == item_id)
        .values(
            status=OutboxStatus.SENT, sent_at=now, lease_until=None, result=result, last_error=None
        )
    )


def mark_retry(session: Session, item_id: int, *, at: datetime, error: str) -> None:
    session.execute(
        update(_outbox)
        .where(_outbox.c.id == item_id)
        .values(next_attempt_at=at, lease_until=None, last_error=error[:2000])
    )


def mark_failed(session: Session, item_id: int, *, error: str) -> None:
    session.execute(
        update(_outbox)
        .where(_outbox.c.id == item_id)
        .values(status=OutboxStatus.FAILED, lease_until=None, last_error=error[:2000])
    )


def next_due_at(session: Session) -> datetime | None:
    return session.scalars(
        select(Outbox.next_attempt_at)
        .where(Outbox.status == OutboxStatus.PENDING)
        .order_by(Outbox.next_attempt_at)
        .limit(1)
    ).first()


def pending_count(session: Session) -> int:
    from sqlalchemy import func

    return (
        session.scalar(
            select(func.count())
            .select_from(_outbox)
            .where(_outbox.c.status == OutboxStatus.PENDING)
        )
        or 0
    )
