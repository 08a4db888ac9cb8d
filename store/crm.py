"""Where polling a CRM got to (one row a source), and the lease that lets one process
poll it at a time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, update
from sqlmodel import Session

from store.models import CrmCursor

_cursor = CrmCursor.__table__  # type: ignore[attr-defined]


def load_cursor(session: Session, source: str) -> CrmCursor | None:
    return session.get(CrmCursor, source)


def create_cursor(session: Session, source: str, cursor_ms: int, *, now: datetime) -> None:
    """The first cursor of a source (IntegrityError if another process created it first)."""
    session.add(CrmCursor(source=source, cursor_ms=cursor_ms, seen_ids=[], updated_at=now))
    session.flush()


def claim_cursor(
    session: Session, source: str, owner: str, *, now: datetime, until: datetime
) -> CrmCursor | None:
    """Take the poll lease until `until`; the cursor, or None while another holds it.

    The condition inside the UPDATE is what makes this safe with several processes:
    a lease another one took first no longer matches.
    """
    free = or_(_cursor.c.lease_until.is_(None), _cursor.c.lease_until <= now)
    taken = session.execute(
        update(_cursor)
        .where(_cursor.c.source == source, free)
        .values(lease_owner=owner, lease_until=until)
    )
    if taken.rowcount != 1:
        return None
    return session.get(CrmCursor, source, populate_existing=True)


def save_cursor(
    session: Session,
    source: str,
    owner: str,
    cursor_ms: int,
    seen_ids: list[str],
    *,
    now: datetime,
    until: datetime,
) -> None:
    """Move the cursor forward, never back (a process whose lease expired mid-poll may
    save late), and extend this owner's lease."""
    session.execute(
        update(_cursor)
        .where(_cursor.c.source == source, _cursor.c.cursor_ms <= cursor_ms)
        .values(cursor_ms=cursor_ms, seen_ids=seen_ids, updated_at=now)
    )
    session.execute(
        update(_cursor)
        .where(_cursor.c.source == source, _cursor.c.lease_owner == owner)
        .values(lease_until=until)
    )


def release_cursor(session: Session, source: str, owner: str) -> None:
    session.execute(
        update(_cursor)
        .where(_cursor.c.source == source, _cursor.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )
