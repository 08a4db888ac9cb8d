"""Deciding a handoff: accept, reject with a reason, or reassign.

The first decision wins, and the database is the referee: every decision is a
conditional UPDATE (`... WHERE status = 'open'`) and only the caller whose
update touched the row goes on. Double clicks, Slack retries and an owner and a
manager racing from two devices therefore give exactly one decision, in one
process or many. Everything a decision causes (the card update, the CRM
write-back, the end of the SLA clock, the audit line) is written in the same
transaction and sent later through the outbox, so Slack gets its ack at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import update
from sqlmodel import Session

from bot import access, clock
from bot.blocks.common import Mrkdwn, as_mrkdwn, local_time, md, mention
from bot.definition import Definition
from bot.handoffs import NewHandoff, open_handoffs
from bot.services import Services
from bot.sla import close_clock
from store import audit, outbox
from store.models import Handoff, HandoffStatus, Lead, LeadStatus

logger = logging.getLogger(__name__)

CARD_UPDATE = "card_update"
NOTE_LIMIT = 3000


class Refused(Exception):  # noqa: N818 - a refusal, told to the user, not a crash
    """A decision that cannot be made; `text` (also str()) is the sentence to show the user.

    `quiet`: nothing new to tell, because the person's own identical decision already
    stands (a double click, or a click Slack retried): the card shows it.
    """

    def __init__(self, text: str, *, quiet: bool = False) -> None:
        super().__init__(text)
        self.text = as_mrkdwn(text)
        self.quiet = quiet


def load(services: Services, handoff_id: Any) -> Handoff:
    text = str(handoff_id) if isinstance(handoff_id, int | str) else ""
    # Slack echoes the id the button was given; anything else is not a row id (a long one
    # would overflow the database's integer, a traceback instead of this answer).
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise Refused("That card does not belong to a handoff I know.")
    key = int(text)
    with services.db.session() as session:
        handoff = session.get(Handoff, key)
    if handoff is None:
        raise Refused("This lead is no longer in Handoff (it may have been removed).")
    return handoff


def lead_label(services: Services, handoff: Handoff) -> str:
    """How a modal names the lead: its company, else its id."""
    with services.db.session() as session:
        lead = session.get(Lead, handoff.lead_id)
    return (lead.company or lead.external_id) if lead else f"handoff {handoff.id}"


def authorise(services: Services, handoff: Handoff, user_id: str) -> None:
    """Only the owner or the owner's manager (from the definition) may decide."""
    if access.may_decide(services.definition, access.Viewer(services, user_id), handoff):
        return
    # Whoever clicked may be anyone the card was shown to: name people by their
    # Slack mention, never by an email address.
    owner = mention(handoff.owner_user_id) if handoff.owner_user_id else "the lead's owner"
    manager = _in_slack(services, services.definition.manager_of(handoff.owner_email))
    managed = md(" or their manager ({})", manager) if manager else " or their manager"
    raise Refused(md("Only {}{} can decide on this lead.", owner, managed))


def _in_slack(services: Services, email: str | None) -> Mrkdwn | None:
    """A mention of the person with this email, when Slack knows them."""
    if email is None:
        return None
    try:
        person = services.directory.by_email(email)
    except (SlackApiError, OSError):
        logger.exception("could not look up a manager in Slack")
        return None
    return mention(person.user_id) if person else None


def ensure_open(
    services: Services,
    handoff: Handoff,
    *,
    user_id: str | None = None,
    attempt: str | None = None,
) -> None:
    """Refuse a decided handoff (quietly when `user_id` already made `attempt` on it)."""
    if handoff.status != HandoffStatus.OPEN:
        raise _already_decided(services.definition, handoff, user_id, attempt)


def can_reject(services: Services, handoff_id: Any, user_id: str) -> Handoff:
    """The handoff, if this user may reject it now (what Reject checks before its modal)."""
    return _decidable(services, handoff_id, user_id, HandoffStatus.REJECTED)


def can_reassign(services: Services, handoff_id: Any, user_id: str) -> Handoff:
    """The handoff, if this user may reassign it now. Reassigning again is never quiet:
    the escalation message a manager clicks does not show that it was reassigned."""
    return _decidable(services, handoff_id, user_id, None)


