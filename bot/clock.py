"""The one place Handoff reads the time (so freezegun can move it in tests)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
