"""Polling HubSpot for contacts changed since a cursor kept in the database.

Each poll searches `lastmodifieddate >= cursor`, oldest first, pages by `after`,
and hands every page's new records to `ingest` (the mapping and intake). The
cursor moves only after `ingest` returned, page by page: a crash or an outage
loses nothing, and the next poll starts where this one stopped. Records changed
at exactly the cursor's millisecond and already handed over are remembered by
id, so polling an unchanged portal hands nothing over twice (intake is
idempotent anyway; this keeps re-polls free). HubSpot serves at most 10,000
results of one query; before paging past them the search restarts from the
last record's change time. One process polls a source at a time (a lease on the
cursor row): HubSpot's rate limits are the portal's, shared by every replica.
The next page is fetched while `ingest` works on this one, and the client paces
its searches under the limit, so a long poll runs at the limit's speed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.crm.cursor import claim_poll, past_cursor, release_poll, save_progress
from bot.hubspot.api import (
    MODIFIED,
    SEARCH_CAP,
    SEARCH_LIMIT,
    HubSpotClient,
    HubSpotError,
    HubSpotRefused,
    HubSpotUnavailable,
    SearchPage,
)
from store.db import Database

logger = logging.getLogger(__name__)

SOURCE = "hubspot"
LEASE = timedelta(minutes=5)

Ingest = Callable[[list[dict[str, Any]]], None]


@dataclass
class PollResult:
    pages: int = 0
    delivered: int = 0  # records handed to ingest
    restarts: int = 0  # searches restarted to pass the result cap
    cursor_ms: int = 0
    skipped: bool = False  # another process was polling this source


def record_id(record: dict[str, Any]) -> str:
    properties = record.get("properties") or {}
    return str(record.get("id") or properties.get("hs_object_id") or "")


def modified_ms(record: dict[str, Any]) -> int:
    """When the record last changed, in epoch ms (HubSpot writes an ISO datetime)."""
    value = (record.get("properties") or {}).get(MODIFIED) or record.get("updatedAt")
    text = str(value or "").strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HubSpotError(
            f"HubSpot record {record_id(record) or '(no id)'}: {MODIFIED} {text!r} is not a date"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def poll_once(
    client: HubSpotClient,
    db: Database,
    ingest: Ingest,
    properties: Sequence[str],
    *,
    source: str = SOURCE,
    start_ms: int | None = None,
    limit: int = SEARCH_LIMIT,
    cap: int = SEARCH_CAP,
    lease: timedelta = LEASE,
) -> PollResult:
    """Hand every record changed since the stored cursor to `ingest`, page by page.

    Args:
        properties: the properties to fetch (the mapped ones).
        start_ms: where the very first poll starts (no cursor stored yet); default now,
            so turning polling on hands off what changes from then on, not the history
            (that is `handoff import --history`).
        cap: the results one search serves (HubSpot's 10,000; smaller in tests).
        lease: how long another process waits before taking over a poll that stopped
            saving pages (a crashed one); each saved page extends it.

    While another process polls the same source this returns at once (`skipped`).
    Raises HubSpotError (HubSpotUnavailable: try again next time) or whatever ingest
    raised; the cursor then stays after the last page ingest accepted.
    """
    owner = uuid.uuid4().hex
    claimed = claim_poll(db, source, owner, start_ms, lease)
    if claimed is None:
        return PollResult(skipped=True)

    def fetch(since_ms: int, after: str | None) -> SearchPage:
        return client.search_changed(since_ms, list(properties), after, limit=limit)

    # The next page is fetched while this one is ingested: a poll is bound by the
    # search's rate limit, not by the limit plus the intake's time.
    ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{source}-poll")
    try:
        cursor, seen = claimed
        result = PollResult(cursor_ms=cursor)
        query_from, after = cursor, None
        pending: Future[SearchPage] | None = ahead.submit(fetch, query_from, after)
        while pending is not None:
            page = pending.result()
            result.pages += 1
            fresh, cursor, seen = past_cursor(
                page.results, cursor, seen, record_id=record_id, modified_ms=modified_ms
            )
            reached = (int(after) if after and after.isdigit() else 0) + len(page.results)
            after, pending = page.next_after, None
            # One query serves `cap` results, whether or not HubSpot offers a page past them.
            restart = reached >= cap and (after is not None or reached < page.total)
            stuck = restart and cursor == query_from
            if restart and not stuck:
                query_from, after = cursor, None
                result.restarts += 1
            if (restart and not stuck) or (not restart and after is not None):
                pending = ahead.submit(fetch, query_from, after)
            if fresh:
                ingest(fresh)
                result.delivered += len(fresh)
                save_progress(db, source, owner, cursor, seen, lease)
            result.cursor_ms = cursor
            if stuck:
                raise HubSpotError(
                    f"more than {cap} HubSpot records changed in the same millisecond "
                    f"({cursor}); the search cannot page past them"
                )
        return result
    finally:
        ahead.shutdown(wait=True, cancel_futures=True)
        release_poll(db, source, owner, lease)


def poll_job(
    client: HubSpotClient,
    db: Database,
    ingest: Ingest,
    properties: Sequence[str],
    **options: Any,
) -> PollResult | None:
    """`poll_once` for a scheduler job: a failure is logged, and the next run retries."""
    try:
        result = poll_once(client, db, ingest, properties, **options)
    except HubSpotUnavailable as exc:
        logger.warning("HubSpot poll: %s; trying again at the next poll", exc)
        return None
    except HubSpotRefused:
        logger.exception("HubSpot poll refused; run `handoff hubspot check`")
        return None
    except Exception:
        logger.exception("HubSpot poll failed; it resumes from the stored cursor next time")
        return None
    if result.delivered:
        logger.info(
            "HubSpot poll: %d changed record(s) in %d page(s)", result.delivered, result.pages
        )
    return result
