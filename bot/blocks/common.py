"""Small Block Kit pieces, Slack's size limits, and the one place data becomes markup.

Every builder in `bot.blocks` goes through these, so a long company name or
note is cut with an ellipsis instead of failing the API call, and text that
came from outside (a lead's company, a rep's note) can never act as Slack
markup: `<!channel>` is shown, not sent as a ping, and `<https://x|y>` is not a
link. The rule is one type, `Mrkdwn`:

- A `Mrkdwn` value is markup we wrote, with any data in it already escaped.
  Make one with `md("*{}* is waiting", company)`: the template is ours, every
  value formatted into it is escaped (unless it is `Mrkdwn` itself, such as a
  `mention()`). `+` and `.join` on a `Mrkdwn` escape plain strings the same way.
- Escaping turns `&`, `<`, `>` into entities (Slack's rule) and a backtick into
  a look-alike, so data cannot open or close a code span or block.
- Everything that takes mrkdwn (`section`, `context`, `mrkdwn`, and a message's
  top-level text through `message_text`) escapes a plain `str`. So a caller
  that forgets shows `&lt;` to the reader instead of pinging a channel.
- `plain_text` objects (headers, buttons, options) take raw text: Slack renders
  no markup there.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
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


class Mrkdwn(str):
    """Slack markup that is safe to send: ours, with every piece of data escaped.

    Like markupsafe's `Markup` for HTML: `+` and `join` escape a plain `str`.
    An f-string gives a plain `str` back, which a builder then escapes whole, so
    compose with `md()`, `+` or `join` instead.
    """

    __slots__ = ()

    def __add__(self, other: str) -> Mrkdwn:
        return Mrkdwn(str.__add__(self, as_mrkdwn(other)))

    def __radd__(self, other: str) -> Mrkdwn:
        return Mrkdwn(str.__add__(as_mrkdwn(other), self))

    def join(self, parts: Iterable[str]) -> Mrkdwn:
        return Mrkdwn(str.join(self, (as_mrkdwn(part) for part in parts)))


# A backtick in data could open a code span or block that swallows the rest of the
# message (or close the one it is shown in): data gets a look-alike instead.
_BACKTICK = str.maketrans({"`": "ˋ"})


def as_mrkdwn(value: object) -> Mrkdwn:
    """Markup as it is; anything else is data, escaped (None is empty)."""
    if isinstance(value, Mrkdwn):
        return value
    return Mrkdwn(escape("" if value is None else str(value)).translate(_BACKTICK))


class _EscapingFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        formatted = format(value, format_spec)
        return formatted if isinstance(value, Mrkdwn) else as_mrkdwn(formatted)


_FORMATTER = _EscapingFormatter()


def md(template: str, /, *args: Any, **kwargs: Any) -> Mrkdwn:
    """`template` (markup we wrote) with every value escaped into it: `md("*{}*", company)`."""
    return Mrkdwn(_FORMATTER.format(template, *args, **kwargs))


_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def mention(user_id: str | None) -> Mrkdwn:
    """`<@U123>`, which Slack shows as the person's name; anything else is shown as text."""
    if user_id and _USER_ID.fullmatch(user_id):
        return Mrkdwn(f"<@{user_id}>")
    return as_mrkdwn(user_id or "someone")


def code(text: str) -> Mrkdwn:
    """Data in an inline code span (which its backticks, escaped, cannot end)."""
    tick = Mrkdwn("`")
    return tick + as_mrkdwn(str(text)) + tick


def code_block(text: str, limit: int = SECTION_TEXT) -> Mrkdwn:
    """Data in a code block that it cannot close, cut to fit with its fence intact."""
    fence = Mrkdwn("```")
    return fence + clip_mrkdwn(as_mrkdwn(str(text)), limit - 6) + fence


# An entity or a <...> cut in half by clipping would show as debris, or open a link.
_CUT_MARKUP = re.compile(r"&[a-z]{0,4}$|<[^>]*$")


def clip_mrkdwn(text: Mrkdwn, limit: int) -> Mrkdwn:
    """`clip` for markup: never ends inside an entity or a `<...>` token."""
    if len(text) <= limit:
        return text
    return Mrkdwn(_CUT_MARKUP.sub("", text[: limit - 1]) + "…")


def message_text(text: str | Mrkdwn, limit: int = FALLBACK_TEXT) -> Mrkdwn:
    """A message's top-level `text` (notification and screen-reader text): mrkdwn too."""
    return clip_mrkdwn(as_mrkdwn(text), limit)


def plain(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def mrkdwn(text: str | Mrkdwn, limit: int = SECTION_TEXT) -> dict[str, Any]:
    """A mrkdwn text object; a plain `str` is data and is escaped."""
    return {"type": "mrkdwn", "text": clip_mrkdwn(as_mrkdwn(text), limit)}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, HEADER_TEXT)}


def section(
    text: str | Mrkdwn, *, block_id: str | None = None, accessory: Block | None = None
) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if block_id:
        block["block_id"] = block_id
    if accessory:
        block["accessory"] = accessory
    return block


def context(*texts: str | Mrkdwn) -> Block:
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


def slack_date(at: datetime, fallback: str) -> Mrkdwn:
    """Slack renders this in each reader's own time zone."""
    return md("<!date^{}^{{date_short_pretty}} {{time}}|{}>", int(at.timestamp()), fallback)


def limit_blocks(blocks: list[Block], limit: int = MESSAGE_BLOCKS) -> list[Block]:
    if len(blocks) <= limit:
        return blocks
    return [*blocks[: limit - 1], context("…more not shown")]
