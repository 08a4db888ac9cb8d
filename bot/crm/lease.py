"""The lease that lets one process at a time poll a CRM source.

The cursor row (`crm_cursor`) holds who polls and until when; each saved page
extends the lease, and a crashed poller's lease runs out. A CRM's rate limits
are its account's, shared by every replica, so one poller is the right number.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from bot import clock
from store.crm import claim_cursor, create_cursor, load_cursor, release_cursor
from store.db import Database

logger = logging.getLogger(__name__)


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
