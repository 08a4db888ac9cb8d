"""`/handoff away [until DATE]` and `/handoff back`: routing skips a rep who is away.

Away ends by itself at the start of DATE (midnight in the definition's time zone):
routing compares `away_until` with the time it reads it, so no job has to run.
When away starts, the rep is told how many open leads they hold, and their manager
gets one button that sends all of them back through routing (bot/rerouting.py).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bot import clock
from bot.access import Viewer, manages
from bot.blocks.common import Mrkdwn, as_mrkdwn, code, md, mention
from bot.blocks.routing import away_blocks, away_text
from bot.cards import post_to_user
from bot.delivery import sender
from bot.rerouting import away_outcome, reassign_away
from bot.send_failures import Permanent
from bot.services import Services
from store import outbox
from store import routing as routing_store
from store.models import Handoff, HandoffStatus, Outbox

logger = logging.getLogger(__name__)

AWAY_NOTICE = "away_notice"
# The answer waits for this write (a slash command must be answered within 3 s).
WRITE_BUDGET_SECONDS = 2.0
BUSY = "The database is busy right now: nothing changed. Please try again in a moment."
NO_EMAIL = "I cannot find your email address in Slack, so I cannot tell routing about you."
USAGE = Mrkdwn("Use `/handoff away` or `/handoff away until 2026-12-01` (the day you are back).")


def parse_until(definition: Any, text: str, now: datetime) -> datetime | None:
    """`until 2026-12-01` (or the bare date) -> the start of that day in the definition's
    zone. ValueError with the sentence to show (before USAGE) when it is not a date
    after today."""
    words = text.split()
    if words and words[0].lower() == "until":
        words = words[1:]
    if not words:
        if text.strip():
            raise ValueError("Until when?")
        return None
    if len(words) > 1:
        raise ValueError(f"I could not read '{' '.join(words)}' as a date.")
    try:
        day = date.fromisoformat(words[0])
    except ValueError:
        raise ValueError(f"I could not read '{words[0]}' as a date.") from None
    tz = definition.timezone
    if day <= now.astimezone(tz).date():
        raise ValueError("Pick a day after today for your return.")
    return datetime.combine(day, time(0, 0), tzinfo=tz)


def _open_count(session: Any, email: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(Handoff)
        .where(Handoff.owner_email == email, Handoff.status == HandoffStatus.OPEN)
    )


def back_on(until: datetime | None) -> Mrkdwn:
    """`until Tue 01 Dec 2026` (the day they are back) / `until /handoff back`."""
    if until is None:
        return md("until {}", code("/handoff back"))
    return md("until {}", until.strftime("%a %d %b %Y"))


def go_away(services: Services, user_id: str, rest: str, *, now: datetime | None = None) -> Mrkdwn:
    """Mark the rep away (until a date); their manager gets the one-click reassign."""
    now = now or clock.now()
    definition = services.definition
    try:
        until = parse_until(definition, rest, now)
    except ValueError as exc:
        return md("{} ", str(exc)) + USAGE
    email = Viewer(services, user_id).email
    if email is None:
        return as_mrkdwn(NO_EMAIL)
    manager = definition.manager_of(email)
    try:
        with services.db.transaction(busy_timeout=WRITE_BUDGET_SECONDS) as session:
            routing_store.set_away(session, email, True, now=now, until=until)
            count = _open_count(session, email)
            if manager is not None:
                outbox.enqueue(
                    session,
                    kind=AWAY_NOTICE,
                    payload={
                        "rep": email,
                        "rep_user_id": user_id,
                        "manager": manager,
                        "until": until.isoformat() if until else None,
                    },
                    dedupe_key=f"away:{email}:{now.isoformat()}",
                    now=now,
                )
    except OperationalError:
        logger.exception("away not saved: the database stayed busy")
        return as_mrkdwn(BUSY)
    services.delivery.wake()
    leads = "1 open lead" if count == 1 else f"{count} open leads"
    text = md("🌴 You are away {}: routing sends you no new leads. ", back_on(until))
    text += md("You hold {}", leads)
    if count and manager:
        text += md("; your manager ({}) can reassign them in one click.", manager)
    elif count:
        text += md("; reassign them from each card, or ask your manager.")
    else:
        text += md(".")
    return text


def come_back(services: Services, user_id: str, *, now: datetime | None = None) -> Mrkdwn:
    now = now or clock.now()
    email = Viewer(services, user_id).email
    if email is None:
        return as_mrkdwn(NO_EMAIL)
    try:
        with services.db.transaction(busy_timeout=WRITE_BUDGET_SECONDS) as session:
            was_away = routing_store.away_status(session, email, now=now) is not None
            routing_store.set_away(session, email, False, now=now)
    except OperationalError:
        logger.exception("back not saved: the database stayed busy")
        return as_mrkdwn(BUSY)
    if not was_away:
        return Mrkdwn("You were not marked away: routing already includes you.")
    return Mrkdwn("👋 Welcome back: routing sends you leads again.")


@sender(AWAY_NOTICE)
def send_away_notice(services: Services, item: Outbox) -> dict[str, Any]:
    payload = item.payload
    manager = services.directory.by_email(payload["manager"])
    if manager is None:
        raise Permanent(f"manager {payload['manager']} not found in Slack")
    with services.db.session() as session:
        if routing_store.away_status(session, payload["rep"], now=clock.now()) is None:
            return {"skipped": "back already"}
        count = _open_count(session, payload["rep"])
    until = datetime.fromisoformat(payload["until"]) if payload["until"] else None
    rep = mention(payload["rep_user_id"])
    return post_to_user(
        services,
        manager.user_id,
        text=away_text(rep, back_on(until), count),
        blocks=away_blocks(rep, payload["rep"], back_on(until), count),
    )


def reassign_leads_of(services: Services, user_id: str, rep_email: Any) -> Mrkdwn:
    """The manager's one click: the away rep's open leads go back through routing."""
    viewer = Viewer(services, user_id)
    if not isinstance(rep_email, str) or not manages(services.definition, viewer, rep_email):
        return Mrkdwn("Only the rep's manager can reassign their leads.")
    now = clock.now()
    with services.db.session() as session:
        away = routing_store.away_status(session, rep_email, now=now)
    if away is None:
        return md("{} is not away any more: their leads stay with them.", rep_email)
    try:
        result = reassign_away(
            services, rep_email, actor=user_id, actor_email=viewer.email or user_id, now=now
        )
    except OperationalError:
        logger.exception("away leads not reassigned: the database stayed busy")
        return as_mrkdwn(BUSY)
    return away_outcome(result, rep_email)
