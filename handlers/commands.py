"""`/handoff help | queue | definition | stats [week] | lead ID`, answered ephemerally."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.blocks.common import message_text
from bot.slash import ANSWER_LIMIT, answer


def on_handoff(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
    text = answer(context["services"], command["user_id"], command.get("text", ""))
    ack(text=message_text(text, ANSWER_LIMIT))


def register(app: App) -> None:
    app.command("/handoff")(on_handoff)