def _decidable(services: Services, handoff_id: Any, user_id: str, attempt: str | None) -> Handoff:
    handoff = load(services, handoff_id)
    authorise(services, handoff, user_id)
    ensure_open(services, handoff, user_id=user_id, attempt=attempt)
    return handoff


def _already_decided(
    definition: Definition,
    handoff: Handoff,
    user_id: str | None = None,
    attempt: str | None = None,
) -> Refused:
    who = mention(handoff.decided_by)
    when = local_time(handoff.decided_at, definition.timezone.key) if handoff.decided_at else ""
    repeat = user_id is not None and handoff.decided_by == user_id and handoff.status == attempt
    return Refused(
        md("This lead was already {} by {}", handoff.status, who)
        + (md(", {}.", when) if when else "."),
        quiet=repeat,
    )


def _claim(session: Session, handoff_id: int, **values: Any) -> bool:
    """The first decision wins: True only for the caller whose update touched the row."""
    result = session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id, Handoff.status == HandoffStatus.OPEN)
        .values(**values)
    )
    return result.rowcount == 1


def _reload(session: Session, handoff_id: int) -> Handoff:
    handoff = session.get(Handoff, handoff_id, populate_existing=True)
    assert handoff is not None
    return handoff


def _refuse_lost_race(
    services: Services, handoff_id: int, user_id: str | None = None, attempt: str | None = None
) -> Refused:
    with services.db.session() as session:
        current = session.get(Handoff, handoff_id)
    assert current is not None
    return _already_decided(services.definition, current, user_id, attempt)


def accept(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    commercial: Iterable[str] = (),
    now: datetime | None = None,
) -> Handoff:
    handoff = load(services, handoff_id)
    authorise(services, handoff, user_id)
    ensure_open(services, handoff, user_id=user_id, attempt=HandoffStatus.ACCEPTED)
    now = now or clock.now()
    known = {item.id for item in services.definition.commercial}
    confirmed = [item for item in commercial if item in known]
    with services.db.transaction() as session:
        won = _claim(
            session,
            handoff.id,
            status=HandoffStatus.ACCEPTED,
            decided_by=user_id,
            decided_at=now,
            commercial=confirmed,
        )
        if won:
            decided = _reload(session, handoff.id)
            _settle(
                session,
                services,
                decided,
                lead_status=LeadStatus.ACCEPTED,
                now=now,
                action="accepted",
                actor=user_id,
                commercial=confirmed,
            )
    if not won:
        raise _refuse_lost_race(services, handoff.id, user_id, HandoffStatus.ACCEPTED)
    services.delivery.wake()
    return decided


def rejection_problems(
    definition: Definition, reason_id: str | None, note: str | None
) -> dict[str, str]:
    """What is wrong with a rejection, by the modal block it belongs to."""
    reason = definition.reason(reason_id) if reason_id else None
    if reason is None:
        return {"reason": "Pick the reason that fits best."}
    if reason.note_required and not (note or "").strip():
        return {"note": f"“{reason.label}” needs a note for marketing."}
    if note and len(note) > NOTE_LIMIT:
        return {"note": f"Keep the note under {NOTE_LIMIT} characters."}
    return {}


def reject(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    reason_id: str,
    note: str | None,
    now: datetime | None = None,
) -> Handoff:
    problems = rejection_problems(services.definition, reason_id, note)
    if problems:
        raise Refused(" ".join(problems.values()))
    reason = services.definition.reason(reason_id)
    assert reason is not None
    handoff = load(services, handoff_id)
    authorise(services, handoff, user_id)
    ensure_open(services, handoff)
    now = now or clock.now()
    note = (note or "").strip() or None
    with services.db.transaction() as session:
        won = _claim(
            session,
            handoff.id,
            status=HandoffStatus.REJECTED,
            decided_by=user_id,
            decided_at=now,
            reason_id=reason.id,
            note=note,
            action=reason.action,
        )
        if won:
            decided = _reload(session, handoff.id)
            lead_status = (
                LeadStatus.NURTURE if reason.action == "recycle" else LeadStatus.DISQUALIFIED
            )
            _settle(
                session,
                services,
                decided,
                lead_status=lead_status,
                now=now,
                action="rejected",
                actor=user_id,
                reason=reason.id,
                criterion=reason.criterion,
                outcome=reason.action,
                note=note,
            )
    if not won:
        raise _refuse_lost_race(services, handoff.id)
    services.delivery.wake()
    return decided


