"""Requests shaped like Slack's own: signed, form-encoded interactivity payloads,
slash commands and Events API callbacks."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode


def sign(
    body: str, secret: str, timestamp: int | None = None, *, retry_num: int | None = None
) -> dict[str, str]:
    """Slack's v0 request-signing headers for `body` (timestamp defaults to now); with
    `retry_num`, the headers Slack adds when it re-sends a request it got no ack for."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers


def _user(user_id: str, team_id: str) -> dict[str, str]:
    return {"id": user_id, "username": user_id.lower(), "name": user_id.lower(), "team_id": team_id}


def _form(payload: dict[str, Any]) -> str:
    """Interactivity payloads arrive as a form with one field, payload=<JSON>."""
    return urlencode({"payload": json.dumps(payload)})


def block_actions(
    *,
    user_id: str,
    action_id: str,
    value: str = "",
    channel: str = "DU0REP1",
    message_ts: str = "1700000000.000100",
    trigger_id: str = "1234.5678.abcd",
    block_id: str = "actions",
    state: dict[str, Any] | None = None,
    selected_user: str | None = None,
    team_id: str = "T0TEAM",
) -> str:
    """Form body ("payload=...") of a block_actions click on a button, or on a
    users_select when `selected_user` is given."""
    action_ts = f"{time.time():.6f}"
    if selected_user is not None:
        action = {
            "type": "users_select",
            "action_id": action_id,
            "block_id": block_id,
            "selected_user": selected_user,
            "action_ts": action_ts,
        }
    else:
        action = {
            "type": "button",
            "action_id": action_id,
            "block_id": block_id,
            "value": value,
            "text": {"type": "plain_text", "text": "Button"},
            "action_ts": action_ts,
        }
    return _form(
        {
            "type": "block_actions",
            "team": {"id": team_id, "domain": "test"},
            "user": _user(user_id, team_id),
            "api_app_id": "A0HANDOFF",
            "token": "legacy",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": trigger_id,
            "channel": {"id": channel, "name": "directmessage"},
            "message": {"type": "message", "ts": message_ts, "text": "New lead", "blocks": []},
            "state": {"values": state or {}},
            "response_url": f"https://hooks.slack.com/actions/{team_id}/1/x",
            "actions": [action],
        }
    )


def view_submission(
    *,
    user_id: str,
    callback_id: str,
    values: dict[str, Any],
    private_metadata: str = "",
    view_id: str = "V0001",
    team_id: str = "T0TEAM",
) -> str:
    """Form body ("payload=...") of a modal's view_submission."""
    return _form(
        {
            "type": "view_submission",
            "team": {"id": team_id, "domain": "test"},
            "user": _user(user_id, team_id),
            "api_app_id": "A0HANDOFF",
            "token": "legacy",
            "trigger_id": "5678.1234.efgh",
            "view": {
                "id": view_id,
                "team_id": team_id,
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "state": {"values": values},
                "hash": "1700000000.abcd",
                "title": {"type": "plain_text", "text": "Handoff"},
                "blocks": [],
                "app_id": "A0HANDOFF",
                "bot_id": "BBOT",
            },
            "response_urls": [],
        }
    )


def slash_command(
    *,
    user_id: str,
    text: str = "",
    command: str = "/handoff",
    channel_id: str = "C0GENERAL",
    team_id: str = "T0TEAM",
) -> str:
    """Form body of a slash command invocation."""
    return urlencode(
        {
            "token": "legacy",
            "team_id": team_id,
            "team_domain": "test",
            "channel_id": channel_id,
            "channel_name": "general",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0HANDOFF",
            "response_url": f"https://hooks.slack.com/commands/{team_id}/1/x",
            "trigger_id": "9012.3456.ijkl",
        }
    )


def event_callback(event: dict[str, Any], *, team_id: str = "T0TEAM") -> str:
    """JSON body of an Events API event_callback wrapping `event`."""
    return json.dumps(
        {
            "token": "legacy",
            "team_id": team_id,
            "api_app_id": "A0HANDOFF",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": team_id, "user_id": "UBOT", "is_bot": True}],
        }
    )
