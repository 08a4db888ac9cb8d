"""The outbox: durable work for the outside world, claimed in batches.

A row is written in the same transaction as the change that causes it, so a
crash can lose neither. Workers claim due rows with a lease by a conditional
UPDATE, so two processes sharing a database never work on the same row.

`attempts` counts real sends: a claim adds one (the send may reach the outside
world before a crash), and a claim that ends without sending (`mark_later`,
`release`) takes it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from store.models import Handoff, Lead, Outbox, OutboxStatus

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


_INSERT_UNLESS_QUEUED = {
    "sqlite": sqlite_insert(_outbox).on_conflict_do_nothing(),
    "postgresql": pg_insert(_outbox).on_conflict_do_nothing(),
}


def _insert_unless_queued(session: Session) -> Any:
    """INSERT that skips a row whose dedupe key is already queued (values go as
    parameters, so the compiled statement is reused)."""
    return _INSERT_UNLESS_QUEUED[session.get_bind().dialect.name]


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
    return session.connection().execute(_insert_unless_queued(session), row).rowcount == 1


def enqueue_many(session: Session, items: list[dict[str, Any]], *, now: datetime) -> None:
    """Add many rows (kind, payload, dedupe_key, handoff_id) in one executemany,
    skipping keys that already exist."""
    if items:
        rows = [_row(**item, due=now, now=now) for item in items]
        session.connection().execute(_insert_unless_queued(session), rows)


# The worker's statements are built once, with bind parameters: SQLAlchemy then
# reuses their compiled form instead of recomputing a cache key on every pass.
_NOW = bindparam("now", type_=_outbox.c.next_attempt_at.type)
_NOT_LEASED = or_(_outbox.c.lease_until.is_(None), _outbox.c.lease_until <= _NOW)
_DUE = and_(
    _outbox.c.status == OutboxStatus.PENDING, _outbox.c.next_attempt_at <= _NOW, _NOT_LEASED
)
_OF_KINDS = _outbox.c.kind.in_(bindparam("kinds", expanding=True))
_NOT_OF_KINDS = _outbox.c.kind.not_in(bindparam("skip_kinds", expanding=True))


def _lease(*conditions: Any) -> Any:
    """UPDATE the rows matching `conditions` to a lease (one more attempt), RETURNING them."""
    return (
        update(Outbox)
        .where(*conditions)
        .values(
            lease_until=bindparam("lease_until", type_=_outbox.c.lease_until.type),
            attempts=Outbox.attempts + 1,
        )
        .returning(Outbox)
        .execution_options(synchronize_session=False)
    )


def _due(with_kinds: bool, skip_kinds: bool) -> Any:
    return and_(
        _DUE, *([_OF_KINDS] if with_kinds else []), *([_NOT_OF_KINDS] if skip_kinds else [])
    )


def _claim_statement(dialect: str, with_kinds: bool, skip_kinds: bool) -> Any:
    due = _due(with_kinds, skip_kinds)
    candidates = (
        select(_outbox.c.id)
        .where(due)
        .order_by(_outbox.c.next_attempt_at, _outbox.c.id)
        .limit(bindparam("limit"))
    )
    if dialect == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    return _lease(Outbox.id.in_(candidates), due)  # type: ignore[union-attr]


_CLAIM = {
    (dialect, with_kinds, skip_kinds): _claim_statement(dialect, with_kinds, skip_kinds)
    for dialect in ("sqlite", "postgresql")
    for with_kinds in (False, True)
    for skip_kinds in (False, True)
}


def claim_due(
    session: Session,
    *,
    now: datetime,
    lease: timedelta,
    limit: int,
    kinds: tuple[str, ...] | None = None,
    skip_kinds: tuple[str, ...] = (),
) -> list[Outbox]:
    """Lease up to `limit` due rows (of `kinds`, not of `skip_kinds`) to the caller
    (commit right after).

    One UPDATE ... WHERE id IN (due ids) RETURNING. The due condition is repeated
    on the UPDATE, so a row another worker leased in between is not taken twice;
    on PostgreSQL the inner SELECT skips rows locked by a concurrent claim instead
    of queueing behind it.
    """
    statement = _CLAIM[(session.get_bind().dialect.name, bool(kinds), bool(skip_kinds))]
    params: dict[str, Any] = {"now": now, "lease_until": now + lease, "limit": limit}
    if kinds:
        params["kinds"] = list(kinds)
    if skip_kinds:
        params["skip_kinds"] = list(skip_kinds)
    claimed = session.scalars(statement, params)
    return sorted(claimed, key=lambda item: (item.next_attempt_at, item.id))


_CLAIM_NEW = _lease(
    _outbox.c.handoff_id.in_(bindparam("handoff_ids", expanding=True)),
    _outbox.c.kind == bindparam("b_kind"),
    _DUE,
)


def claim_for_handoffs(
    session: Session, handoff_ids: list[int], *, kind: str, now: datetime, lease: timedelta
) -> list[Outbox]:
    """Lease the due `kind` rows of these handoffs to the caller, in its transaction
    (the one that queued them, so no other worker can have seen them yet)."""
    if not handoff_ids:
        return []
    params = {"handoff_ids": handoff_ids, "b_kind": kind, "now": now, "lease_until": now + lease}
    return list(session.scalars(_CLAIM_NEW, params))


_BY_ID = _outbox.c.id == bindparam("b_id")
_MARK_SENT = (
    update(_outbox)
    .where(_BY_ID)
    .values(
        status=OutboxStatus.SENT,
        sent_at=bindparam("b_now", type_=_outbox.c.sent_at.type),
        lease_until=None,
        result=bindparam("b_result", type_=_outbox.c.result.type),
        last_error=None,
    )
)
_MARK_RETRY = (
    update(_outbox)
    .where(_BY_ID)
    .values(
        next_attempt_at=bindparam("b_at", type_=_outbox.c.next_attempt_at.type),
        lease_until=None,
        last_error=bindparam("b_error"),
    )
)
# Retry(after): the claim sent nothing, so it was no attempt.
_MARK_LATER = _MARK_RETRY.values(attempts=_outbox.c.attempts - 1)
_MARK_FAILED = (
    update(_outbox)
    .where(_BY_ID)
    .values(status=OutboxStatus.FAILED, lease_until=None, last_error=bindparam("b_error"))
)
_RELEASE = update(_outbox).where(_BY_ID).values(lease_until=None, attempts=_outbox.c.attempts - 1)
_RENEW = (
    update(_outbox)
    .where(
        _BY_ID,
        _outbox.c.status == OutboxStatus.PENDING,
        # Still the lease the caller took: once it ran out, another worker may hold it.
        _outbox.c.lease_until == bindparam("b_ours", type_=_outbox.c.lease_until.type),
    )
    .values(lease_until=bindparam("b_until", type_=_outbox.c.lease_until.type))
)
_NEXT_DUE = {
    skip_kinds: select(_outbox.c.next_attempt_at)
    .where(
        _outbox.c.status == OutboxStatus.PENDING,
        _NOT_LEASED,
        *([_NOT_OF_KINDS] if skip_kinds else []),
    )
    .order_by(_outbox.c.next_attempt_at)
    .limit(1)
    for skip_kinds in (False, True)
}


def mark_sent(session: Session, results: dict[int, dict[str, Any]], *, now: datetime) -> None:
    """Record rows as sent, with each one's result (id -> result)."""
    if results:
        session.execute(
            _MARK_SENT,
            [{"b_id": i, "b_now": now, "b_result": result} for i, result in results.items()],
        )


