"""HMAC signatures for Handoff's own HTTP traffic: leads coming in, decisions going out.

The scheme mirrors Slack's request signing (`v0:{timestamp}:{body}`, hex
SHA-256), so a team that has verified Slack requests already knows how to
verify ours.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_WINDOW_SECONDS = 5 * 60


def unix_seconds(value: str) -> int | None:
    """A timestamp header as unix seconds, or None unless it is a few plain digits:
    int() also takes "1_000", other scripts' digits and thousands of digits, and a
    long one overflows the float arithmetic of the age check."""
    if 0 < len(value) <= 12 and value.isascii() and value.isdigit():
        return int(value)
    return None


def intake_signature(secret_value: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret_value.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return "v0=" + mac.hexdigest()


def verify_intake(
    secret_value: str, headers: dict[str, str], body: bytes, now: float
) -> str | None:
    """None when the request is genuine, else why not."""
    timestamp = headers.get("x-handoff-timestamp", "")
    signature = headers.get("x-handoff-signature", "")
    if not timestamp or not signature:
        return "missing X-Handoff-Timestamp or X-Handoff-Signature"
    sent_at = unix_seconds(timestamp)
    if sent_at is None:
        return "X-Handoff-Timestamp is not unix seconds"
    if abs(now - sent_at) > SIGNATURE_WINDOW_SECONDS:
        return "X-Handoff-Timestamp is more than 5 minutes from now"
    if not hmac.compare_digest(intake_signature(secret_value, timestamp, body), signature):
        return "bad signature"
    return None
