"""Polling Salesforce for records changed since a cursor kept in the database.

The same contract as HubSpot's polling (bot/hubspot/poll.py), whose cursor row
and lease this reuses with the source "salesforce": each poll runs one SOQL query,
`SystemModstamp >= cursor` ordered by `SystemModstamp, Id`, follows
`nextRecordsUrl` page by page, and hands each page's new records to `ingest`. The
cursor moves only after `ingest` returned, so a crash or an outage loses nothing.
A SOQL time has whole seconds, so a query also returns the records of the
cursor's own second; those already handed over are remembered by id, and a
re-poll of an unchanged org hands nothing over.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.crm.cursor import claim_poll, past_cursor, release_poll, save_progress
from bot.crm.sources import CrmSource
from bot.hubspot.poll import LEASE, PollResult
from bot.salesforce.api import (
    BATCH_SIZE,
    MODIFIED,
    SalesforceClient,
    SalesforceError,
    SalesforceRefused,
    SalesforceUnavailable,
)
from store.db import Database

logger = logging.getLogger(__name__)

SOURCE = "salesforce"

Ingest = Callable[[list[dict[str, Any]]], None]

__all__ = ["LEASE", "PollResult", "as_record", "modified_ms", "poll_job", "poll_once"]


def _flatten(values: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for name, value in values.items():
        if name == "attributes":  # {"type", "url"}: Salesforce's, not a field
            continue
        if isinstance(value, dict):  # a relationship: Owner -> Owner.Email
            _flatten(value, f"{prefix}{name}.", out)
        else:
            out[prefix + name] = value


def as_record(record: dict[str, Any]) -> dict[str, Any]:
    """A SOQL record as the mapping reads a CRM record: `{"id", "properties"}`, with a
    relationship's fields under their path (`Owner.Email`)."""
    properties: dict[str, Any] = {}
    _flatten(record, "", properties)
    return {"id": record.get("Id"), "properties": properties}


def record_id(record: dict[str, Any]) -> str:
    return str(record.get("Id") or "")


def modified_ms(record: dict[str, Any]) -> int:
    """SystemModstamp (`2026-11-27T10:00:00.000+0000`) in epoch ms."""
    text = str(record.get(MODIFIED) or "").strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        rid = record.get("Id") or "(no Id)"
        raise SalesforceError(
            f"Salesforce record {rid}: {MODIFIED} {text[:40]!r} is not a date"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def poll_once(
    client: SalesforceClient,
    db: Database,
    ingest: Ingest,
    source: CrmSource,
    *,
    start_ms: int | None = None,
    batch_size: int = BATCH_SIZE,
    lease: timedelta = LEASE,
) -> PollResult:
    """Hand every record changed since the stored cursor to `ingest`, page by page, as
    `{"id", "properties"}` records (see `as_record`).

    Args:
        source: sources.yml's `salesforce:` (the object and the fields to select).
        start_ms: where the very first poll starts (no cursor stored yet); default now.
        batch_size: records a page (Salesforce serves 200 to 2,000).

    While another process polls this source it returns at once (`skipped`). Raises
    SalesforceError or whatever ingest raised; the cursor then stays after the last
    page ingest accepted.
    """
    owner = uuid.uuid4().hex
    claimed = claim_poll(db, SOURCE, owner, start_ms, lease)
    if claimed is None:
        return PollResult(skipped=True)
    try:
        cursor, seen = claimed
        result = PollResult(cursor_ms=cursor)
        since = datetime.fromtimestamp(cursor / 1000, UTC)
        fields = list(source.properties)
        page = client.query_changed(source.object, fields, since, batch_size=batch_size)
        while True:
            result.pages += 1
            fresh, cursor, seen = past_cursor(
                page.records, cursor, seen, record_id=record_id, modified_ms=modified_ms
            )
            if fresh:
                ingest([as_record(record) for record in fresh])
                result.delivered += len(fresh)
                save_progress(db, SOURCE, owner, cursor, seen, lease)
            result.cursor_ms = cursor
            if page.next_url is None:
                return result
            page = client.query_more(page.next_url, batch_size=batch_size)
    finally:
        release_poll(db, SOURCE, owner, lease)


def poll_job(
    client: SalesforceClient, db: Database, ingest: Ingest, source: CrmSource, **options: Any
) -> PollResult | None:
    """`poll_once` for a scheduler job: a failure is logged, and the next run retries."""
    try:
        result = poll_once(client, db, ingest, source, **options)
    except SalesforceUnavailable as exc:
        logger.warning("Salesforce poll: %s; trying again at the next poll", exc)
        return None
    except SalesforceRefused:
        logger.exception("Salesforce poll refused; run `handoff salesforce check`")
        return None
    except SalesforceError as exc:  # the query itself refused: a field sources.yml names
        logger.error("Salesforce poll refused: %s; run `handoff salesforce check`", exc)
        return None
    except Exception:
        logger.exception("Salesforce poll failed; it resumes from the stored cursor next time")
        return None
    if result.delivered:
        logger.info(
            "Salesforce poll: %d changed record(s) in %d page(s)", result.delivered, result.pages
        )
    return result
