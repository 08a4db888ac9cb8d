"""A lead held at the daily caps: the pool's managers are asked to assign it.

The held handoff is owned by the pool's first manager (so the reassign modal lets
them pick the rep; the pool's other managers may too, bot/access.py) and runs no
clock. The owner's message is posted where a card would be, so when a manager
assigns it, the card update replaces that question with the outcome; the others'
Assign then answers that it was assigned already.
"""

from __future__ import annotations

from typing import Any

from bot.blocks.routing import held_blocks, held_text
from bot.cards import cards_posted, post_to_user
from bot.delivery import sender
from bot.handoffs import HELD_CARD
from bot.logs import lead_event
from bot.send_failures import Permanent
from bot.services import Services
from store.models import Handoff, HandoffStatus, Lead, Outbox


def lead_summary(lead: Lead) -> str:
    """`Ana Ruiz, Head of Ops · source webinar · Q4 webinar · 60 points`."""
    person = ", ".join(filter(None, [lead.name, lead.title]))
    return " · ".join(
        filter(
            None,
            [
                person,
                lead.source and f"source {lead.source}",
                lead.campaign,
                f"{lead.score} points",
            ],
        )
    )


@sender(HELD_CARD, on_sent=cards_posted)
def send_held(services: Services, item: Outbox) -> dict[str, Any]:
    with services.db.session() as session:
        handoff = session.get(Handoff, item.payload["handoff_id"])
        lead = session.get(Lead, handoff.lead_id) if handoff else None
    if handoff is None or lead is None:
        raise Permanent("handoff no longer exists")
    if handoff.status != HandoffStatus.OPEN:
        return {"skipped": f"handoff is {handoff.status}"}
    email = item.payload.get("to") or handoff.owner_email
    manager = services.directory.by_email(email)
    if manager is None or manager.user_id is None:
        raise Permanent(f"manager {email} not found in Slack")
    company = lead.company or lead.external_id
    why = handoff.routed_by
    result = post_to_user(
        services,
        manager.user_id,
        text=held_text(company, why),
        blocks=held_blocks(handoff.id, company, lead_summary(lead), why),  # type: ignore[arg-type]
    )
    lead_event(lead.external_id, "held", f"for {email} to assign")
    if "to" in item.payload:  # another manager of the pool: the owner's message is the card
        return {"channel": result["channel"], "message_ts": result["ts"], "to": email}
    return {**result, "owner": email, "user_id": manager.user_id}