def reassign(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    to_user_id: str,
    now: datetime | None = None,
) -> Handoff:
    """Hand the lead to another rep: their own card and a fresh response clock."""
    handoff = load(services, handoff_id)
    authorise(services, handoff, user_id)
    ensure_open(services, handoff)
    if to_user_id == handoff.owner_user_id:
        raise Refused(md("{} already owns this lead.", mention(to_user_id)))
    person = services.directory.by_user_id(to_user_id)
    if person is None:
        raise Refused(
            md(
                "I cannot find an email for {} in Slack, so I cannot hand them the lead.",
                mention(to_user_id),
            )
        )
    routed_by = _reassigned_why(services, handoff, user_id)
    now = now or clock.now()
    with services.db.transaction() as session:
        won = _claim(
            session, handoff.id, status=HandoffStatus.REASSIGNED, decided_by=user_id, decided_at=now
        )
        if won:
            old = _reload(session, handoff.id)
            close_clock(session, services.definition, old, at=now)
            (successor_id,) = open_handoffs(
                session,
                definition=services.definition,
                new=[
                    NewHandoff(
                        lead_id=old.lead_id,
                        owner_email=person.email,
                        owner_user_id=person.user_id,
                        routed_by=routed_by,
                        previous_id=old.id,
                    )
                ],
                now=now,
                actor=user_id,
            )
            audit.record(
                session,
                at=now,
                actor=user_id,
                action="reassigned",
                lead_id=old.lead_id,
                handoff_id=old.id,
                from_owner=old.owner_email,
                to_owner=person.email,
                new_handoff_id=successor_id,
            )
            _enqueue_card_update(session, old, now)
            successor = _reload(session, successor_id)
    if not won:
        raise _refuse_lost_race(services, handoff.id)
    services.delivery.wake()
    return successor


def _reassigned_why(services: Services, handoff: Handoff, user_id: str) -> str:
    """Why the new owner has the lead, in words (shown escaped: no mentions here).

    Looked up before the decision's transaction: the directory may write to the store.
    """
    by = services.directory.email_of(user_id) or "a manager"
    if by == handoff.owner_email:
        return f"passed on by {by}"
    return f"reassigned by {by} (was with {handoff.owner_email})"


def _settle(
    session: Session,
    services: Services,
    handoff: Handoff,
    *,
    lead_status: str,
    now: datetime,
    action: str,
    actor: str,
    **detail: Any,
) -> None:
    """What every final decision does, in the deciding transaction."""
    close_clock(session, services.definition, handoff, at=now)
    session.execute(
        update(Lead).where(Lead.id == handoff.lead_id).values(status=lead_status, updated_at=now)
    )
    audit.record(
        session,
        at=now,
        actor=actor,
        action=action,
        lead_id=handoff.lead_id,
        handoff_id=handoff.id,
        owner=handoff.owner_email,
        **detail,
    )
    _enqueue_card_update(session, handoff, now)
    settings = services.settings
    for kind, enabled in (
        ("webhook", bool(settings.handoff_webhook_url)),
        ("hubspot", settings.hubspot_token is not None),
    ):
        if enabled:
            outbox.enqueue(
                session,
                kind=kind,
                payload={"handoff_id": handoff.id},
                dedupe_key=f"handoff:{handoff.id}:{kind}",
                handoff_id=handoff.id,
                now=now,
            )


def _enqueue_card_update(session: Session, handoff: Handoff, now: datetime) -> None:
    outbox.enqueue(
        session,
        kind=CARD_UPDATE,
        payload={"handoff_id": handoff.id},
        dedupe_key=f"handoff:{handoff.id}:{handoff.status}",
        handoff_id=handoff.id,
        now=now,
    )
