"""Messages of the response clock: the rep's nudge and the manager's escalation."""

from __future__ import annotations

from bot.blocks.card import OPEN_CARD, REASSIGN
from bot.blocks.common import (
    Block,
    Mrkdwn,
    actions,
    button,
    context,
    limit_blocks,
    md,
    message_text,
    section,
)


def nudge_text(company: str, link: str | None, timing: str) -> Mrkdwn:
    name = md("<{}|{}>", link, company) if link else md("*{}*", company)
    return md("⏰ {} is waiting for your decision: {}.", name, timing)


def escalation_text(company: str, owner: Mrkdwn, timing: str) -> Mrkdwn:
    """The escalation's notification text; `owner` is a mention or an escaped email."""
    return message_text(md("No decision on {} from {}: {}.", company, owner, timing))


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
    owner: Mrkdwn,
    timing: str,
    link: str | None,
    late_note: str,
    with_buttons: bool,
) -> list[Block]:
    blocks = [
        section(md("🚨 *{}* has had no decision from {}: {}.", company, owner, timing)),
        section(summary),
    ]
    if with_buttons:
        elements = [button("Reassign", REASSIGN, str(handoff_id), style="primary")]
        if link:
            elements.append(button("Open the card", OPEN_CARD, str(handoff_id), url=link))
        blocks.append(actions(*elements, block_id="escalation"))
    if late_note:
        blocks.append(context(late_note))
    return limit_blocks(blocks)
