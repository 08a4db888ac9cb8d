"""What `/handoff` answers: help, your queue, the definition, a week's numbers, one lead.

Answers are mrkdwn: lead data goes in through `md` and `code_block`, escaped.
"""

from __future__ import annotations

from typing import Any

from bot import away, clock
from bot.access import LEAD_REFUSED, NUMBERS_REFUSED, Viewer, may_see_lead, may_see_numbers
from bot.blocks.common import Mrkdwn, as_mrkdwn, code_block, md
from bot.digest import build_digest, digest_sections, window_for
from bot.explain import describe_definition
from bot.history import lead_story, render_story
from bot.home import my_queue

# Slack shows up to 3000 characters of a command's answer.
ANSWER_LIMIT = 3000

HELP = Mrkdwn(
    """*Handoff* — one shared definition of a qualified lead.
`/handoff queue` your open leads and their time left
`/handoff definition` the definition in plain words
`/handoff stats [2026-W47]` this week's (or that week's) handoff numbers
`/handoff lead ID` everything that happened to one lead
`/handoff dispute LEAD NOTE` marketing disputes the lead's rejection (the rep's manager decides)
`/handoff away [until 2026-12-01]` routing skips you (until that day)
`/handoff back` routing sends you leads again"""
)


def dispute_sent() -> Mrkdwn:
    """The answer to `/handoff dispute` once checked (it is written after the ack)."""
    return Mrkdwn("Dispute sent to the rep's manager. You will hear the outcome here in a DM.")


def answer(services: Any, user_id: str, text: str) -> Mrkdwn:
    command, _, rest = text.strip().partition(" ")
    rest = rest.strip()
    if command == "queue":
        items = my_queue(services, user_id)
        return Mrkdwn("\n").join(md("• *{}*: {}", i.company, i.timing) for i in items) or Mrkdwn(
            "Nothing waiting for you."
        )
    if command == "definition":
        return as_mrkdwn(describe_definition(services.definition))
    if command == "stats":
        if not may_see_numbers(services, Viewer(services, user_id)):
            return as_mrkdwn(NUMBERS_REFUSED)
        try:
            window = window_for(services.definition, clock.now(), rest or None)
        except ValueError as exc:
            return as_mrkdwn(str(exc))
        title, summary = digest_sections(build_digest(services.db, services.definition, window))[0]
        return md("*{}*\n{}", title, summary)
    if command in ("away", "back"):
        return _away(services, user_id, command, rest)
    if command == "lead":
        if not rest:
            return Mrkdwn("Which lead? `/handoff lead ID`")
        # The same answer for a lead that does not exist as for one you may not see.
        if not may_see_lead(services, Viewer(services, user_id), rest):
            return as_mrkdwn(LEAD_REFUSED)
        story = lead_story(services.db, rest)
        if story is None:  # removed in the meantime
            return as_mrkdwn(LEAD_REFUSED)
        return code_block(render_story(*story), ANSWER_LIMIT)
    return HELP


def _away(services: Any, user_id: str, command: str, rest: str) -> Mrkdwn:
    if command == "away":
        return away.go_away(services, user_id, rest)
    return away.come_back(services, user_id)
