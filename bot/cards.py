"""Delivering handoff cards: find the owner in Slack, render, post, remember where.

The card is rendered when it is sent, not when it is queued, so it always shows
the handoff as it is (and the deadline in the owner's own time zone).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import bindparam, func, select, update
from sqlmodel import Session

from bot import clock, metrics
from bot.blocks.card import CardLine, CardModel, CrmLink, build_card, fallback_text
from bot.blocks.common import Mrkdwn, message_text
from bot.crm.links import crm_name, record_url
from bot.crm.sources import Sources
from bot.definition import Definition
from bot.delivery import sender
from bot.handoffs import CARD
from bot.leads import lead_from_stored
from bot.logs import lead_event
from bot.routing import route
from bot.send_failures import Permanent, Retry, slack_retry_after
from bot.services import Services
from bot.sla import time_left
from bot.slack import SlackPerson
from store import audit
from store import routing as routing_store
from store import snoozes as snooze_store
from store.models import Handoff, HandoffStatus, Lead, Outbox, Snooze, Verdict

logger = logging.getLogger(__name__)

_CARD_NOT_POSTED_YET = timedelta(seconds=5)


_handoff = Handoff.__table__  # type: ignore[attr-defined]
_lead = Lead.__table__  # type: ignore[attr-defined]
_verdict = Verdict.__table__  # type: ignore[attr-defined]
_other = _verdict.alias("other")
_LATEST = select(func.max(_other.c.id)).where(_other.c.lead_id == _lead.c.id).scalar_subquery()
# A handoff, its lead and the lead's latest verdict in one Core query: about a
# quarter of the CPU of loading the three through the ORM, on every card sent.
_CARD_ROWS = (
    select(
        *(column.label(f"handoff__{column.name}") for column in _handoff.c),
        *(column.label(f"lead__{column.name}") for column in _lead.c),
        _verdict.c.detail.label("verdict_detail"),
    )
    .select_from(
        _handoff.join(_lead, _lead.c.id == _handoff.c.lead_id).outerjoin(
            _verdict, _verdict.c.id == _LATEST
        )
    )
    .where(_handoff.c.id == bindparam("handoff_id"))
)


def _load_card(session: Session, handoff_id: int) -> tuple[Handoff, Lead, dict[str, Any]] | None:
    """The handoff, its lead and its latest verdict's detail (detached copies)."""
    row = session.execute(_CARD_ROWS, {"handoff_id": handoff_id}).first()
    if row is None:
        return None
    values = row._mapping
    handoff = Handoff(**{column.name: values[f"handoff__{column.name}"] for column in _handoff.c})
    lead = Lead(**{column.name: values[f"lead__{column.name}"] for column in _lead.c})
    return handoff, lead, values["verdict_detail"] or {}


def _reassigned_to(services: Services, session: Session, handoff: Handoff) -> str | None:
    """The Slack user a reassigned handoff went to, for its card (looked up by email when
    routing moved it and the new owner's card is not out yet)."""
    if handoff.status != HandoffStatus.REASSIGNED:
        return None
    successor = session.scalars(select(Handoff).where(Handoff.previous_id == handoff.id)).first()
    if successor is None or successor.owner_user_id:
        return successor.owner_user_id if successor else None
    person = services.directory.by_email(successor.owner_email)
    return person.user_id if person else None


