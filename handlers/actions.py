"""Clicks on handoff cards and escalation messages: ack, then call bot/ after the ack."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot import decisions
from bot.blocks.card import ACCEPT, COMMERCIAL, COMMERCIAL_BLOCK, OPEN_CARD, REASSIGN, REJECT
from bot.blocks.modals import reassign_modal, reject_modal
from bot.decisions import Refused
from bot.services import Services
from handlers.after_ack import after_ack


def tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    """An ephemeral answer where the person clicked (a DM when they clicked in App Home)."""
    user_id = body["user"]["id"]
    channel = (body.get("container") or {}).get("channel_id") or (body.get("channel") or {}).get(
        "id"
    )
    if channel:
        client.chat_postEphemeral(channel=channel, user=user_id, text=text)
    else:
        client.chat_postMessage(channel=user_id, text=text)


def _ticked(body: dict[str, Any]) -> list[str]:
    values = (body.get("state") or {}).get("values") or {}
    selected = (values.get(COMMERCIAL_BLOCK) or {}).get(COMMERCIAL) or {}
    return [item["value"] for item in selected.get("selected_options") or []]


def on_accept(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    ack()
    after_ack(context, accept, context["services"], client, body)


def accept(services: Services, client: WebClient, body: dict[str, Any]) -> None:
    try:
        decisions.accept(
            services,
            body["actions"][0].get("value"),
            body["user"]["id"],
            commercial=_ticked(body),
        )
    except Refused as refusal:
        tell(client, body, str(refusal))


def open_modal(services: Services, client: WebClient, body: dict[str, Any], build: Any) -> None:
    """Check the clicker may act, then open the modal while the trigger_id is fresh."""
    try:
        handoff = decisions.load(services, body["actions"][0].get("value"))
        decisions.authorise(services, handoff, body["user"]["id"])
        decisions.ensure_open(services, handoff)
    except Refused as refusal:
        tell(client, body, str(refusal))
        return
    client.views_open(trigger_id=body["trigger_id"], view=build(services, handoff))


def _reject_view(services: Services, handoff: Any) -> dict[str, Any]:
    return reject_modal(services.definition, handoff.id, decisions.lead_label(services, handoff))


def _reassign_view(services: Services, handoff: Any) -> dict[str, Any]:
    return reassign_modal(
        handoff.id, decisions.lead_label(services, handoff), handoff.owner_user_id
    )


def on_reject(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    ack()
    after_ack(context, open_modal, context["services"], client, body, _reject_view)


def on_reassign(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    ack()
    after_ack(context, open_modal, context["services"], client, body, _reassign_view)


def acknowledge_only(ack: Ack) -> None:
    """Checkbox ticks are read from the card when the rep decides; link buttons need no work."""
    ack()


def register(app: App) -> None:
    app.action(ACCEPT)(on_accept)
    app.action(REJECT)(on_reject)
    app.action(REASSIGN)(on_reassign)
    app.action(COMMERCIAL)(acknowledge_only)
    app.action(OPEN_CARD)(acknowledge_only)
