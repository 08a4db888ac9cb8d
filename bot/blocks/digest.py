"""The digest as a Slack message: one section per part, inside Slack's limits.

The sections are plain text (the terminal prints them as they are); lead data
in them (companies, sources, campaigns) is escaped here, on the way to Slack.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.blocks.common import (
    Block,
    Mrkdwn,
    button,
    header,
    limit_blocks,
    md,
    message_text,
    section,
)
from bot.blocks.disputes import DISPUTE

REJECTIONS = "Why sales rejected"
DISPUTABLE = 15  # examples with a Dispute button: the message keeps under 50 blocks


def digest_blocks(
    sections: list[tuple[str, str]], disputable: Sequence[tuple[str, int]] = ()
) -> list[Block]:
    """The sections; after the rejections, each example (text, handoff id) with a Dispute
    button for the marketing owner (bot/disputes.py checks who clicks)."""
    (title, summary), *parts = sections
    blocks = [header(title), section(summary)]
    for part_title, body in parts:
        blocks.append(section(md("*{}*\n{}", part_title, body)))
        if part_title == REJECTIONS:
            blocks += _examples(disputable)
    return limit_blocks(blocks)


def _examples(disputable: Sequence[tuple[str, int]]) -> list[Block]:
    blocks = []
    for text, handoff_id in disputable[:DISPUTABLE]:
        block = section(md("e.g. {}", text))
        block["accessory"] = button("Dispute", DISPUTE, str(handoff_id))
        blocks.append(block)
    return blocks


def digest_fallback(sections: list[tuple[str, str]]) -> Mrkdwn:
    """The message's top-level text: every section, escaped, cut to fit."""
    return message_text(Mrkdwn("\n\n").join(md("{}\n{}", t, b) for t, b in sections), 3000)
