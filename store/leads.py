"""Lead and verdict queries. Bulk paths use Core statements: import speed matters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Dialect
from sqlmodel import Session

from store.models import Handoff, Lead, LeadStatus, Verdict

_lead = Lead.__table__  # type: ignore[attr-defined]
_verdict = Verdict.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class KnownLead:
    id: int
    payload_hash: str
    status: str
    ready: bool
    recycled_at: datetime | None = None
    returns_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class _InsertPlan:
    """A compiled INSERT for rows with given keys: SQL, value order and bind processors."""

    sql: str
    values: Callable[[dict[str, Any]], tuple[Any, ...]]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]


_plans: dict[tuple[str, tuple[str, ...], str], _InsertPlan | None] = {}


def _insert_plan(table: Table, keys: tuple[str, ...], dialect: Dialect) -> _InsertPlan | None:
    """None where Core's own executemany runs instead: any dialect but SQLite (where
    the import is measured), or a column default that Core would fill in."""
    cache_key = (table.name, keys, f"{dialect.name}+{dialect.driver}")
    if cache_key in _plans:
        return _plans[cache_key]
    plan = None
    compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
    order = compiled.positiontup
    if dialect.name == "sqlite" and order is not None and set(order) == set(keys):
        processors = []
        for position, name in enumerate(order):
            column_type = table.c[name].type
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((position, process))
        values = itemgetter(*order) if len(order) > 1 else lambda row: (row[order[0]],)
        plan = _InsertPlan(compiled.string, values, tuple(processors))
    _plans[cache_key] = plan
    return plan


def _insert_many(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """`connection.execute(insert(table), rows)`: the same compiled SQL and the same
    bind processors, without Core's per-row parameter dict and processor lookups
    (about a fifth of an import's write time on SQLite)."""
    plan = _insert_plan(table, tuple(rows[0]), connection.dialect)
    if plan is None:
        connection.execute(insert(table), list(rows))
        return
    values_of, processors = plan.values, plan.processors
    params = []
    for row in rows:
        values = list(values_of(row))
        for position, process in processors:
            values[position] = process(values[position])
        params.append(tuple(values))
    connection.exec_driver_sql(plan.sql, params)


# Built once, IN list expanded per call: every POST /leads runs it first.
_KNOWN = select(
    _lead.c.external_id,
    _lead.c.id,
    _lead.c.payload_hash,
    _lead.c.status,
    _lead.c.ready,
    _lead.c.recycled_at,
    _lead.c.returns_after,
).where(_lead.c.external_id.in_(bindparam("ids", expanding=True)))


_MAX_ID = select(func.max(_lead.c.id))


def known_leads(session: Session, external_ids: Iterable[str]) -> dict[str, KnownLead]:
    ids = list(set(external_ids))
    found: dict[str, KnownLead] = {}
    connection = session.connection()
    for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        rows = connection.execute(_KNOWN, {"ids": ids[start : start + 500]})
        for external_id, id_, *known in rows:
            found[external_id] = KnownLead(id_, *known)
    return found


def insert_leads(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert many leads; returns their ids in the order given.

    One executemany, then the ids: on SQLite worked out from max(id) before and
    after, else read back by external id (on SQLite an ordered INSERT ... RETURNING
    runs a statement per row, several times slower).
    """
    if not rows:
        return []
    connection = session.connection()
    sequential = connection.dialect.name == "sqlite" and "id" not in rows[0]
    if sequential:
        before = session.scalar(_MAX_ID) or 0
    _insert_many(connection, _lead, rows)
    if sequential:
        # SQLite gives each new row max(id) + 1, in order, while this transaction
        # holds the write lock; when the ids moved by exactly len(rows), they are
        # before + 1 ... before + n (else, past the largest id, read them back).
        after = session.scalar(_MAX_ID) or 0
        if after - before == len(rows):
            return list(range(before + 1, after + 1))
    stored = known_leads(session, (row["external_id"] for row in rows))
    return [stored[row["external_id"]].id for row in rows]


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
        _insert_many(session.connection(), _verdict, rows)


def get_by_external_id(session: Session, external_id: str) -> Lead | None:
    return session.scalars(select(Lead).where(Lead.external_id == external_id)).first()


def handoff_rounds(session: Session, lead_ids: Iterable[int]) -> dict[int, int]:
    """How many times each lead was handed off anew (a reassignment or a reopened
    rejection continues a round: it has a `previous_id`)."""
    ids = list(set(lead_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Handoff.lead_id, func.count())
        .where(Handoff.lead_id.in_(ids), Handoff.previous_id.is_(None))
        .group_by(Handoff.lead_id)
    )
    return {lead_id: count for lead_id, count in rows}


def cooling_down(session: Session, now: datetime, *, limit: int = 50) -> list[Lead]:
    """Recycled leads still with marketing whose cooldown has not ended, soonest back first."""
    return list(
        session.scalars(
            select(Lead)
            .where(
                Lead.returns_after > now,
                Lead.status.in_([LeadStatus.NURTURE, LeadStatus.COOLING_DOWN]),
            )
            .order_by(Lead.returns_after, Lead.id)
            .limit(limit)
        )
    )
