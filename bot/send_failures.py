"""What a failed send means: wait and try again, keep trying, or give up.

Senders raise `Retry`, `Permanent` or `Unavailable` when they know; `classify`
sorts what Slack, the network and HTTP clients raise into the same three, and
leaves any other exception as it is (an unknown failure: the outbox retries it
with backoff, then gives up).
"""

from __future__ import annotations

import http.client
from datetime import timedelta

import httpx
from slack_sdk.errors import SlackApiError

# Slack errors about Slack, not about the message: it may work in a minute.
SLACK_UNAVAILABLE = frozenset(
    {"fatal_error", "internal_error", "service_unavailable", "request_timeout"}
)
# Slack refusing the app itself: nothing goes out until the token or the scopes are
# fixed (and the app restarted), so the messages wait for that rather than fail.
SLACK_APP_REFUSED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "team_access_not_granted",
        "ekm_access_denied",
        "org_login_required",
    }
)
# Slack refusing this message for good, with what it means to the reader of
# `handoff lead ID` (users_not_found is the directory's, handled there).
SLACK_REFUSED = {
    "user_not_found": "no such user in Slack",
    "user_not_visible": "the app cannot see this user",
    "account_inactive": "the account is deactivated",
    "user_disabled": "the user's account is deactivated",
    "cannot_dm_bot": "the recipient is a bot",
    "channel_not_found": "no such channel, or the app cannot see it",
    "is_archived": "the channel is archived",
    "not_in_channel": "the app is not in the channel",
    "restricted_action": "a workspace setting stops the app posting there",
    "messages_tab_disabled": "the user turned off messages from apps",
    "invalid_blocks": "Slack refused the message's blocks",
    "invalid_blocks_format": "Slack refused the message's blocks",
    "msg_too_long": "the message is too long",
    "no_text": "the message has no text",
    "message_not_found": "the message to update was deleted",
    "cant_update_message": "the message cannot be updated",
    "edit_window_closed": "the message can no longer be edited",
}
# slack-sdk's error text for a body that is not JSON (a proxy's or load balancer's page).
_NOT_JSON = "Received a response in a non-JSON format"


class Retry(Exception):  # noqa: N818 - it is an instruction, not an error
    def __init__(self, after: timedelta, why: str = "") -> None:
        super().__init__(why or f"retry in {after.total_seconds():.1f}s")
        self.after = after


class Permanent(Exception):  # noqa: N818
    pass


class Unavailable(Exception):  # noqa: N818
    """The service is down or unreachable: the message waits for it, however long."""


def classify(exc: Exception) -> Exception:
    """Slack's errors and network failures as Retry, Permanent or Unavailable; any
    other exception as it is (an unknown failure: retried, then given up)."""
    if isinstance(exc, SlackApiError):
        return _slack_failure(exc)
    if isinstance(exc, OSError | http.client.HTTPException | httpx.TransportError):
        # OSError covers urllib's URLError, refused and reset connections, timeouts.
        return Unavailable(f"unreachable: {type(exc).__name__}: {exc}")
    return exc


def _slack_failure(exc: SlackApiError) -> Exception:
    after = slack_retry_after(exc)
    if after is not None:
        return Retry(after, "rate limited by Slack")
    status = exc.response.status_code
    error = str(exc.response.get("error") or "")
    if status >= 500 or error in SLACK_UNAVAILABLE or error.startswith(_NOT_JSON):
        return Unavailable(f"Slack unavailable: HTTP {status} {error[:100]}")
    if error in SLACK_APP_REFUSED:
        return Unavailable(f"Slack refused the app ({error}): check SLACK_BOT_TOKEN and scopes")
    if error in SLACK_REFUSED:
        return Permanent(f"Slack refused it ({error}): {SLACK_REFUSED[error]}")
    return exc


def slack_retry_after(exc: SlackApiError) -> timedelta | None:
    """The Retry-After of a 429, when that is what this error is."""
    if exc.response.status_code != 429:
        return None
    value = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
    try:
        return timedelta(seconds=float(value[0] if isinstance(value, list) else value))
    except (TypeError, ValueError):
        return timedelta(seconds=1)
