"""`/handoff help | queue | definition | stats [week] | lead ID`, answered ephemerally."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.slash import answer


def on_handoff(ack: Ack, command: dict[str, Any], context: BoltContext) -> None:
    ack(text=answer(context["services"], command["user_id"], command.get("text", ""))[:3000])


def register(app: App) -> None:
    app.command("/handoff")(on_handoff)
