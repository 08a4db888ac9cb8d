"""Small Block Kit pieces, and Slack's size limits in one place.

Every builder in `bot.blocks` goes through these, so a long company name or
note is cut with an ellipsis instead of failing the API call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

SECTION_TEXT = 3000
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
OPTION_TEXT = 75
OPTION_VALUE = 150
GROUP_OPTIONS = 100  # options in one option group of a select menu
CHECKBOX_OPTIONS = 10
CONTEXT_TEXT = 3000
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
MODAL_TITLE = 24
PRIVATE_METADATA = 3000
FALLBACK_TEXT = 4000

Block = dict[str, Any]


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str | None) -> str:
    """Escape the three characters mrkdwn treats as control characters."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def mrkdwn(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, HEADER_TEXT)}


def section(text: str, *, block_id: str | None = None, accessory: Block | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if block_id:
        block["block_id"] = block_id
    if accessory:
        block["accessory"] = accessory
    return block


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t, CONTEXT_TEXT) for t in texts[:10]]}


def divider() -> Block:
    return {"type": "divider"}


def button(
    text: str, action_id: str, value: str, *, style: str | None = None, url: str | None = None
) -> Block:
    element: Block = {
        "type": "button",
        "text": plain(text, BUTTON_TEXT),
        "action_id": action_id,
        "value": clip(value, BUTTON_VALUE),
    }
    if style:
        element["style"] = style
    if url:
        element["url"] = url
    return element


def actions(*elements: Block, block_id: str) -> Block:
    return {"type": "actions", "block_id": block_id, "elements": list(elements)}


def option(text: str, value: str, description: str | None = None) -> Block:
    opt: Block = {"text": plain(text, OPTION_TEXT), "value": clip(value, OPTION_VALUE)}
    if description:
        opt["description"] = plain(description, OPTION_TEXT)
    return opt


def local_time(at: datetime, tz: str | None) -> str:
    """'Mon 24 Nov, 12:00 AEDT' in the reader's zone (UTC when unknown)."""
    zone = ZoneInfo(tz) if tz else ZoneInfo("UTC")
    local = at.astimezone(zone)
    return local.strftime("%a %d %b, %H:%M ") + (local.tzname() or "")


def slack_date(at: datetime, fallback: str) -> str:
    """Slack renders this in each reader's own time zone."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def limit_blocks(blocks: list[Block], limit: int = MESSAGE_BLOCKS) -> list[Block]:
    if len(blocks) <= limit:
        return blocks
    return [*blocks[: limit - 1], context("…more not shown")]
