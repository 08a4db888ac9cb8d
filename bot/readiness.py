"""Is this process ready for traffic? And does Slack accept our token?

`handoff run` calls `check_slack` before it serves: a token Slack refuses, or
one missing a scope the app needs, stops the start with one line (a wrong
token must not look healthy and then fail every DM). A network error is not
the token's fault: the app starts, `SlackWatch` keeps asking in the background,
and `/readyz` answers 503 until Slack has said yes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

logger = logging.getLogger(__name__)

# The bot scopes of app_manifest.yml: every one is used (see the manifest's comments).
REQUIRED_SCOPES = ("chat:write", "chat:write.public", "commands", "users:read", "users:read.email")
# auth.test errors that say the token itself is wrong: retrying cannot help.
REFUSED = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"}
)


@dataclass(frozen=True)
class SlackCheck:
    ok: bool
    problem: str | None = None
    fatal: bool = False  # the token is refused or lacks scopes: stop, don't retry
    warning: str | None = None
    team: str | None = None


def check_slack(client: WebClient) -> SlackCheck:
    """Ask Slack who we are (auth.test) and compare the granted scopes with ours."""
    try:
        response = client.auth_test()
    except SlackApiError as exc:
        error = str(exc.response.get("error") or exc.response.status_code)
        if error in REFUSED:
            return SlackCheck(
                False, f"SLACK_BOT_TOKEN: Slack refused the token ({error})", fatal=True
            )
        return SlackCheck(False, f"Slack auth.test failed ({error}); retrying")
    except Exception as exc:  # noqa: BLE001 - network trouble of any kind: retry later
        return SlackCheck(False, f"Slack unreachable ({type(exc).__name__}); retrying")
    team = response.get("team")
    header = _header(response.headers, "x-oauth-scopes")
    if header is None:
        return SlackCheck(
            True,
            warning="Slack did not say which scopes the token has (no X-OAuth-Scopes header, "
            "a proxy?); not checking them",
            team=team,
        )
    granted = {scope.strip() for scope in header.split(",") if scope.strip()}
    missing = [scope for scope in REQUIRED_SCOPES if scope not in granted]
    if missing:
        return SlackCheck(
            False,
            f"SLACK_BOT_TOKEN: the token lacks the scope(s) {', '.join(missing)}; add them "
            "under OAuth & Permissions (or recreate the app from app_manifest.yml) and reinstall",
            fatal=True,
        )
    return SlackCheck(True, team=team)


def _header(headers: dict[str, Any], name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value[0] if isinstance(value, list) else str(value)
    return None


class SlackWatch:
    """Holds Slack's last answer to auth.test; retries in the background until yes."""

    UNCHECKED = "Slack has not been asked about the token yet"

    def __init__(self, check: Callable[[], SlackCheck], *, retry_seconds: float = 5.0) -> None:
        self._check = check
        self.retry_seconds = retry_seconds
        self.state = SlackCheck(False, self.UNCHECKED)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_now(self) -> SlackCheck:
        """Ask Slack once. Says nothing: `handoff run` asks before its first log line (a
        refused token is its one line on stderr); `start` reports the answer after it."""
        self.state = self._check()
        return self.state

    def start(self) -> None:
        """Log Slack's answer (asking first if nobody has) and, unless Slack said yes or
        refused the token, keep asking in the background until it says yes."""
        if self.state.problem == self.UNCHECKED:
            self.check_now()
        if self.state.ok:
            self._accepted()
        elif self.state.fatal:
            logger.error("%s", self.state.problem)
        else:
            logger.warning("%s", self.state.problem)
            self._thread = threading.Thread(
                target=self._retry, name="slack-auth-check", daemon=True
            )
            self._thread.start()

    def _accepted(self) -> None:
        if self.state.warning:
            logger.warning("%s", self.state.warning)
        logger.info("Slack accepted the token (team %s)", self.state.team)

    def _retry(self) -> None:
        while not self._stop.wait(self.retry_seconds):
            if self.check_now().ok:
                self._accepted()
                return
            if self.state.fatal:
                logger.error("%s", self.state.problem)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
