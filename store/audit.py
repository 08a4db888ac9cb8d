"""The append-only audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from store.models import Audit

_audit = Audit.__table__  # type: ignore[attr-defined]
_INSERT = insert(_audit)


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    lead_id: int | None = None,
    handoff_id: int | None = None,
    **detail: Any,
) -> None:
    session.connection().execute(
        _INSERT,
        {
            "at": at,
            "actor": actor,
            "action": action,
            "lead_id": lead_id,
            "handoff_id": handoff_id,
            "detail": detail,
        },
    )


def record_many(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(_INSERT, rows)
