"""Round-robin positions, daily loads, account owners and who is away.

Fairness across processes rests on one lock: `positions` locks every rule's
position row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's IMMEDIATE write
transactions are serialized anyway) before anything is counted, so the loads
and account owners read after it include every handoff committed before, and
nothing is committed in between.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from store.models import Handoff, HandoffStatus, Lead, RepStatus, RoutingState

_state = RoutingState.__table__  # type: ignore[attr-defined]
_handoff = Handoff.__table__  # type: ignore[attr-defined]
_lead = Lead.__table__  # type: ignore[attr-defined]

# Built once: they run in intake's transaction, on the way from a lead to its DM.
_POSITIONS = (
    select(_state.c.key, _state.c.position)
    .where(_state.c.key.in_(bindparam("keys", expanding=True)))
    .order_by(_state.c.key)  # one lock order for every process: no deadlock
    .with_for_update()
)
_AWAY = select(RepStatus.email).where(
    RepStatus.away,  # type: ignore[arg-type]
    or_(RepStatus.away_until.is_(None), RepStatus.away_until > bindparam("now")),  # type: ignore[union-attr]
)
_LOADS = (
    select(_handoff.c.route_key, _handoff.c.owner_email, func.count())
    .where(
        _handoff.c.route_key.in_(bindparam("keys", expanding=True)),
        _handoff.c.assigned_at >= bindparam("since"),
    )
    .group_by(_handoff.c.route_key, _handoff.c.owner_email)
)
_WORKING = (HandoffStatus.OPEN, HandoffStatus.ACCEPTED)


def _insert_missing(session: Session, keys: list[str]) -> None:
    """Create absent position rows, so that there is a row to lock (a concurrent
    creator of the same row wins; this one then waits for its commit)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.connection().execute(
        insert(_state).on_conflict_do_nothing(), [{"key": key, "position": 0} for key in keys]
    )


def positions(session: Session, keys: Iterable[str], *, create: bool = True) -> dict[str, int]:
    """Current positions, locked for the transaction where the database can. Rows
    not there yet are created first (unless `create` is False: a read-only look),
    so the lock always holds."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    found = dict(session.connection().execute(_POSITIONS, {"keys": keys}).all())
    if create and len(found) < len(keys):
        _insert_missing(session, [key for key in keys if key not in found])
        found = dict(session.connection().execute(_POSITIONS, {"keys": keys}).all())
    return found


_SAVE = update(_state).where(_state.c.key == bindparam("b_key")).values(position=bindparam("b_pos"))


def save_position(session: Session, key: str, position: int) -> None:
    updated = session.connection().execute(_SAVE, {"b_key": key, "b_pos": position})
    if updated.rowcount == 0:
        session.add(RoutingState(key=key, position=position))
        session.flush()


def day_loads(
    session: Session, keys: Collection[str], *, since: datetime
) -> dict[str, dict[str, int]]:
    """Handoffs each rep got from each of these rules since `since` (the day's start)."""
    loads: dict[str, dict[str, int]] = {key: {} for key in keys}
    if not keys:
        return loads
    rows = session.connection().execute(_LOADS, {"keys": list(keys), "since": since})
    for key, owner, count in rows:
        loads[key][owner] = count
    return loads


# The status is tested in Python: in SQL it tempts SQLite's planner (no statistics) to
# walk every open handoff instead of the few leads of these companies and domains.
_ACCOUNTS = (
    select(_lead.c.company_key, _lead.c.email_domain, _handoff.c.owner_email, _handoff.c.status)
    .select_from(_handoff.join(_lead, _lead.c.id == _handoff.c.lead_id))
    .where(
        or_(
            _lead.c.company_key.in_(bindparam("companies", expanding=True)),
            _lead.c.email_domain.in_(bindparam("domains", expanding=True)),
        )
    )
    .order_by(_handoff.c.assigned_at, _handoff.c.id)
)


def account_owners(
    session: Session, *, companies: Collection[str], domains: Collection[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Who holds an open or accepted handoff of each company (by company key) and each
    email domain: ({company: owner}, {domain: owner}); the latest handoff wins."""
    if not companies and not domains:
        return {}, {}
    rows = session.connection().execute(
        _ACCOUNTS, {"companies": list(companies), "domains": list(domains)}
    )
    by_company: dict[str, str] = {}
    by_domain: dict[str, str] = {}
    for company, domain, owner, status in rows:  # in time order: the latest overwrites
        if status not in _WORKING:
            continue
        if company in companies:
            by_company[company] = owner
        if domain in domains:
            by_domain[domain] = owner
    return by_company, by_domain


def away_reps(session: Session, *, now: datetime) -> set[str]:
    """Reps away now: an away that has an end date and reached it is over already."""
    return set(session.connection().execute(_AWAY, {"now": now}).scalars())


def set_away(
    session: Session, email: str, away: bool, *, now: datetime, until: datetime | None = None
) -> None:
    status = session.get(RepStatus, email)
    if status is None:
        session.add(RepStatus(email=email, away=away, updated_at=now, away_until=until))
    else:
        status.away = away
        status.updated_at = now
        status.away_until = until if away else None
    session.flush()


def away_status(session: Session, email: str, *, now: datetime) -> RepStatus | None:
    """The rep's away row while they are away (None when they are not)."""
    status = session.get(RepStatus, email)
    if status is None or not status.away:
        return None
    if status.away_until is not None and status.away_until <= now:
        return None
    return status
