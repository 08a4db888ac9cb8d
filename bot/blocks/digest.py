"""The digest as a Slack message: one section per part, inside Slack's limits."""

from __future__ import annotations

from bot.blocks.common import Block, escape, header, limit_blocks, section


def digest_blocks(sections: list[tuple[str, str]]) -> list[Block]:
    (title, summary), *parts = sections
    blocks = [header(title), section(escape(summary))]
    for part_title, body in parts:
        blocks.append(section(f"*{escape(part_title)}*\n{escape(body)}"))
    return limit_blocks(blocks)
