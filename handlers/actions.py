"""Button, checkbox and picker clicks on handoff cards."""

from __future__ import annotations

from slack_bolt import Ack, App

from bot.blocks.card import COMMERCIAL


def on_commercial_tick(ack: Ack) -> None:
    # The ticks are read from the card's state when the rep decides.
    ack()


def register(app: App) -> None:
    app.action(COMMERCIAL)(on_commercial_tick)
