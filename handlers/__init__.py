"""Bolt listeners, registered per kind. Each stays thin: ack, parse, call bot/."""

from __future__ import annotations

from slack_bolt import App

from handlers import actions, commands, events, views


def register(app: App) -> None:
    actions.register(app)
    views.register(app)
    commands.register(app)
    events.register(app)
