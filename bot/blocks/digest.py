"""The digest as a Slack message: one section per part, inside Slack's limits.

The sections are plain text (the terminal prints them as they are); lead data
in them (companies, sources, campaigns) is escaped here, on the way to Slack.
"""

from __future__ import annotations

from bot.blocks.common import Block, Mrkdwn, header, limit_blocks, md, message_text, section


def digest_blocks(sections: list[tuple[str, str]]) -> list[Block]:
    (title, summary), *parts = sections
    blocks = [header(title), section(summary)]
    for part_title, body in parts:
        blocks.append(section(md("*{}*\n{}", part_title, body)))
    return limit_blocks(blocks)


def digest_fallback(sections: list[tuple[str, str]]) -> Mrkdwn:
    """The message's top-level text: every section, escaped, cut to fit."""
    return message_text(Mrkdwn("\n\n").join(md("{}\n{}", t, b) for t, b in sections), 3000)
