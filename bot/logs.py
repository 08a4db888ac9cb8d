"""Logging: `LOG_LEVEL`, `LOG_FORMAT=text|json`, quiet libraries, no secrets.

One line per lead event (received, handed off, delivered, decided, reminded,
escalated, reassigned, written back) comes from `lead_event`, always with the
lead's id, so `grep crm-123` (or a JSON query on `lead_id`) tells one lead's
story. Libraries speak only at WARNING unless LOG_LEVEL=DEBUG. Every record
goes through `Redact`, which masks Slack tokens and the configured secrets
wherever they appear, and drops the request body Bolt puts in its
"invalid signature" line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

EVENTS = logging.getLogger("handoff.leads")

# Chatty at INFO: a line per scheduler tick, per HTTP connection, per Socket Mode frame.
_QUIET = (
    "apscheduler",
    "slack_bolt",
    "slack_sdk",
    "httpx",
    "httpcore",
    "urllib3",
    "waitress",
    "websocket",
)
_TOKEN = re.compile(r"\b(xox[abeoprs]|xapp)-[A-Za-z0-9-]+")
_BOLT_BODY = re.compile(r"Invalid request signature detected.*", re.DOTALL)
# Bolt reads SLACK_BOT_TOKEN from the environment itself, then warns that the client we
# give it wins; which is what we want, so the warning would only mislead.
_NOISE = frozenset({"As you gave `client` as well, `token` will be unused."})
# Attributes every LogRecord has; anything else was passed as `extra=` and goes into JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class Redact(logging.Filter):
    """Masks tokens and secrets in the message and its traceback; never drops a line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.clean(
            _BOLT_BODY.sub("Invalid request signature detected (details withheld)", message)
        )
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_text is None:
            # Format the traceback once here, so the masking covers it too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True

    def clean(self, text: str) -> str:
        text = _TOKEN.sub(lambda m: f"{m.group(1)}-***", text)
        for value in self.secrets:
            text = text.replace(value, "***")
        return text


class DropNoise(logging.Filter):
    """Drops the few library lines that are wrong or useless for this app."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name.startswith("slack_bolt")
            and isinstance(record.msg, str)
            and record.msg in _NOISE
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str)


def configure(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Set up the root logger for a process (idempotent: replaces earlier handlers)."""
    handler = logging.StreamHandler()
    handler.addFilter(DropNoise())
    handler.addFilter(Redact(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    library_level = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for name in _QUIET:
        logging.getLogger(name).setLevel(library_level)


_CONTROL = {code: "?" for code in (*range(32), 127)}


def lead_event(lead_id: str, event: str, message: str = "", **fields: Any) -> None:
    """One line for one thing that happened to one lead (a lead id is data from outside:
    control characters are replaced, so an id cannot forge a second log line)."""
    lead_id = lead_id.translate(_CONTROL)
    text = f"lead {lead_id} {event}" + (f": {message}" if message else "")
    EVENTS.info(text, extra={"lead_id": lead_id, "event": event, **fields})
