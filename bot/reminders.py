"""SLA reminders and escalations (placeholder until the response-clock work lands)."""

from __future__ import annotations

from bot.services import Services


def sweep(services: Services) -> int:
    return 0