def build_model(
    definition: Definition,
    handoff: Handoff,
    lead: Lead,
    detail: dict[str, Any],
    owner_tz: str | None,
    reassigned_to: str | None = None,
    sources: Sources | None = None,
    now: datetime | None = None,
    snoozed: Snooze | None = None,
) -> CardModel:
    """The card of a handoff, from its lead and its latest verdict's detail; `now`
    puts the time left on an open card."""
    labels = {c.id: c.label for c in definition.fit}
    signal_labels = {s.id: s.label for s in definition.intent.signals}
    fit = tuple(
        CardLine(labels.get(c["id"], c["id"]), "" if c["value"] is None else str(c["value"]))
        for c in detail.get("criteria", [])
        if c["passed"]
    )
    intent = tuple(
        CardLine(
            signal_labels.get(s["id"], s["id"]),
            f"{s['points']:+d}"
            + (f", {s['count']}×" if s["count"] > 1 else "")
            + (" capped" if s["points"] != s["uncapped"] else ""),
        )
        for s in detail.get("signals", [])
    )
    reason = definition.reason(handoff.reason_id) if handoff.reason_id else None
    return CardModel(
        handoff_id=handoff.id,  # type: ignore[arg-type]
        lead_external_id=lead.external_id,
        company=lead.company,
        name=lead.name,
        title=lead.title,
        email=lead.email,
        source=lead.source,
        campaign=lead.campaign,
        score=lead.score,
        mql=detail.get("mql", definition.thresholds.mql),
        hot=lead.hot,
        fit=fit,
        intent=intent,
        commercial=tuple((item.id, item.label) for item in definition.commercial),
        due_at=handoff.due_at,
        owner_tz=owner_tz,
        owner_user_id=handoff.owner_user_id,
        routed_by=handoff.routed_by,
        status=handoff.status,
        checked=tuple(handoff.commercial),
        decided_by=handoff.decided_by,
        decided_at=handoff.decided_at,
        reason_label=reason.label if reason else handoff.reason_id,
        note=handoff.note,
        action=handoff.action,
        reassigned_to=reassigned_to,
        crm_link=_crm_link(lead.external_id, sources),
        clock=(
            # A snoozed clock stands still: the time left is what remains when it resumes.
            time_left(definition, handoff.due_at, max(now, snoozed.until) if snoozed else now)
            if now is not None and handoff.status == HandoffStatus.OPEN
            else None
        ),
        snooze_offered=definition.handoff.sla.snooze_max is not None,
        snoozed_until=snoozed.until if snoozed else None,
        snooze_why=snoozed.why if snoozed else None,
    )


def _crm_link(lead_external_id: str, sources: Sources | None) -> CrmLink | None:
    url = record_url(lead_external_id, sources)
    return CrmLink(crm_name(lead_external_id), url) if url else None


def _find_owner(services: Services, handoff: Handoff, lead: Lead) -> tuple[str, SlackPerson]:
    """The owner in Slack; an owner Slack does not know falls back to the pool."""
    tried: list[str] = []
    email = handoff.owner_email
    while True:
        person = services.directory.by_email(email)
        if person is not None:
            if tried:
                _reroute(services, handoff, email, tried)
            return email, person
        tried.append(email)
        with services.db.session() as session:
            rotation = routing_store.positions(
                session, [r.key for r in services.definition.handoff.routing], create=False
            )
            away = routing_store.away_reps(session, now=clock.now())
        decision = route(
            lead_from_stored(stored_lead(lead)),
            services.definition,
            rotation=rotation,
            away=away,
            exclude=tried,
        )
        if decision.owner is None:
            raise Permanent(f"no rep in Slack for this lead: {', '.join(tried)} not found")
        email = decision.owner
        handoff.routed_by = f"{', '.join(tried)} not found in Slack; {decision.why}"
        if decision.rotation_key is not None and decision.next_position is not None:
            with services.db.transaction() as session:
                routing_store.save_position(session, decision.rotation_key, decision.next_position)


def _reroute(services: Services, handoff: Handoff, email: str, tried: list[str]) -> None:
    with services.db.transaction() as session:
        session.execute(
            update(Handoff)
            .where(Handoff.id == handoff.id)
            .values(owner_email=email, routed_by=handoff.routed_by)
        )
        audit.record(
            session,
            at=clock.now(),
            actor="handoff",
            action="rerouted",
            lead_id=handoff.lead_id,
            handoff_id=handoff.id,
            owner=email,
            why=f"{', '.join(tried)} not found in Slack; fell back to the pool",
        )
    handoff.owner_email = email


def stored_lead(lead: Lead) -> dict[str, Any]:
    return {
        "id": lead.external_id,
        "email": lead.email,
        "name": lead.name,
        "title": lead.title,
        "company": lead.company,
        "source": lead.source,
        "campaign": lead.campaign,
        "attributes": lead.attributes,
        "signals": lead.signals,
    }


