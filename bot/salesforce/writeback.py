"""A decision written back to the Salesforce Lead it came from, through the outbox.

Registered as the outbox's "salesforce" sender (bot/writeback.py imports it): it
runs on the delivery worker after the decision committed. Only a lead that came
from Salesforce (`salesforce:<Id>`) is written; the fields are sources.yml's
`salesforce.write_back`. A rate limit waits for its Retry-After in the outbox,
not on the worker; an outage or refused credentials keep the write waiting; a
refusal of this record (a field missing or not editable) gives up on it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.decisions import NOTE_LIMIT
from bot.delivery import sender
from bot.logs import lead_event
from bot.salesforce.api import SalesforceError, SalesforceRefused, SalesforceUnavailable
from bot.send_failures import Permanent, Retry, Unavailable
from bot.services import Services
from store.models import Handoff, HandoffStatus, Lead, Outbox

PREFIX = "salesforce:"
# The values written to the status field (a picklist with these values, or text).
STATUS = {"accepted": "Accepted", "recycle": "Recycled", "disqualify": "Disqualified"}
REASON_LIMIT = 255  # a Text(255) field


def salesforce_values(
    services: Services, handoff: Handoff, write_back: dict[str, str]
) -> dict[str, Any]:
    """The Lead fields for the decision. Accepting clears an earlier rejection's reason
    and note (a recycled lead can come back and be accepted)."""
    if handoff.status == HandoffStatus.ACCEPTED:
        status, reason_text, note = STATUS["accepted"], None, None
    else:
        reason = services.definition.reason(handoff.reason_id or "")
        status = STATUS.get(handoff.action or "recycle", STATUS["recycle"])
        reason_text = (reason.label if reason else (handoff.reason_id or ""))[:REASON_LIMIT]
        note = (handoff.note or "")[:NOTE_LIMIT] or None
    values = {"status": status, "reason": reason_text, "note": note}
    return {field: values[key] for key, field in write_back.items()}


@sender("salesforce")
def send_salesforce(services: Services, item: Outbox) -> dict[str, Any]:
    """PATCH the Lead (by its Id) with the decision."""
    with services.db.session() as session:
        handoff = session.get(Handoff, item.payload["handoff_id"])
        lead = session.get(Lead, handoff.lead_id) if handoff else None
    if handoff is None or lead is None:
        raise Permanent("the handoff or its lead no longer exists")
    if not lead.external_id.startswith(PREFIX):
        return {"skipped": "not a Salesforce lead"}
    source = services.sources.salesforce if services.sources else None
    client = services.salesforce
    if client is None or source is None or not source.write_back:
        raise Permanent("Salesforce write-back is no longer configured")
    values = salesforce_values(services, handoff, source.write_back)
    record_id = lead.external_id[len(PREFIX) :]
    try:
        client.update(source.object, record_id, values, wait=False)
    except SalesforceUnavailable as exc:
        if exc.retry_after is not None:
            raise Retry(timedelta(seconds=exc.retry_after), str(exc)) from None
        raise Unavailable(str(exc)) from None
    except SalesforceRefused as exc:
        raise Unavailable(str(exc)) from None  # waits for the credentials to be fixed
    except SalesforceError as exc:
        raise Permanent(str(exc)) from None
    lead_event(lead.external_id, "written back", f"Salesforce {source.object}, {handoff.status}")
    return {"status": 204}
