"""Clicks on handoff cards and escalation messages: ack, then call bot/ after the ack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltRequest
from slack_sdk import WebClient

from bot import away, decisions, disputes, governance, snooze
from bot.blocks.card import (
    ACCEPT,
    COMMERCIAL,
    COMMERCIAL_BLOCK,
    OPEN_CARD,
    OPEN_CRM,
    REASSIGN,
    REJECT,
    SNOOZE,
)
from bot.blocks.disputes import DISPUTE, REOPEN, UPHOLD, dispute_modal
from bot.blocks.governance import APPROVE, DECLINE, decline_modal
from bot.blocks.modals import reassign_modal, reject_modal, snooze_modal
from bot.blocks.routing import AWAY_REASSIGN
from bot.decisions import Refused
from bot.replies import tell, tell_refusal
from bot.services import Services
from handlers.after_ack import after_ack


def _channel(body: dict[str, Any]) -> str | None:
    """Where the person clicked (none in App Home)."""
    container = body.get("container") or {}
    return container.get("channel_id") or (body.get("channel") or {}).get("id")


def _retried(request: BoltRequest) -> bool:
    """Slack re-sends a click it got no ack for in time, numbered in this header."""
    return bool(request.headers.get("x-slack-retry-num"))


def refuse(client: WebClient, body: dict[str, Any], refusal: Refused, retried: bool) -> None:
    tell_refusal(client, body["user"]["id"], _channel(body), refusal, retried=retried)


def _ticked(body: dict[str, Any]) -> list[str]:
    values = (body.get("state") or {}).get("values") or {}
    selected = (values.get(COMMERCIAL_BLOCK) or {}).get(COMMERCIAL) or {}
    return [item["value"] for item in selected.get("selected_options") or []]


def on_accept(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(context, accept, context["services"], client, body, _retried(request))


def accept(services: Services, client: WebClient, body: dict[str, Any], retried: bool) -> None:
    try:
        decisions.accept(
            services,
            body["actions"][0].get("value"),
            body["user"]["id"],
            commercial=_ticked(body),
        )
    except Refused as refusal:
        refuse(client, body, refusal, retried)


def open_modal(
    services: Services,
    client: WebClient,
    body: dict[str, Any],
    check: Callable[[Services, Any, str], Any],
    build: Callable[[Services, Any], dict[str, Any]],
    retried: bool,
) -> None:
    """Check the clicker may act, then open the modal while the trigger_id is fresh."""
    try:
        handoff = check(services, body["actions"][0].get("value"), body["user"]["id"])
    except Refused as refusal:
        refuse(client, body, refusal, retried)
        return
    if retried:
        # A trigger_id lives 3 seconds, and Slack retries only after that: the first
        # delivery opened the modal, or nothing can now.
        return
    client.views_open(trigger_id=body["trigger_id"], view=build(services, handoff))


def _reject_view(services: Services, handoff: Any) -> dict[str, Any]:
    return reject_modal(services.definition, handoff.id, decisions.lead_label(services, handoff))


def _reassign_view(services: Services, handoff: Any) -> dict[str, Any]:
    return reassign_modal(
        handoff.id, decisions.lead_label(services, handoff), handoff.owner_user_id
    )


def on_reject(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(
        context,
        open_modal,
        context["services"],
        client,
        body,
        decisions.can_reject,
        _reject_view,
        _retried(request),
    )


def on_reassign(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(
        context,
        open_modal,
        context["services"],
        client,
        body,
        decisions.can_reassign,
        _reassign_view,
        _retried(request),
    )


def _snooze_view(services: Services, handoff: Any) -> dict[str, Any]:
    lengths = [(choice.value, choice.label) for choice in snooze.choices(services.definition)]
    return snooze_modal(handoff.id, decisions.lead_label(services, handoff), lengths)


def _can_snooze(services: Services, handoff_id: Any, user_id: str) -> Any:
    return snooze.can_snooze(services, handoff_id, user_id)


def on_snooze(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(
        context,
        open_modal,
        context["services"],
        client,
        body,
        _can_snooze,
        _snooze_view,
        _retried(request),
    )


def _dispute_view(services: Services, handoff: Any) -> dict[str, Any]:
    reason = services.definition.reason(handoff.reason_id) if handoff.reason_id else None
    label = reason.label if reason else (handoff.reason_id or "no reason given")
    return dispute_modal(handoff.id, decisions.lead_label(services, handoff), label)


def on_dispute(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(
        context,
        open_modal,
        context["services"],
        client,
        body,
        disputes.can_dispute,
        _dispute_view,
        _retried(request),
    )


def decide_dispute(
    services: Services, client: WebClient, body: dict[str, Any], outcome: str, retried: bool
) -> None:
    try:
        disputes.decide(services, body["actions"][0].get("value"), body["user"]["id"], outcome)
    except Refused as refusal:
        refuse(client, body, refusal, retried)


def on_reopen(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(
        context, decide_dispute, context["services"], client, body, "reopened", _retried(request)
    )


def on_uphold(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(
        context, decide_dispute, context["services"], client, body, "upheld", _retried(request)
    )


def on_approve_definition(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(context, approve_definition, context["services"], client, body, _retried(request))


def approve_definition(
    services: Services, client: WebClient, body: dict[str, Any], retried: bool
) -> None:
    try:
        governance.approve(services, body["actions"][0].get("value"), body["user"]["id"])
    except Refused as refusal:
        refuse(client, body, refusal, retried)


def _decline_view(_services: Services, checked: Any) -> dict[str, Any]:
    proposal, _roles = checked
    return decline_modal(proposal.id)


def on_decline_definition(
    ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, request: BoltRequest
) -> None:
    ack()
    after_ack(
        context,
        open_modal,
        context["services"],
        client,
        body,
        governance.check_owner,
        _decline_view,
        _retried(request),
    )


def on_away_reassign(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
    ack()
    after_ack(context, reassign_away_leads, context["services"], body)


def reassign_away_leads(services: Services, body: dict[str, Any]) -> None:
    """The manager's one click on an away notice: the rep's open leads are rerouted."""
    user_id = body["user"]["id"]
    text = away.reassign_leads_of(services, user_id, body["actions"][0].get("value"))
    tell(services.slack, user_id, _channel(body), text)


def acknowledge_only(ack: Ack) -> None:
    """Checkbox ticks are read from the card when the rep decides; link buttons need no work."""
    ack()


def register(app: App) -> None:
    app.action(ACCEPT)(on_accept)
    app.action(REJECT)(on_reject)
    app.action(REASSIGN)(on_reassign)
    app.action(SNOOZE)(on_snooze)
    app.action(DISPUTE)(on_dispute)
    app.action(REOPEN)(on_reopen)
    app.action(UPHOLD)(on_uphold)
    app.action(APPROVE)(on_approve_definition)
    app.action(DECLINE)(on_decline_definition)
    app.action(AWAY_REASSIGN)(on_away_reassign)
    app.action(COMMERCIAL)(acknowledge_only)
    app.action(OPEN_CARD)(acknowledge_only)
    app.action(OPEN_CRM)(acknowledge_only)
