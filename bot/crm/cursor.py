"""A CRM poll's cursor and the lease that lets one process at a time poll a source.

The cursor row (`crm_cursor`) holds how far the polls got (a change time in epoch
ms, and the ids already taken at exactly that time), who polls and until when;
each saved page extends the lease, and a crashed poller's lease runs out. A CRM's
rate limits are its account's, shared by every replica, so one poller is right.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from bot import clock
from store.crm import claim_cursor, create_cursor, load_cursor, release_cursor, save_cursor
from store.db import Database

logger = logging.getLogger(__name__)

R = TypeVar("R")


def release_poll(db: Database, source: str, owner: str, lease: timedelta) -> None:
    """Give the lease back at once (a failure to is logged: the lease runs out)."""
    try:
        with db.transaction() as session:
            release_cursor(session, source, owner)
    except Exception:  # noqa: BLE001 - keep the poll's own error; the lease runs out anyway
        logger.exception("cannot release the %s poll lease; it runs out within %s", source, lease)


def claim_poll(
    db: Database, source: str, owner: str, start_ms: int | None, lease: timedelta
) -> tuple[int, set[str]] | None:
    """(cursor, ids already taken at it) for `owner`, or None while another polls.
    The first poll of a source starts at `start_ms` (default now)."""
    with db.session() as session:
        exists = load_cursor(session, source) is not None
    if not exists:
        start = int(clock.now().timestamp() * 1000) if start_ms is None else start_ms
        try:
            with db.transaction() as session:
                create_cursor(session, source, start, now=clock.now())
        except IntegrityError:
            pass  # another process created it at the same moment
    now = clock.now()
    with db.transaction() as session:
        row = claim_cursor(session, source, owner, now=now, until=now + lease)
        return None if row is None else (row.cursor_ms, set(row.seen_ids))


def past_cursor(
    records: list[R],
    cursor: int,
    seen: set[str],
    *,
    record_id: Callable[[R], str],
    modified_ms: Callable[[R], int],
) -> tuple[list[R], int, set[str]]:
    """The records (oldest first) not yet handed over, and the cursor after them."""
    fresh = []
    seen = set(seen)
    for record in records:
        rid, changed = record_id(record), modified_ms(record)
        if changed < cursor or (changed == cursor and rid in seen):
            continue
        fresh.append(record)
        if changed > cursor:
            cursor, seen = changed, {rid}
        else:
            seen.add(rid)
    return fresh, cursor, seen


def save_progress(
    db: Database, source: str, owner: str, cursor: int, seen: set[str], lease: timedelta
) -> None:
    """Move the cursor past a page `ingest` took, and extend the lease."""
    now = clock.now()
    with db.transaction() as session:
        save_cursor(session, source, owner, cursor, sorted(seen), now=now, until=now + lease)
