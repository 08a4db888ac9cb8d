"""What `/handoff` answers: help, your queue, the definition, a week's numbers, one lead."""

from __future__ import annotations

from typing import Any

from bot import clock
from bot.digest import build_digest, digest_sections, window_for
from bot.explain import describe_definition
from bot.history import lead_story, render_story
from bot.home import my_queue

HELP = """*Handoff* — one shared definition of a qualified lead.
`/handoff queue` your open leads and their time left
`/handoff definition` the definition in plain words
`/handoff stats [2026-W47]` this week's (or that week's) handoff numbers
`/handoff lead ID` everything that happened to one lead"""


def answer(services: Any, user_id: str, text: str) -> str:
    command, _, rest = text.strip().partition(" ")
    rest = rest.strip()
    if command == "queue":
        items = my_queue(services, user_id)
        return (
            "\n".join(f"• *{i.company}*: {i.timing}" for i in items) or "Nothing waiting for you."
        )
    if command == "definition":
        return describe_definition(services.definition)
    if command == "stats":
        try:
            window = window_for(services.definition, clock.now(), rest or None)
        except ValueError as exc:
            return str(exc)
        title, summary = digest_sections(build_digest(services.db, services.definition, window))[0]
        return f"*{title}*\n{summary}"
    if command == "lead":
        story = lead_story(services.db, rest) if rest else None
        return f"```{render_story(*story)}```" if story else f"No lead with id '{rest}'."
    return HELP
