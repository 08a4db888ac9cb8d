"""The App Home tab: a rep's queue with buttons, a manager's team view, the definition."""

from __future__ import annotations

from bot.blocks.card import ACCEPT, REASSIGN, REJECT, snoozed_line
from bot.blocks.common import (
    VIEW_BLOCKS,
    Block,
    Mrkdwn,
    actions,
    button,
    context,
    divider,
    header,
    md,
    mention,
    section,
)
from bot.home import PAGE, QueueItem

HOME_PAGE = "home_page"


def _queue(items: list[QueueItem], page: int, *, name: str, buttons: bool) -> list[Block]:
    """One queue's page. Block ids carry the queue's `name`: Slack refuses a view in
    which two blocks share an id, and one handoff can be in both queues."""
    shown = items[page * PAGE : (page + 1) * PAGE]
    blocks: list[Block] = []
    seen: set[int] = set()
    for item in shown:
        if item.handoff_id in seen:
            continue
        seen.add(item.handoff_id)
        mark = "🔴" if item.breached else "🟢"
        owner = (
            md(" · {}", mention(item.owner_user_id)) if item.owner_user_id and not buttons else ""
        )
        text = md("{} *{}*{}\n{}", mark, item.company, owner, item.timing)
        if item.snoozed_until is not None:
            text += Mrkdwn("\n") + snoozed_line(item.snoozed_until, item.snooze_why, None)
        blocks.append(section(text))
        value = str(item.handoff_id)
        elements = (
            [
                button("Accept", ACCEPT, value, style="primary"),
                button("Reject", REJECT, value, style="danger"),
            ]
            if buttons
            else []
        )
        elements.append(button("Reassign", REASSIGN, value))
        blocks.append(actions(*elements, block_id=f"home-{name}-{item.handoff_id}"))
    if len(items) > (page + 1) * PAGE:
        blocks.append(
            actions(
                button(
                    f"Show more ({len(items) - (page + 1) * PAGE} left)", HOME_PAGE, str(page + 1)
                ),
                block_id=f"home-{name}-more",
            )
        )
    return blocks


def home_view(
    *, mine: list[QueueItem], team: list[QueueItem], definition_text: str, page: int = 0
) -> Block:
    blocks: list[Block] = [header("Your open leads")]
    blocks += _queue(mine, page, name="mine", buttons=True) or [
        section("Nothing waiting for you. 🎉")
    ]
    if team:
        breached = sum(item.breached for item in team)
        blocks += [
            divider(),
            header("Your team"),
            context(f"{len(team)} open · {breached} past the response time"),
        ]
        blocks += _queue(team, page, name="team", buttons=False)
    blocks += [divider(), header("The definition we agreed"), section(definition_text)]
    return {"type": "home", "blocks": blocks[:VIEW_BLOCKS]}
