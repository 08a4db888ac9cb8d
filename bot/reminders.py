"""The response clock at work: nudges to the rep, escalations to the manager.

Timers are rows (planned when the handoff opened, cancelled by a decision or a
reassignment). An APScheduler interval job calls `sweep`, which fires what is
due in one conditional UPDATE and queues the messages in the same transaction;
the outbox sends them. So each reminder goes out once, also with several
processes, and what fell due while the app was down goes out on the next
start, marked late.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot import clock, metrics, rerouting
from bot.blocks.common import as_mrkdwn, local_time, mention
from bot.blocks.sla import escalation_blocks, escalation_text, nudge_blocks, nudge_text
from bot.cards import post_to_user
from bot.decisions import CARD_UPDATE
from bot.delivery import sender
from bot.logs import lead_event
from bot.send_failures import Permanent, Retry
from bot.services import Services
from bot.sla import REASSIGN
from store import outbox, timers
from store.models import Handoff, HandoffStatus, Lead, Outbox, SlaTimer

logger = logging.getLogger(__name__)

NUDGE = "sla_nudge"
ESCALATION = "sla_escalation"
LATE_NOTE = "Sent late: Handoff was not running when this fell due."


def sweep(services: Services, *, now: datetime | None = None) -> int:
    """Fire every due timer and queue its message; returns how many fired."""
    now = now or clock.now()
    late_after = timedelta(seconds=max(60.0, 2 * services.settings.handoff_sweep_seconds))
    channel = services.definition.handoff.sla.escalation_channel
    fired_total = 0
    breached: set[int] = set()
    overdue_at = _first_overdue_fraction(services)
    while True:
        with services.db.transaction() as session:
            fired = timers.claim_due(session, now=now, late_after=late_after)
            rows: list[dict[str, Any]] = []
            for timer in fired:
                if timer.kind == REASSIGN:  # moves the lead itself, in this transaction
                    rerouting.on_breach_safely(session, services, timer.handoff_id, now=now)
                    continue
                base = {"timer_id": timer.id, "handoff_id": timer.handoff_id, "late": timer.late}
                if timer.kind == "remind":
                    targets = [("owner", NUDGE)]
                else:
                    targets = [("manager", ESCALATION)] + (
                        [("channel", ESCALATION)] if channel else []
                    )
                rows += [
                    {
                        "kind": kind,
                        "payload": {**base, "to": to},
                        "dedupe_key": f"timer:{timer.id}:{to}",
                        "handoff_id": timer.handoff_id,
                    }
                    for to, kind in targets
                ]
            rows += _clock_updates(fired)
            outbox.enqueue_many(session, rows, now=now)
        fired_total += len(fired)
        breached.update(t.handoff_id for t in fired if t.fraction == overdue_at)
        if len(fired) < 1000:
            break
    if fired_total:
        logger.debug("SLA sweep fired %s timer(s)", fired_total)
        services.delivery.wake()
    metrics.SLA_BREACHES.inc(len(breached))
    return fired_total


def _clock_updates(fired: list[timers.FiredTimer]) -> list[dict[str, Any]]:
    """One card update per handoff whose timers fired (a reminder and the escalation at
    100%, or several that fell due while the app was down, share one): the card is
    re-rendered with the time left (DESIGN.md: Slack cannot tick)."""
    latest: dict[int, datetime] = {}
    for timer in fired:
        latest[timer.handoff_id] = max(timer.due_at, latest.get(timer.handoff_id, timer.due_at))
    return [
        {
            "kind": CARD_UPDATE,
            "payload": {"handoff_id": handoff_id},
            "dedupe_key": f"clock:{handoff_id}:{due_at.isoformat()}",
            "handoff_id": handoff_id,
        }
        for handoff_id, due_at in latest.items()
    ]


def _first_overdue_fraction(services: Services) -> float | None:
    """The timer that marks a breach: the first one at or past the deadline (100%)."""
    sla = services.definition.handoff.sla
    overdue = [f for f in (*sla.remind_at, sla.escalate_at) if f >= 1.0]
    return min(overdue) if overdue else None


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes == 0:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def timing(services: Services, handoff: Handoff, now: datetime, tz: str | None) -> str:
    """'1h 30m of business time left (due Mon 24 Nov, 12:00 AEDT)' or '... late'."""
    calendar = services.definition.calendar()
    due = local_time(handoff.due_at, tz)
    if now < handoff.due_at:
        left = _duration(calendar.elapsed(now, handoff.due_at))
        return f"{left} of business time left (due {due})"
    late = _duration(calendar.elapsed(handoff.due_at, now))
    return f"{late} of business time late (was due {due})"


def _load(services: Services, item: Outbox) -> tuple[Handoff, Lead, SlaTimer] | None:
    with services.db.session() as session:
        handoff = session.get(Handoff, item.payload["handoff_id"])
        timer = session.get(SlaTimer, item.payload["timer_id"])
        lead = session.get(Lead, handoff.lead_id) if handoff else None
    if handoff is None or lead is None or timer is None:
        raise Permanent("the handoff no longer exists")
    if handoff.status != HandoffStatus.OPEN:
        return None
    return handoff, lead, timer


def _permalink(services: Services, handoff: Handoff) -> str | None:
    if not handoff.channel or not handoff.ts:
        return None
    response = services.slack.chat_getPermalink(channel=handoff.channel, message_ts=handoff.ts)
    return response.get("permalink")


@sender(NUDGE)
def send_nudge(services: Services, item: Outbox) -> dict[str, Any]:
    loaded = _load(services, item)
    if loaded is None:
        return {"skipped": "decided before the reminder went out"}
    handoff, lead, _ = loaded
    if not handoff.owner_user_id or not handoff.ts:
        raise Retry(timedelta(seconds=30), "the card is not posted yet")
    person = services.directory.by_email(handoff.owner_email)
    when = timing(services, handoff, clock.now(), person.tz if person else None)
    company = lead.company or lead.external_id
    link = _permalink(services, handoff)
    note = LATE_NOTE if item.payload.get("late") else ""
    result = post_to_user(
        services,
        handoff.owner_user_id,
        text=nudge_text(company, link, when),
        blocks=nudge_blocks(company, link, when, note),
    )
    metrics.SLA_REMINDERS.inc()
    lead_event(lead.external_id, "reminded", f"{handoff.owner_email}: {when}")
    return result


@sender(ESCALATION)
def send_escalation(services: Services, item: Outbox) -> dict[str, Any]:
    loaded = _load(services, item)
    if loaded is None:
        return {"skipped": "decided before the escalation went out"}
    handoff, lead, _ = loaded
    definition = services.definition
    to_channel = item.payload.get("to") == "channel"
    manager_email = definition.manager_of(handoff.owner_email) or definition.owners.sales
    manager = None if to_channel else services.directory.by_email(manager_email)
    if not to_channel and manager is None:
        raise Permanent(f"manager {manager_email} not found in Slack")
    when = timing(services, handoff, clock.now(), manager.tz if manager else None)
    owner = (
        mention(handoff.owner_user_id) if handoff.owner_user_id else as_mrkdwn(handoff.owner_email)
    )
    company = lead.company or lead.external_id
    person = ", ".join(filter(None, [lead.name, lead.title]))
    summary = " · ".join(
        filter(
            None,
            [
                person,
                lead.source and f"source {lead.source}",
                lead.campaign,
                f"{lead.score} points",
            ],
        )
    )
    blocks = escalation_blocks(
        handoff_id=handoff.id,
        company=company,
        summary=summary,
        owner=owner,
        timing=when,
        link=_permalink(services, handoff),
        late_note=LATE_NOTE if item.payload["late"] else "",
        with_buttons=not to_channel,
    )
    text = escalation_text(company, owner, when)
    if to_channel:
        channel = definition.handoff.sla.escalation_channel or ""
        response = services.slack.chat_postMessage(channel=channel, text=text, blocks=blocks)
        lead_event(lead.external_id, "escalated", f"to {channel}: {when}")
        return {"channel": response["channel"], "ts": response["ts"]}
    assert manager is not None and manager.user_id is not None
    result = post_to_user(services, manager.user_id, text=text, blocks=blocks)
    metrics.SLA_ESCALATIONS.inc()
    lead_event(lead.external_id, "escalated", f"to {manager_email}: {when}")
    return result
