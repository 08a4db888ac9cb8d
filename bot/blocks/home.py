"""The App Home tab: a rep's queue with buttons, a manager's team view, the definition."""

from __future__ import annotations

from bot.blocks.card import ACCEPT, REASSIGN, REJECT
from bot.blocks.common import (
    VIEW_BLOCKS,
    Block,
    actions,
    button,
    context,
    divider,
    escape,
    header,
    section,
)
from bot.home import PAGE, QueueItem

HOME_PAGE = "home_page"


def _queue(items: list[QueueItem], page: int, *, buttons: bool) -> list[Block]:
    shown = items[page * PAGE : (page + 1) * PAGE]
    blocks: list[Block] = []
    for item in shown:
        mark = "🔴" if item.breached else "🟢"
        owner = f" · <@{item.owner_user_id}>" if item.owner_user_id and not buttons else ""
        blocks.append(section(f"{mark} *{escape(item.company)}*{owner}\n{escape(item.timing)}"))
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
        blocks.append(actions(*elements, block_id=f"home-{item.handoff_id}"))
    if len(items) > (page + 1) * PAGE:
        blocks.append(
            actions(
                button(
                    f"Show more ({len(items) - (page + 1) * PAGE} left)", HOME_PAGE, str(page + 1)
                ),
                block_id="home-more",
            )
        )
    return blocks


def home_view(
    *, mine: list[QueueItem], team: list[QueueItem], definition_text: str, page: int = 0
) -> Block:
    blocks: list[Block] = [header("Your open leads")]
    blocks += _queue(mine, page, buttons=True) or [section("Nothing waiting for you. 🎉")]
    if team:
        breached = sum(item.breached for item in team)
        blocks += [
            divider(),
            header("Your team"),
            context(f"{len(team)} open · {breached} past the response time"),
        ]
        blocks += _queue(team, page, buttons=False)
    blocks += [divider(), header("The definition we agreed"), section(escape(definition_text))]
    return {"type": "home", "blocks": blocks[:VIEW_BLOCKS]}
