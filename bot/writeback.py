"""Decisions flowing back upstream: a signed webhook, HubSpot and Salesforce (its sender
is in bot/salesforce/writeback.py), all through the outbox.

Both are optional and off by default. A sender here never blocks Slack: it runs
on the delivery worker after the decision committed, is retried with backoff
on errors and timeouts, and waits for Retry-After on a 429.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select
from sqlmodel import Session

from bot.decisions import HUBSPOT_OWNER, NOTE_LIMIT
from bot.delivery import sender
from bot.hubspot.api import HubSpotError, HubSpotUnavailable
from bot.hubspot.options import DEFAULT_VALUES, LEAD_STATUS, LIFECYCLE_STAGE, OWNER, WriteBack
from bot.logs import lead_event
from bot.salesforce.writeback import send_salesforce  # noqa: F401 - registers its sender
from bot.send_failures import Permanent, Retry, Unavailable
from bot.services import Services
from bot.settings import secret
from bot.signing import intake_signature
from store.models import Handoff, HandoffStatus, Lead, Outbox, Verdict

logger = logging.getLogger(__name__)

# hs_lead_status values HubSpot ships with (the default; sources.yml `write_back` changes it).
HUBSPOT_STATUS = DEFAULT_VALUES[LEAD_STATUS]
# Lifecycle stages in HubSpot's default order. HubSpot will not move a contact to an
# earlier stage unless the property is cleared first; Handoff clears it when it must.
LIFECYCLE_ORDER = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
# Stages past the handoff (a deal is open, or the contact buys): a decision on a lead
# never moves a contact out of them; the reason and note are still written.
LIFECYCLE_KEPT = frozenset({"opportunity", "customer", "evangelist"})


def _handed_off_under(session: Session, handoff: Handoff) -> int | None:
    """The definition version of the verdict that handed the lead to sales: the lead's
    last verdict at the first handoff of the chain (a reassignment judges nothing)."""
    first = handoff
    while first.previous_id is not None:
        previous = session.get(Handoff, first.previous_id)
        if previous is None:
            break
        first = previous
    if first.definition_version is not None:
        return first.definition_version
    return session.scalars(
        select(Verdict.definition_version)
        .where(Verdict.lead_id == handoff.lead_id, Verdict.judged_at <= first.assigned_at)
        .order_by(Verdict.judged_at.desc(), Verdict.id.desc())
        .limit(1)
    ).first()


def decision_event(services: Services, handoff_id: int) -> dict[str, Any]:
    """The decision as the outside world sees it (the webhook body)."""
    with services.db.session() as session:
        handoff = session.get(Handoff, handoff_id)
        lead = session.get(Lead, handoff.lead_id) if handoff else None
        version = _handed_off_under(session, handoff) if handoff else None
    if handoff is None or lead is None:
        raise Permanent("the handoff or its lead no longer exists")
    reason = services.definition.reason(handoff.reason_id) if handoff.reason_id else None
    return {
        "event": f"handoff.{handoff.status}",
        "definition_version": version,
        "lead": {
            "id": lead.external_id,
            "email": lead.email,
            "company": lead.company,
            "source": lead.source,
            "campaign": lead.campaign,
            "status": lead.status,
        },
        "handoff": {
            "id": handoff.id,
            "status": handoff.status,
            "owner": handoff.owner_email,
            "assigned_at": handoff.assigned_at.isoformat(),
            "decided_by": handoff.decided_by,
            "decided_at": handoff.decided_at.isoformat() if handoff.decided_at else None,
            "commercial": handoff.commercial,
            "note": handoff.note,
            "reason": None
            if reason is None
            else {
                "id": reason.id,
                "label": reason.label,
                "criterion": reason.criterion,
                "action": reason.action,
            },
            "sla": {
                "business_seconds": handoff.business_seconds,
                "wall_seconds": handoff.wall_seconds,
                "breached": handoff.breached,
            },
        },
    }


def _raise_for_retry(response: httpx.Response, what: str) -> None:
    """429 and 5xx come back later; other 4xx will never work."""
    if response.status_code == 429:
        after = response.headers.get("Retry-After", "10")
        seconds = float(after) if after.replace(".", "", 1).isdigit() else 10.0
        raise Retry(timedelta(seconds=seconds), f"{what} rate limited (429)")
    if response.status_code >= 500:
        raise Unavailable(f"{what} answered {response.status_code}")
    if response.status_code >= 400:
        raise Permanent(f"{what} refused the request: {response.status_code} {response.text[:200]}")


@sender("webhook")
def send_webhook(services: Services, item: Outbox) -> dict[str, Any]:
    settings = services.settings
    event = decision_event(services, item.payload["handoff_id"])
    body = json.dumps(event).encode()
    timestamp = str(int(time.time()))
    response = services.http.post(
        settings.handoff_webhook_url or "",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Handoff-Timestamp": timestamp,
            "X-Handoff-Signature": intake_signature(
                secret(settings.handoff_webhook_secret), timestamp, body
            ),
        },
    )
    _raise_for_retry(response, "the webhook")
    lead_event(event["lead"]["id"], "written back", f"webhook {event['event']}")
    return {"status": response.status_code}


def hubspot_write_back(services: Services) -> WriteBack:
    """sources.yml's `hubspot.write_back`, or the defaults when it has none."""
    hub = services.sources.hubspot if services.sources else None
    return hub.hubspot.write_back if hub and hub.hubspot else WriteBack()


