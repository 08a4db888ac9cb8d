"""Where polling a CRM got to (one row a source)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session

from store.models import CrmCursor

_cursor = CrmCursor.__table__  # type: ignore[attr-defined]


def load_cursor(session: Session, source: str) -> CrmCursor | None:
    return session.get(CrmCursor, source)


def save_cursor(
    session: Session, source: str, cursor_ms: int, seen_ids: list[str], *, now: datetime
) -> None:
    """Move the cursor forward; never back (another process may have polled further)."""
    moved = session.execute(
        update(_cursor)
        .where(_cursor.c.source == source, _cursor.c.cursor_ms <= cursor_ms)
        .values(cursor_ms=cursor_ms, seen_ids=seen_ids, updated_at=now)
    )
    if moved.rowcount == 0 and session.get(CrmCursor, source) is None:
        row = CrmCursor(source=source, cursor_ms=cursor_ms, seen_ids=seen_ids, updated_at=now)
        session.add(row)
    session.flush()
