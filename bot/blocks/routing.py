"""Messages of routing to managers: a lead held at the daily caps, a rep gone away,
a lead moved on after a breach, and a lead nobody in the pool is left to take.

Each one that asks the manager to act reuses the card's Reassign button (the
reassign modal), so assigning is one flow wherever it starts.
"""

from __future__ import annotations

from bot.blocks.card import OPEN_CARD, REASSIGN
from bot.blocks.common import Block, Mrkdwn, actions, button, context, md, section

AWAY_REASSIGN = "handoff_away_reassign"


def held_text(company: str, why: str) -> Mrkdwn:
    return md("📥 *{}* qualified, but nobody in its pool can take it today: {}.", company, why)


def held_blocks(handoff_id: int, company: str, summary: str, why: str) -> list[Block]:
    """To the pool's manager: assign the held lead (the reassign modal)."""
    blocks = [section(held_text(company, why))]
    if summary:
        blocks.append(section(summary))
    blocks.append(
        actions(
            button("Assign", REASSIGN, str(handoff_id), style="primary"),
            block_id="held",
        )
    )
    blocks.append(context("Pick the rep who takes it; their response clock starts then."))
    return blocks


def away_text(rep: Mrkdwn, until: Mrkdwn, count: int) -> Mrkdwn:
    leads = "1 open lead" if count == 1 else f"{count} open leads"
    return md("🌴 {} is away {}, with {}.", rep, until, leads)


def away_blocks(rep: Mrkdwn, rep_email: str, until: Mrkdwn, count: int) -> list[Block]:
    """To the away rep's manager: one click sends their open leads through routing."""
    blocks = [section(away_text(rep, until, count))]
    if count:
        label = "Reassign 1 open lead" if count == 1 else f"Reassign {count} open leads"
        blocks.append(
            actions(button(label, AWAY_REASSIGN, rep_email, style="primary"), block_id="away")
        )
        blocks.append(context("Each goes to the next rep of its pool, with a fresh clock."))
    return blocks


def moved_text(company: str, old: Mrkdwn, new: Mrkdwn, when: str) -> Mrkdwn:
    return md(
        "↪️ *{}* had no decision from {} by {} of its response time: it moved to {} "
        "with a fresh clock.",
        company,
        old,
        when,
        new,
    )


def stuck_text(company: str, owner: Mrkdwn, when: str) -> Mrkdwn:
    return md(
        "🚨 *{}* has had no decision from {} by {} of its response time, and nobody else "
        "in its pool is left to take it: please decide who does.",
        company,
        owner,
        when,
    )


def stuck_blocks(handoff_id: int, text: Mrkdwn, link: str | None) -> list[Block]:
    elements = [button("Reassign", REASSIGN, str(handoff_id), style="primary")]
    if link:
        elements.append(button("Open the card", OPEN_CARD, str(handoff_id), url=link))
    return [section(text), actions(*elements, block_id="stuck")]