def post_to_user(
    services: Services, user_id: str, *, text: Mrkdwn, blocks: list[Any]
) -> dict[str, Any]:
    """A paced DM; a 429 becomes a Retry at Slack's Retry-After."""
    pacer = services.delivery.pacer
    with pacer.slot(user_id):
        try:
            response = services.slack.chat_postMessage(
                channel=user_id, text=message_text(text), blocks=blocks
            )
        except SlackApiError as exc:
            after = slack_retry_after(exc)
            if after is None:
                raise
            pacer.back_off(user_id, clock.now() + after)
            raise Retry(after, "rate limited by Slack") from None
    return {"channel": response["channel"], "ts": response["ts"]}


_CARD_POSTED = (
    update(Handoff.__table__)  # type: ignore[attr-defined]
    .where(Handoff.__table__.c.id == bindparam("b_id"))  # type: ignore[attr-defined]
    .values(channel=bindparam("b_channel"), ts=bindparam("b_ts"), owner_user_id=bindparam("b_user"))
)


def cards_posted(session: Session, sent: list[tuple[Outbox, dict[str, Any]]]) -> None:
    """Where each card went, committed with its outbox row marked sent."""
    rows = [
        {
            "b_id": item.payload["handoff_id"],
            "b_channel": result["channel"],
            "b_ts": result["ts"],
            "b_user": result["user_id"],
        }
        for item, result in sent
        if "ts" in result
    ]
    if rows:
        session.execute(_CARD_POSTED, rows)


@sender(CARD, on_sent=cards_posted)
def send_handoff_card(services: Services, item: Outbox) -> dict[str, Any]:
    with services.db.session() as session:
        loaded = _load_card(session, item.payload["handoff_id"])
    if loaded is None:
        raise Permanent("handoff no longer exists")
    handoff, lead, detail = loaded
    if handoff.status != HandoffStatus.OPEN:
        return {"skipped": f"handoff is {handoff.status}"}
    email, person = _find_owner(services, handoff, lead)  # may fall back to the pool
    handoff.owner_user_id = person.user_id
    # Labels from the version the lead was handed off under: a later one may rename them.
    definition = services.definitions.at_version(handoff.definition_version)
    model = build_model(
        definition, handoff, lead, detail, person.tz, sources=services.sources, now=clock.now()
    )
    result = post_to_user(
        services, person.user_id, text=fallback_text(model), blocks=build_card(model)
    )
    # From the moment the handoff was made (the lead's arrival) to the card in Slack.
    metrics.LEAD_TO_DM.observe(max(0.0, (clock.now() - handoff.assigned_at).total_seconds()))
    lead_event(lead.external_id, "delivered", f"card to {email}")
    return {**result, "owner": email, "user_id": person.user_id}


@sender("card_update")
def send_card_update(services: Services, item: Outbox) -> dict[str, Any]:
    """Re-render a posted card in place (after a decision or a reassignment, and with
    the time left at each reminder and at the breach)."""
    with services.db.session() as session:
        loaded = _load_card(session, item.payload["handoff_id"])
        if loaded is None:
            raise Permanent("handoff no longer exists")
        handoff, lead, detail = loaded
        if not handoff.channel or not handoff.ts:
            raise Retry(_CARD_NOT_POSTED_YET, "card not posted yet")
        reassigned_to = _reassigned_to(services, session, handoff)
        now = clock.now()
        snoozed = snooze_store.current(session, [handoff.id], now).get(handoff.id)
    tz = _owner_tz(services, handoff.owner_email)
    definition = services.definitions.at_version(handoff.definition_version)
    model = build_model(
        definition,
        handoff,
        lead,
        detail,
        tz,
        reassigned_to,
        services.sources,
        now=now,
        snoozed=snoozed,
    )
    services.slack.chat_update(
        channel=handoff.channel, ts=handoff.ts, text=fallback_text(model), blocks=build_card(model)
    )
    return {"channel": handoff.channel, "ts": handoff.ts}


def _owner_tz(services: Services, email: str) -> str | None:
    person = services.directory.by_email(email)
    return person.tz if person else None
