"""Modal submissions: checked before the ack (invalid input is answered inside the
modal, never dropped), written after it (no ack waits for the database's write lock)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot import decisions, disputes, governance, snooze
from bot.blocks.disputes import DISPUTE_NOTE_ACTION, DISPUTE_NOTE_BLOCK, DISPUTE_VIEW
from bot.blocks.governance import DECLINE_NOTE_ACTION, DECLINE_NOTE_BLOCK, DECLINE_VIEW
from bot.blocks.modals import (
    ASSIGNEE_ACTION,
    ASSIGNEE_BLOCK,
    LENGTH_ACTION,
    LENGTH_BLOCK,
    NOTE_ACTION,
    NOTE_BLOCK,
    REASON_ACTION,
    REASON_BLOCK,
    REASSIGN_VIEW,
    REJECT_VIEW,
    SNOOZE_VIEW,
    WHY_ACTION,
    WHY_BLOCK,
)
from bot.decisions import Refused
from handlers.after_ack import after_ack


def _value(view: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    return ((view.get("state") or {}).get("values") or {}).get(block, {}).get(action) or {}


def on_reject_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
) -> None:
    services = context["services"]
    reason_id = (_value(view, REASON_BLOCK, REASON_ACTION).get("selected_option") or {}).get(
        "value"
    )
    note = _value(view, NOTE_BLOCK, NOTE_ACTION).get("value")
    problems = decisions.rejection_problems(services.definition, reason_id, note)
    if problems:
        ack(response_action="errors", errors=problems)
        return
    try:
        rejection = decisions.check_rejection(
            services,
            view.get("private_metadata"),
            body["user"]["id"],
            reason_id=reason_id,
            note=note,
        )
    except Refused as refusal:
        ack(response_action="errors", errors={REASON_BLOCK: str(refusal)})
        return
    ack()
    after_ack(context, decisions.record_after_ack, services, rejection)


def on_reassign_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
) -> None:
    services = context["services"]
    assignee = _value(view, ASSIGNEE_BLOCK, ASSIGNEE_ACTION).get("selected_user")
    if not assignee:
        ack(response_action="errors", errors={ASSIGNEE_BLOCK: "Pick the rep who takes the lead."})
        return
    try:
        reassignment = decisions.check_reassignment(
            services,
            view.get("private_metadata"),
            body["user"]["id"],
            to_user_id=assignee,
        )
    except Refused as refusal:
        ack(response_action="errors", errors={ASSIGNEE_BLOCK: str(refusal)})
        return
    ack()
    after_ack(context, decisions.record_after_ack, services, reassignment)


def on_snooze_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
) -> None:
    services = context["services"]
    value = (_value(view, LENGTH_BLOCK, LENGTH_ACTION).get("selected_option") or {}).get("value")
    why = _value(view, WHY_BLOCK, WHY_ACTION).get("value")
    problems = snooze.snooze_problems(services.definition, value, why)
    if problems:
        ack(response_action="errors", errors=problems)
        return
    try:
        pending = snooze.check_snooze(
            services, view.get("private_metadata"), body["user"]["id"], value=value, why=why
        )
    except Refused as refusal:
        ack(response_action="errors", errors={LENGTH_BLOCK: str(refusal)})
        return
    ack()
    after_ack(context, snooze.record_after_ack, services, pending)


def on_dispute_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
) -> None:
    services = context["services"]
    note = _value(view, DISPUTE_NOTE_BLOCK, DISPUTE_NOTE_ACTION).get("value")
    try:
        pending = disputes.check_dispute(
            services, view.get("private_metadata"), body["user"]["id"], note=note
        )
    except Refused as refusal:
        ack(response_action="errors", errors={DISPUTE_NOTE_BLOCK: str(refusal)})
        return
    ack()
    after_ack(context, disputes.record_after_ack, services, pending)


def on_decline_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], context: BoltContext
) -> None:
    services = context["services"]
    note = _value(view, DECLINE_NOTE_BLOCK, DECLINE_NOTE_ACTION).get("value")
    try:
        declined = governance.check_decline(
            services, view.get("private_metadata"), body["user"]["id"], note
        )
    except Refused as refusal:
        ack(response_action="errors", errors={DECLINE_NOTE_BLOCK: str(refusal)})
        return
    ack()
    after_ack(context, governance.decline, services, declined)


def register(app: App) -> None:
    app.view(REJECT_VIEW)(on_reject_submitted)
    app.view(REASSIGN_VIEW)(on_reassign_submitted)
    app.view(SNOOZE_VIEW)(on_snooze_submitted)
    app.view(DISPUTE_VIEW)(on_dispute_submitted)
    app.view(DECLINE_VIEW)(on_decline_submitted)
