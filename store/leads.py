"""Lead and verdict queries. Bulk paths use Core statements: import speed matters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from store.models import Lead, Verdict

_lead = Lead.__table__  # type: ignore[attr-defined]
_verdict = Verdict.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class KnownLead:
    id: int
    payload_hash: str
    status: str
    ready: bool


def known_leads(session: Session, external_ids: Iterable[str]) -> dict[str, KnownLead]:
    ids = list(set(external_ids))
    found: dict[str, KnownLead] = {}
    for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        rows = session.execute(
            select(
                _lead.c.external_id, _lead.c.id, _lead.c.payload_hash, _lead.c.status, _lead.c.ready
            ).where(_lead.c.external_id.in_(ids[start : start + 500]))
        )
        for external_id, id_, payload_hash, status, ready in rows:
            found[external_id] = KnownLead(id_, payload_hash, status, ready)
    return found


def insert_leads(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert many leads; returns their ids in the order given.

    One executemany, then the ids read back by external id: on SQLite an ordered
    INSERT ... RETURNING runs a statement per row, several times slower.
    """
    if not rows:
        return []
    session.connection().execute(insert(_lead), list(rows))
    external_ids = [row["external_id"] for row in rows]
    ids: dict[str, int] = {}
    for start in range(0, len(external_ids), 500):  # stay under SQLite's bound-parameter limit
        rows_found = session.execute(
            select(_lead.c.external_id, _lead.c.id).where(
                _lead.c.external_id.in_(external_ids[start : start + 500])
            )
        )
        ids.update((external_id, id_) for external_id, id_ in rows_found)
    return [ids[external_id] for external_id in external_ids]


def update_leads(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Update many leads by id (`b_id`); every row carries the same keys."""
    if not rows:
        return
    columns = [key for key in rows[0] if key != "b_id"]
    statement = (
        update(_lead)
        .where(_lead.c.id == bindparam("b_id"))
        .values({column: bindparam(column) for column in columns})
    )
    session.connection().execute(statement, list(rows))


def insert_verdicts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(insert(_verdict), list(rows))


def get_by_external_id(session: Session, external_id: str) -> Lead | None:
    return session.scalars(select(Lead).where(Lead.external_id == external_id)).first()
