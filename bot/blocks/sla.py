"""Messages of the response clock: the rep's nudge and the manager's escalation."""

from __future__ import annotations

from bot.blocks.card import OPEN_CARD, REASSIGN
from bot.blocks.common import Block, actions, button, context, escape, limit_blocks, section


def nudge_text(company: str, link: str | None, timing: str) -> str:
    name = f"<{link}|{escape(company)}>" if link else f"*{escape(company)}*"
    return f"⏰ {name} is waiting for your decision: {timing}."


def nudge_blocks(company: str, link: str | None, timing: str, late_note: str) -> list[Block]:
    blocks = [section(nudge_text(company, link, timing))]
    if late_note:
        blocks.append(context(late_note))
    return blocks


def escalation_blocks(
    *,
    handoff_id: int,
    company: str,
    summary: str,
    owner: str,
    timing: str,
    link: str | None,
    late_note: str,
    with_buttons: bool,
) -> list[Block]:
    blocks = [
        section(f"🚨 *{escape(company)}* has had no decision from {owner}: {timing}."),
        section(escape(summary)),
    ]
    if with_buttons:
        elements = [button("Reassign", REASSIGN, str(handoff_id), style="primary")]
        if link:
            elements.append(button("Open the card", OPEN_CARD, str(handoff_id), url=link))
        blocks.append(actions(*elements, block_id="escalation"))
    if late_note:
        blocks.append(context(late_note))
    return limit_blocks(blocks)
