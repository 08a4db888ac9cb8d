"""Decisions flowing back upstream: a signed webhook and HubSpot, both through the outbox.

Both are optional and off by default. A sender here never blocks Slack: it runs
on the delivery worker after the decision committed, is retried with backoff
on errors and timeouts, and waits for Retry-After on a 429.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
from sqlalchemy import select
from sqlmodel import Session

from bot.decisions import NOTE_LIMIT
from bot.delivery import sender
from bot.logs import lead_event
from bot.send_failures import Permanent, Retry, Unavailable
from bot.services import Services
from bot.settings import secret
from bot.signing import intake_signature
from store.models import Handoff, HandoffStatus, Lead, Outbox, Verdict

# hs_lead_status values HubSpot ships with.
HUBSPOT_STATUS = {"accepted": "IN_PROGRESS", "recycle": "OPEN", "disqualify": "UNQUALIFIED"}


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


def hubspot_properties(services: Services, handoff: Handoff) -> dict[str, str]:
    settings = services.settings
    if handoff.status == HandoffStatus.ACCEPTED:
        return {settings.hubspot_status_property: HUBSPOT_STATUS["accepted"]}
    reason = services.definition.reason(handoff.reason_id or "")
    return {
        settings.hubspot_status_property: HUBSPOT_STATUS[handoff.action or "recycle"],
        settings.hubspot_reason_property: reason.label if reason else (handoff.reason_id or ""),
        settings.hubspot_note_property: (handoff.note or "")[:NOTE_LIMIT],
    }


@sender("hubspot")
def send_hubspot(services: Services, item: Outbox) -> dict[str, Any]:
    """PATCH the contact (matched by email) with the decision."""
    with services.db.session() as session:
        handoff = session.get(Handoff, item.payload["handoff_id"])
        lead = session.get(Lead, handoff.lead_id) if handoff else None
    if handoff is None or lead is None:
        raise Permanent("the handoff or its lead no longer exists")
    if not lead.email:
        raise Permanent("the lead has no email, and HubSpot contacts are matched by email")
    settings = services.settings
    # An address may hold / ? # % (RFC 5322 atext): one encoded path segment, always.
    contact = quote(lead.email, safe="")
    url = f"{settings.hubspot_api_url.rstrip('/')}/crm/v3/objects/contacts/{contact}"
    response = services.http.patch(
        url,
        params={"idProperty": "email"},
        json={"properties": hubspot_properties(services, handoff)},
        headers={"Authorization": f"Bearer {secret(settings.hubspot_token)}"},
    )
    _raise_for_retry(response, "HubSpot")
    lead_event(lead.external_id, "written back", f"HubSpot contact, {handoff.status}")
    return {"status": response.status_code}