def mark_retry(session: Session, retries: list[tuple[int, datetime, str]]) -> None:
    """Give rows whose send failed back for another attempt at a time: (id, at, why) each."""
    _retry(session, _MARK_RETRY, retries)


def mark_later(session: Session, waits: list[tuple[int, datetime, str]]) -> None:
    """Give rows back that sent nothing (paced, rate limited, held): (id, at, why) each;
    their claim is not counted as an attempt."""
    _retry(session, _MARK_LATER, waits)


def _retry(session: Session, statement: Any, rows: list[tuple[int, datetime, str]]) -> None:
    if rows:
        session.execute(
            statement, [{"b_id": i, "b_at": at, "b_error": error[:2000]} for i, at, error in rows]
        )


def mark_failed(session: Session, failures: list[tuple[int, str]]) -> None:
    """Give up on rows for good: (id, why) each."""
    if failures:
        session.execute(
            _MARK_FAILED, [{"b_id": i, "b_error": error[:2000]} for i, error in failures]
        )


def release(session: Session, item_ids: list[int]) -> None:
    """Hand back leased rows that were never attempted (a worker stopping)."""
    if item_ids:
        session.execute(_RELEASE, [{"b_id": i} for i in item_ids])


def renew_leases(session: Session, leases: dict[int, datetime], *, until: datetime) -> set[int]:
    """Extend the caller's leases (id -> when the lease it holds ends) to `until`;
    returns the rows renewed. A row missing from the answer is no longer the caller's:
    sent meanwhile, or its lease ran out and another worker may have taken it.
    One UPDATE a row: renewing is rare (a send outlasting half a lease)."""
    renewed = set()
    for item_id, ours in leases.items():
        params = {"b_id": item_id, "b_ours": ours, "b_until": until}
        if session.execute(_RENEW, params).rowcount == 1:
            renewed.add(item_id)
    return renewed


def next_due_at(
    session: Session, *, now: datetime, skip_kinds: tuple[str, ...] = ()
) -> datetime | None:
    """When the earliest pending row not leased right now (nor of `skip_kinds`) falls due."""
    params: dict[str, Any] = {"now": now}
    if skip_kinds:
        params["skip_kinds"] = list(skip_kinds)
    return session.scalars(_NEXT_DUE[bool(skip_kinds)], params).first()


def pending_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(_outbox)
            .where(_outbox.c.status == OutboxStatus.PENDING)
        )
        or 0
    )


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    failed: int
    oldest_created_at: datetime | None  # of the pending rows


# Three range reads on the (status, next_attempt_at) index, never a scan of the sent rows.
_PENDING = _outbox.c.status == OutboxStatus.PENDING
_STATS = select(
    select(func.count()).select_from(_outbox).where(_PENDING).scalar_subquery(),
    select(func.count())
    .select_from(_outbox)
    .where(_outbox.c.status == OutboxStatus.FAILED)
    .scalar_subquery(),
    select(func.min(_outbox.c.created_at)).where(_PENDING).scalar_subquery(),
)


def stats(session: Session) -> OutboxStats:
    """How deep the outbox is, how old its oldest waiting row, how many failed for good."""
    pending, failed, oldest = session.execute(_STATS).one()
    return OutboxStats(int(pending or 0), int(failed or 0), oldest)


def lead_of(session: Session, item_id: int) -> str | None:
    """The external id of the lead a row is about (None for a digest and the like)."""
    return session.scalar(
        select(Lead.external_id)
        .join(Handoff, Handoff.lead_id == Lead.id)
        .join(Outbox, Outbox.handoff_id == Handoff.id)
        .where(Outbox.id == item_id)
    )
