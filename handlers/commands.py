"""`/handoff help | queue | definition | stats [week] | lead ID | dispute LEAD NOTE`,
answered ephemerally."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot import disputes
from bot.blocks.common import message_text
from bot.decisions import Refused
from bot.slash import ANSWER_LIMIT, answer, dispute_sent
from handlers.after_ack import after_ack


def on_handoff(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
    text = command.get("text", "")
    if text.strip().partition(" ")[0] == "dispute":
        on_dispute(ack, command, context, text.strip().partition(" ")[2])
        return
    ack(text=message_text(answer(context["services"], command["user_id"], text), ANSWER_LIMIT))


def on_dispute(ack: Ack, command: dict[str, Any], context: BoltContext, rest: str) -> None:
    """`/handoff dispute LEAD NOTE`: checked before the ack, written after it."""
    services = context["services"]
    try:
        pending = disputes.check_command(services, command["user_id"], rest)
    except Refused as refusal:
        ack(text=message_text(refusal.text, ANSWER_LIMIT))
        return
    ack(text=message_text(dispute_sent(), ANSWER_LIMIT))
    after_ack(context, disputes.record_after_ack, services, pending)


def register(app: App) -> None:
    app.command("/handoff")(on_handoff)
