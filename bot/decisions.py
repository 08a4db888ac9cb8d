"""Deciding a handoff: accept, reject with a reason, or reassign.

The first decision wins, and the database is the referee: every decision is a
conditional UPDATE (`... WHERE status = 'open'`) and only the caller whose
update touched the row goes on. Double clicks, Slack retries and an owner and a
manager racing from two devices therefore give exactly one decision, in one
process or many. Everything a decision causes (the card update, the CRM
write-back, the end of the SLA clock, the audit line) is written in the same
transaction and sent later through the outbox, so Slack gets its ack at once.

No ack waits for a write. A click is acked first and decided after. A modal's
submission is checked before its ack with reads only (`check_rejection`,
`check_reassignment`), so a refusal is still shown in the modal, and written
after it (`record_after_ack`). Every decision's write is retried while the
database is busy, for up to WRITE_BUDGET_SECONDS; a modal's decision that
cannot land any more (someone decided first, the database stayed busy) is told
to the user in a DM, since the modal that would have shown it has closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, ClassVar, TypeVar

from slack_sdk.errors import SlackApiError
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from bot import access, clock, metrics
from bot.blocks.common import Mrkdwn, as_mrkdwn, local_time, md, mention
from bot.definition import Definition, Reason
from bot.handoffs import NewHandoff, held_pool, open_handoffs
from bot.logs import lead_event
from bot.services import Services
from bot.sla import close_clock
from bot.slack import SlackPerson
from store import audit, outbox
from store.models import Handoff, HandoffStatus, Lead, LeadStatus

logger = logging.getLogger(__name__)
T = TypeVar("T")

CARD_UPDATE = "card_update"
HUBSPOT_OWNER = "hubspot_owner"  # the new owner of a reassigned lead, to HubSpot (writeback.py)
NOTE_LIMIT = 3000
# How long a decision Slack already has its ack for keeps trying to reach a busy database
# (each SQLite attempt itself waits up to the 30 s busy timeout).
WRITE_BUDGET_SECONDS = 300.0


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
    manager = in_slack(services, services.definition.manager_of(handoff.owner_email))
    managed = md(" or their manager ({})", manager) if manager else " or their manager"
    raise Refused(md("Only {}{} can decide on this lead.", owner, managed))


def in_slack(services: Services, email: str | None) -> Mrkdwn | None:
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

    def write(session: Session) -> Handoff | None:
        if not _claim(
            session,
            handoff.id,
            status=HandoffStatus.ACCEPTED,
            decided_by=user_id,
            decided_at=now,
            commercial=confirmed,
        ):
            return None
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
        return decided

    return _decide(
        services,
        handoff.id,
        write,
        user_id=user_id,
        attempt=HandoffStatus.ACCEPTED,
        done=lambda decided: _log_decision(services, decided, "accepted"),
    )


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


@dataclass(frozen=True)
class Rejection:
    """A rejection checked with reads only (before the ack), to be written after it."""

    what: ClassVar[str] = "rejection"
    handoff: Handoff
    user_id: str
    reason: Reason
    note: str | None
    at: datetime

    def record(self, services: Services) -> Handoff:
        """Write it; Refused when someone decided first."""
        return _decide(
            services,
            self.handoff.id,
            partial(self._write, services),
            done=lambda decided: _log_decision(
                services, decided, "rejected", reason=self.reason.id, detail=self.reason.action
            ),
        )

    def _write(self, services: Services, session: Session) -> Handoff | None:
        reason = self.reason
        if not _claim(
            session,
            self.handoff.id,
            status=HandoffStatus.REJECTED,
            decided_by=self.user_id,
            decided_at=self.at,
            reason_id=reason.id,
            note=self.note,
            action=reason.action,
        ):
            return None
        decided = _reload(session, self.handoff.id)
        _settle(
            session,
            services,
            decided,
            lead_status=(
                LeadStatus.NURTURE if reason.action == "recycle" else LeadStatus.DISQUALIFIED
            ),
            lead_values=_recycled(reason, self.at),
            now=self.at,
            action="rejected",
            actor=self.user_id,
            reason=reason.id,
            criterion=reason.criterion,
            outcome=reason.action,
            note=self.note,
        )
        return decided


def check_rejection(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    reason_id: str | None,
    note: str | None,
    now: datetime | None = None,
) -> Rejection:
    """Everything a rejection needs, checked with reads only; Refused says what is wrong."""
    problems = rejection_problems(services.definition, reason_id, note)
    if problems:
        raise Refused(" ".join(problems.values()))
    reason = services.definition.reason(reason_id) if reason_id else None
    assert reason is not None
    handoff = load(services, handoff_id)
    authorise(services, handoff, user_id)
    ensure_open(services, handoff)
    return Rejection(handoff, user_id, reason, (note or "").strip() or None, now or clock.now())


def reject(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    reason_id: str,
    note: str | None,
    now: datetime | None = None,
) -> Handoff:
    pending = check_rejection(
        services, handoff_id, user_id, reason_id=reason_id, note=note, now=now
    )
    return pending.record(services)


@dataclass(frozen=True)
class Reassignment:
    """A reassignment checked with reads only (before the ack), to be written after it."""

    what: ClassVar[str] = "reassignment"
    handoff: Handoff
    user_id: str
    to: SlackPerson
    routed_by: str
    at: datetime

    def record(self, services: Services) -> Handoff:
        """Write it and return the new handoff; Refused when someone decided first."""
        return _decide(
            services,
            self.handoff.id,
            partial(self._write, services),
            done=lambda successor: _log_decision(
                services, successor, "reassigned", detail=f"to {successor.owner_email}"
            ),
        )

    def _write(self, services: Services, session: Session) -> Handoff | None:
        successor_id = hand_over(
            session,
            services,
            self.handoff.id,
            owner_email=self.to.email,
            owner_user_id=self.to.user_id,
            routed_by=self.routed_by,
            actor=self.user_id,
            at=self.at,
        )
        return None if successor_id is None else _reload(session, successor_id)


def hand_over(
    session: Session,
    services: Services,
    handoff_id: int,
    *,
    owner_email: str,
    routed_by: str,
    actor: str,
    at: datetime,
    owner_user_id: str | None = None,
    route_key: str | None = None,
) -> int | None:
    """Move an open handoff to a new owner in the caller's transaction: the old one is
    closed as reassigned (its clock stopped, its card updated), the new one opened with
    a fresh clock and its own card. None when it was no longer open (someone decided
    first). Used by the manager's reassign modal and by routing's own moves (away,
    auto-reassign after a breach), where `actor` is who or what moved it."""
    if not _claim(
        session, handoff_id, status=HandoffStatus.REASSIGNED, decided_by=actor, decided_at=at
    ):
        return None
    old = _reload(session, handoff_id)
    close_clock(session, services.definitions.at_version(old.definition_version), old, at=at)
    if held_pool(old.route_key):  # a manager's question, not a rep's clock: no SLA figure
        old.business_seconds = old.wall_seconds = old.late_seconds = old.breached = None
    (successor_id,) = open_handoffs(
        session,
        definition=services.definition,
        new=[
            NewHandoff(
                lead_id=old.lead_id,
                owner_email=owner_email,
                owner_user_id=owner_user_id,
                routed_by=routed_by,
                previous_id=old.id,
                route_key=route_key,
                definition_version=old.definition_version,
            )
        ],
        now=at,
        actor=actor,
    )
    audit.record(
        session,
        at=at,
        actor=actor,
        action="reassigned",
        lead_id=old.lead_id,
        handoff_id=old.id,
        from_owner=old.owner_email,
        to_owner=owner_email,
        new_handoff_id=successor_id,
    )
    _enqueue_card_update(session, old, at)
    _enqueue_owner_write_back(session, services, successor_id, at)
    return successor_id


def check_reassignment(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    to_user_id: str,
    now: datetime | None = None,
) -> Reassignment:
    """Everything a reassignment needs, checked with reads only (and Slack's users.info
    for the new owner's email); Refused says what is wrong."""
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
    return Reassignment(handoff, user_id, person, routed_by, now or clock.now())


def reassign(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    to_user_id: str,
    now: datetime | None = None,
) -> Handoff:
    """Hand the lead to another rep: their own card and a fresh response clock."""
    pending = check_reassignment(services, handoff_id, user_id, to_user_id=to_user_id, now=now)
    return pending.record(services)


def record_after_ack(services: Services, pending: Rejection | Reassignment) -> None:
    """Write a modal's decision once Slack has closed the modal. What can no longer
    land is told to the user in a DM: the modal that would have shown it is gone."""
    try:
        pending.record(services)
    except Refused as refusal:
        services.slack.chat_postMessage(
            channel=pending.user_id,
            text=md(
                "Your {} of *{}* did not go through. ",
                pending.what,
                lead_label(services, pending.handoff),
            )
            + refusal.text,
        )


def _decide(
    services: Services,
    handoff_id: int,
    write: Callable[[Session], Handoff | None],
    *,
    user_id: str | None = None,
    attempt: str | None = None,
    done: Callable[[Handoff], None] | None = None,
) -> Handoff:
    """Run a decision's `write` (None: it lost the race), then wake the outbox and
    report it (`done`). Losing to the same person's identical decision (`user_id`,
    `attempt`) is a quiet refusal."""
    try:
        decided = write_retrying(services, write)
    except OperationalError:
        logger.exception("decision on handoff %s not written: the database stayed busy", handoff_id)
        raise Refused(
            "I could not save your decision: the database stayed busy. Please try again."
        ) from None
    if decided is None:
        raise _refuse_lost_race(services, handoff_id, user_id, attempt)
    services.delivery.wake()
    if done is not None:
        done(decided)
    return decided


def _log_decision(
    services: Services,
    handoff: Handoff,
    decision: str,
    *,
    reason: str | None = None,
    detail: str = "",
) -> None:
    """The decision's line in the log and its counts in the metrics (after the commit)."""
    metrics.DECISIONS.labels(decision).inc()
    if reason is not None:
        metrics.REJECTIONS.labels(reason).inc()
    with services.db.session() as session:
        lead_id = session.scalar(select(Lead.external_id).where(Lead.id == handoff.lead_id))
    words = " ".join(filter(None, [decision, reason and f"({reason})", detail]))
    lead_event(lead_id or f"#{handoff.lead_id}", "decided", words, decision=decision)


def write_retrying(services: Services, work: Callable[[Session], T]) -> T:
    """`work` in a write transaction, retried while the database is busy (a write lock
    held elsewhere, a serialization failure, a lost connection) until it lands or
    WRITE_BUDGET_SECONDS pass: for what a user asked for after Slack had its ack.
    Repeating is safe: a failed attempt rolled everything back, and a claim only
    touches an open row. The Slack users the directory learned before the ack are
    saved here too, never before it. Raises OperationalError when the budget is spent."""
    deadline = time.monotonic() + WRITE_BUDGET_SECONDS
    pause = 0.05
    while True:
        try:
            with services.db.transaction() as session:
                result = work(session)
                services.directory.save(session)
            return result
        except OperationalError as exc:
            if time.monotonic() + pause >= deadline:
                raise
            logger.warning("write retried: database busy (%s)", exc.orig)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _reassigned_why(services: Services, handoff: Handoff, user_id: str) -> str:
    """Why the new owner has the lead, in words (shown escaped: no mentions here).

    Looked up before the ack, with the other checks (reads only).
    """
    by = services.directory.email_of(user_id) or "a manager"
    if by == handoff.owner_email:
        return f"passed on by {by}"
    return f"reassigned by {by} (was with {handoff.owner_email})"


def _recycled(reason: Reason, at: datetime) -> dict[str, Any]:
    """What a recycle writes on the lead: it leaves sales (not ready), and only intent
    after `at` can bring it back, not before its reason's cooldown ends."""
    if reason.action != "recycle":
        return {}
    return {
        "ready": False,
        "recycled_at": at,
        "returns_after": at + timedelta(days=reason.cooldown_days)
        if reason.cooldown_days
        else None,
    }


def _settle(
    session: Session,
    services: Services,
    handoff: Handoff,
    *,
    lead_status: str,
    now: datetime,
    action: str,
    actor: str,
    lead_values: dict[str, Any] | None = None,
    **detail: Any,
) -> None:
    """What every final decision does, in the deciding transaction."""
    close_clock(
        session, services.definitions.at_version(handoff.definition_version), handoff, at=now
    )
    values = {"status": lead_status, "updated_at": now, **(lead_values or {})}
    session.execute(update(Lead).where(Lead.id == handoff.lead_id).values(**values))
    if values.get("returns_after") is not None:
        detail["returns_after"] = values["returns_after"].isoformat(timespec="seconds")
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
        ("salesforce", bool(services.salesforce_write_back) and _from_salesforce(session, handoff)),
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


def _enqueue_owner_write_back(
    session: Session, services: Services, handoff_id: int, now: datetime
) -> None:
    """With sources.yml `hubspot.write_back.owner: true`, the new owner goes to HubSpot."""
    hub = services.sources.hubspot if services.sources else None
    options = hub.hubspot if hub else None
    if options and options.write_back.owner and services.settings.hubspot_token is not None:
        outbox.enqueue(
            session,
            kind=HUBSPOT_OWNER,
            payload={"handoff_id": handoff_id},
            dedupe_key=f"handoff:{handoff_id}:{HUBSPOT_OWNER}",
            handoff_id=handoff_id,
            now=now,
        )


def _from_salesforce(session: Session, handoff: Handoff) -> bool:
    """Only a lead polled from Salesforce has a Lead record to write the decision to."""
    lead = session.get(Lead, handoff.lead_id)
    return lead is not None and lead.external_id.startswith("salesforce:")


def _enqueue_card_update(session: Session, handoff: Handoff, now: datetime) -> None:
    outbox.enqueue(
        session,
        kind=CARD_UPDATE,
        payload={"handoff_id": handoff.id},
        dedupe_key=f"handoff:{handoff.id}:{handoff.status}",
        handoff_id=handoff.id,
        now=now,
    )
