"""Snoozing a handoff: its response clock pauses for a while, and says why.

`handoff.sla.snooze_max` (a duration like `respond_within`) turns it on: the card
gets a Snooze button, the modal offers the lengths up to it. A snooze of N
business hours moves the due time and every pending reminder and escalation N
business hours later (from the moment the snooze ends, the same business time
is left as when it began). One snooze at a time; only the owner or their
manager may snooze. Like a decision, the modal is checked with reads before
the ack and written after it, in one transaction with its audit line and the
card updates (now, and again when the snooze ends).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from bot import clock
from bot.blocks.common import local_time, md, slack_date
from bot.calendar import BusinessDuration, parse_duration
from bot.decisions import CARD_UPDATE, Refused, authorise, ensure_open, load, write_retrying
from bot.definition import Definition
from bot.logs import lead_event
from bot.services import Services
from store import audit, outbox
from store import snoozes as snooze_store
from store.models import Handoff, HandoffStatus, SlaTimer, Snooze, TimerStatus

logger = logging.getLogger(__name__)

WHY_LIMIT = 500
_LENGTHS = ("30m", "1h", "2h", "4h", "1d")
_WORDS = {"30m": "30 minutes", "1h": "1 hour", "2h": "2 hours", "4h": "4 hours"}


@dataclass(frozen=True)
class Choice:
    value: str  # the option's value: a duration as the definition writes them
    label: str
    length: BusinessDuration


def choices(definition: Definition) -> list[Choice]:
    """The lengths the modal offers: the usual ones up to snooze_max, and snooze_max."""
    most = definition.handoff.sla.snooze_max
    if most is None:
        return []
    calendar = definition.calendar()
    limit = calendar.seconds(most)
    offered = []
    for text in _LENGTHS:
        length = parse_duration(text)
        if calendar.seconds(length) <= limit:
            offered.append(Choice(text, _label(text), length))
    if most.text not in {choice.value for choice in offered}:
        offered.append(Choice(most.text, _label(most.text), most))
    return offered


def _label(text: str) -> str:
    if text == "1d":
        return "1 business day"
    return _WORDS.get(text, text + " of business time")


def can_snooze(
    services: Services, handoff_id: Any, user_id: str, *, now: datetime | None = None
) -> Handoff:
    """The handoff, if this user may snooze it now (what Snooze checks before its modal)."""
    if services.definition.handoff.sla.snooze_max is None:
        raise Refused("Snoozing is not switched on in the definition (handoff.sla.snooze_max).")
    handoff = load(services, handoff_id)
    authorise(services, handoff, user_id)
    ensure_open(services, handoff)
    with services.db.session() as session:
        snoozed = snooze_store.current(session, [handoff.id], now or clock.now()).get(handoff.id)
    if snoozed is not None:
        raise Refused(
            md(
                "This lead is already snoozed until {} ({}). One snooze at a time.",
                slack_date(snoozed.until, local_time(snoozed.until, None)),
                snoozed.why,
            )
        )
    return handoff


def snooze_problems(definition: Definition, value: str | None, why: str | None) -> dict[str, str]:
    """What is wrong with the modal's input, by the block it belongs to."""
    problems = {}
    if value not in {choice.value for choice in choices(definition)}:
        problems["length"] = "Pick how long to snooze."
    if not (why or "").strip():
        problems["why"] = "Say why, for your manager and the lead's history."
    elif len(why or "") > WHY_LIMIT:
        problems["why"] = f"Keep it under {WHY_LIMIT} characters."
    return problems


@dataclass(frozen=True)
class PendingSnooze:
    """A snooze checked with reads only (before the ack), to be written after it."""

    what: ClassVar[str] = "snooze"
    handoff: Handoff
    user_id: str
    length: BusinessDuration
    why: str
    at: datetime

    def record(self, services: Services) -> Snooze:
        """Write it; Refused when the handoff was decided or snoozed meanwhile."""
        try:
            snooze = write_retrying(services, lambda s: self._write(services.definition, s))
        except OperationalError:
            logger.exception(
                "snooze of handoff %s not written: the database stayed busy", self.handoff.id
            )
            raise Refused(
                "I could not save the snooze: the database stayed busy. Please try again."
            ) from None
        if snooze is None:
            raise Refused("Someone decided on or snoozed this lead first.")
        services.delivery.wake()
        lead_event(
            f"#{self.handoff.lead_id}", "snoozed", f"until {snooze.until.isoformat()}: {self.why}"
        )
        return snooze

    def _write(self, definition: Definition, session: Session) -> Snooze | None:
        calendar = definition.calendar()
        handoff = session.get(Handoff, self.handoff.id)
        if handoff is None or handoff.status != HandoffStatus.OPEN:
            return None
        if snooze_store.current(session, [handoff.id], self.at):
            return None
        old_due = handoff.due_at
        # The due time is the referee: a concurrent snooze moved it, and this UPDATE
        # then touches nothing.
        moved = session.execute(
            update(Handoff)
            .where(
                Handoff.id == handoff.id,
                Handoff.status == HandoffStatus.OPEN,
                Handoff.due_at == old_due,
            )
            .values(due_at=calendar.add(old_due, self.length))
        )
        if moved.rowcount != 1:
            return None
        for timer in session.scalars(
            select(SlaTimer).where(
                SlaTimer.handoff_id == handoff.id, SlaTimer.status == TimerStatus.PENDING
            )
        ):
            timer.due_at = calendar.add(timer.due_at, self.length)
        until = calendar.add(self.at, self.length)
        snooze = Snooze(
            handoff_id=handoff.id,
            by=self.user_id,
            at=self.at,
            until=until,
            why=self.why,
            paused_seconds=calendar.seconds(self.length),
        )
        session.add(snooze)
        session.flush()
        audit.record(
            session,
            at=self.at,
            actor=self.user_id,
            action="snoozed",
            lead_id=handoff.lead_id,
            handoff_id=handoff.id,
            until=until.isoformat(timespec="seconds"),
            why=self.why,
            length=self.length.text,
        )
        for key, when in (("start", self.at), ("end", until)):
            outbox.enqueue(
                session,
                kind=CARD_UPDATE,
                payload={"handoff_id": handoff.id},
                dedupe_key=f"snooze:{snooze.id}:{key}",
                handoff_id=handoff.id,
                now=self.at,
                not_before=when,
            )
        return snooze


def check_snooze(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    value: str | None,
    why: str | None,
    now: datetime | None = None,
) -> PendingSnooze:
    """Everything a snooze needs, checked with reads only; Refused says what is wrong."""
    problems = snooze_problems(services.definition, value, why)
    if problems:
        raise Refused(" ".join(problems.values()))
    at = now or clock.now()
    handoff = can_snooze(services, handoff_id, user_id, now=at)
    [choice] = [c for c in choices(services.definition) if c.value == value]
    return PendingSnooze(handoff, user_id, choice.length, (why or "").strip(), at)


def snooze(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    value: str,
    why: str,
    now: datetime | None = None,
) -> Snooze:
    return check_snooze(services, handoff_id, user_id, value=value, why=why, now=now).record(
        services
    )


def record_after_ack(services: Services, pending: PendingSnooze) -> None:
    """Write a snooze once Slack has closed the modal; what cannot land is told in a DM."""
    try:
        pending.record(services)
    except Refused as refusal:
        services.slack.chat_postMessage(
            channel=pending.user_id, text=md("Your snooze did not go through. ") + refusal.text
        )