def hubspot_properties(services: Services, handoff: Handoff) -> dict[str, str]:
    """What the decision writes on the contact: the status (unless configured to be
    left alone for this outcome) and, for a rejection, the reason and the note."""
    settings = services.settings
    config = hubspot_write_back(services)
    status_property = config.status_property(settings.hubspot_status_property)
    outcome = (
        "accepted" if handoff.status == HandoffStatus.ACCEPTED else handoff.action or "recycle"
    )
    status = config.value(status_property, outcome)
    properties = {status_property: status} if status is not None else {}
    if handoff.status == HandoffStatus.ACCEPTED:
        return properties
    reason = services.definition.reason(handoff.reason_id or "")
    return {
        **properties,
        settings.hubspot_reason_property: reason.label if reason else (handoff.reason_id or ""),
        settings.hubspot_note_property: (handoff.note or "")[:NOTE_LIMIT],
    }


def _contact(services: Services, lead: Lead) -> tuple[str, dict[str, str]]:
    """The contact's URL and query: by record id for a lead that came from HubSpot
    (`hubspot:<id>`), else by email (HubSpot's idProperty=email)."""
    base = f"{services.settings.hubspot_api_url.rstrip('/')}/crm/v3/objects/contacts/"
    prefix, _, record_id = lead.external_id.partition(":")
    if prefix == "hubspot" and record_id:
        return base + quote(record_id, safe=""), {}
    if not lead.email:
        raise Permanent("the lead has no email, and HubSpot contacts are matched by email")
    # An address may hold / ? # % (RFC 5322 atext): one encoded path segment, always.
    return base + quote(lead.email, safe=""), {"idProperty": "email"}


def _headers(services: Services) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(services.settings.hubspot_token)}"}


def _lifecycle_move(
    services: Services, url: str, params: dict[str, str], lead: Lead, target: str
) -> bool:
    """Whether to write `target` as the lifecycle stage; clears the stage first when
    that is a move backwards, which HubSpot refuses (or ignores) otherwise."""
    response = services.http.get(
        url, params={**params, "properties": LIFECYCLE_STAGE}, headers=_headers(services)
    )
    _raise_for_retry(response, "HubSpot")
    try:
        record = response.json()
    except ValueError:
        raise Unavailable("HubSpot answered the contact's read without JSON") from None
    found = record.get("properties") if isinstance(record, dict) else None
    current = str((found if isinstance(found, dict) else {}).get(LIFECYCLE_STAGE) or "")
    if current == target:
        return False
    if current in LIFECYCLE_KEPT:
        logger.info(
            "lead %s: HubSpot lifecycle stage left at %s (past the handoff), not set to %s",
            lead.external_id,
            current,
            target,
        )
        return False
    order = {stage: i for i, stage in enumerate(LIFECYCLE_ORDER)}
    if current and (current not in order or target not in order or order[target] < order[current]):
        # Backwards, or a custom stage whose order Handoff cannot know: clear, then set.
        cleared = services.http.patch(
            url,
            params=params,
            json={"properties": {LIFECYCLE_STAGE: ""}},
            headers=_headers(services),
        )
        _raise_for_retry(cleared, "HubSpot")
    return True


@sender("hubspot")
def send_hubspot(services: Services, item: Outbox) -> dict[str, Any]:
    """PATCH the contact (by record id, or matched by email) with the decision."""
    with services.db.session() as session:
        handoff = session.get(Handoff, item.payload["handoff_id"])
        lead = session.get(Lead, handoff.lead_id) if handoff else None
    if handoff is None or lead is None:
        raise Permanent("the handoff or its lead no longer exists")
    url, params = _contact(services, lead)
    properties = hubspot_properties(services, handoff)
    stage = properties.get(LIFECYCLE_STAGE)
    if stage and not _lifecycle_move(services, url, params, lead, stage):
        del properties[LIFECYCLE_STAGE]
    if not properties:
        return {"skipped": "nothing to write"}
    response = services.http.patch(
        url, params=params, json={"properties": properties}, headers=_headers(services)
    )
    _raise_for_retry(response, "HubSpot")
    lead_event(lead.external_id, "written back", f"HubSpot contact, {handoff.status}")
    return {"status": response.status_code}


@sender(HUBSPOT_OWNER)
def send_hubspot_owner(services: Services, item: Outbox) -> dict[str, Any]:
    """After a reassignment: make the new rep the contact's HubSpot owner
    (sources.yml `write_back: {owner: true}`), found by email among HubSpot's owners."""
    with services.db.session() as session:
        handoff = session.get(Handoff, item.payload["handoff_id"])
        lead = session.get(Lead, handoff.lead_id) if handoff else None
    if handoff is None or lead is None:
        raise Permanent("the handoff or its lead no longer exists")
    if services.hubspot_owners is None:
        raise Permanent("HUBSPOT_TOKEN is not set: the owner cannot be written back")
    try:
        owner_id = services.hubspot_owners.id_of(handoff.owner_email)
    except HubSpotUnavailable as exc:
        raise Unavailable(str(exc)) from None
    except HubSpotError as exc:
        raise Permanent(str(exc)) from None
    if owner_id is None:
        why = (
            f"{handoff.owner_email} is not a HubSpot owner (no HubSpot user has that email), "
            "so the contact's owner in HubSpot was left unchanged"
        )
        logger.warning("lead %s: HubSpot owner not written back: %s", lead.external_id, why)
        raise Permanent(why)
    url, params = _contact(services, lead)
    response = services.http.patch(
        url, params=params, json={"properties": {OWNER: owner_id}}, headers=_headers(services)
    )
    _raise_for_retry(response, "HubSpot")
    lead_event(lead.external_id, "written back", f"HubSpot owner {handoff.owner_email}")
    return {"status": response.status_code, "owner_id": owner_id}
