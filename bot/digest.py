"""The weekly alignment digest (placeholder until the digest work lands)."""

from __future__ import annotations

from bot.services import Services


def run_scheduled(services: Services) -> None:
    return None


def catch_up(services: Services) -> None:
    return None
