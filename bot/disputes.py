"""Disputes: marketing challenges a rejection, the rep's manager upholds or reopens it.

The marketing owner (the definition's `owners.marketing`) disputes from the digest's
Dispute button (a modal for the note) or with `/handoff dispute LEAD NOTE`. The rep's
manager (`handoff.managers`; the sales owner for a rep without one) gets a DM with
the lead, the rejection and marketing's note, and Reopen / Uphold; nobody else may
decide. Reopen hands the lead to the same rep again as a new handoff with a fresh
clock (it continues the lead's round: `max_cycles` does not count it); Uphold closes
the dispute. Either way marketing hears the outcome and the digest counts it.

One dispute per rejection (a unique key), and the first decision wins (a conditional
UPDATE), so double clicks and two processes are safe. Like decisions, what a click
causes is written in one transaction and sent through the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from bot import clock
from bot.access import Viewer
from bot.blocks.common import Mrkdwn, code, md, mention, section
from bot.blocks.disputes import (
    DisputeModel,
    outcome_text,
    request_blocks,
    request_text,
)
from bot.cards import post_to_user
from bot.decisions import Refused, in_slack, lead_label, load, write_retrying
from bot.delivery import sender
from bot.handoffs import NewHandoff, open_handoffs
from bot.logs import lead_event
from bot.send_failures import Permanent, Retry
from bot.services import Services
from store import audit, outbox
from store import disputes as dispute_store
from store.models import Dispute, DisputeStatus, Handoff, HandoffStatus, Lead, LeadStatus, Outbox

logger = logging.getLogger(__name__)
T = TypeVar("T")

DISPUTE_REQUEST = "dispute_request"
DISPUTE_OUTCOME = "dispute_outcome"
DISPUTE_UPDATE = "dispute_update"
NOTE_LIMIT = 3000
USAGE = Mrkdwn("Usage: `/handoff dispute LEAD NOTE` (the lead's id, then why marketing disagrees).")


def _marketing_only(services: Services, user_id: str) -> None:
    marketing = services.definition.owners.marketing.lower()
    if Viewer(services, user_id).email != marketing:
        who = in_slack(services, marketing)
        named = md(" ({})", who) if who else ""
        raise Refused(md("Only the definition's marketing owner{} can dispute a rejection.", named))


def _disputable(services: Services, handoff: Handoff) -> None:
    if handoff.status != HandoffStatus.REJECTED:
        raise Refused(md("Only a rejection can be disputed; this handoff is {}.", handoff.status))
    with services.db.session() as session:
        existing = dispute_store.of_handoff(session, handoff.id)  # type: ignore[arg-type]
    if existing is not None:
        raise Refused(md("This rejection was already disputed ({}).", existing.status))


def can_dispute(services: Services, handoff_id: Any, user_id: str) -> Handoff:
    """The rejected handoff, if this user may dispute it now (before the modal opens)."""
    _marketing_only(services, user_id)
    handoff = load(services, handoff_id)
    _disputable(services, handoff)
    return handoff


def note_problem(note: str | None) -> str | None:
    if not (note or "").strip():
        return "Say why marketing disagrees: the manager decides on it."
    if len(note or "") > NOTE_LIMIT:
        return f"Keep the note under {NOTE_LIMIT} characters."
    return None


@dataclass(frozen=True)
class PendingDispute:
    """A dispute checked with reads only (before the ack), to be written after it."""

    what: ClassVar[str] = "dispute"
    handoff: Handoff
    user_id: str
    note: str
    at: datetime

    def record(self, services: Services) -> Dispute:
        """Write it and queue the manager's DM; Refused when it was disputed first."""
        definition = services.definition
        handoff = self.handoff
        manager = definition.manager_of(handoff.owner_email) or definition.owners.sales.lower()

        def work(session: Session) -> Dispute:
            dispute = Dispute(
                handoff_id=handoff.id,  # type: ignore[arg-type]
                lead_id=handoff.lead_id,
                by=self.user_id,
                note=self.note,
                at=self.at,
                manager_email=manager,
            )
            session.add(dispute)
            session.flush()
            audit.record(
                session,
                at=self.at,
                actor=self.user_id,
                action="disputed",
                lead_id=handoff.lead_id,
                handoff_id=handoff.id,
                note=self.note,
                manager=manager,
            )
            outbox.enqueue(
                session,
                kind=DISPUTE_REQUEST,
                payload={"dispute_id": dispute.id},
                dedupe_key=f"dispute:{dispute.id}:ask",
                handoff_id=handoff.id,
                now=self.at,
            )
            return dispute

        try:
            dispute = _write_or_refuse(services, work)
        except IntegrityError:
            raise Refused("This rejection was already disputed.") from None
        services.delivery.wake()
        return dispute


def check_dispute(
    services: Services,
    handoff_id: Any,
    user_id: str,
    *,
    note: str | None,
    now: datetime | None = None,
) -> PendingDispute:
    """Everything a dispute from the modal needs, checked with reads only."""
    problem = note_problem(note)
    if problem:
        raise Refused(problem)
    handoff = can_dispute(services, handoff_id, user_id)
    return PendingDispute(handoff, user_id, (note or "").strip(), now or clock.now())


def check_command(
    services: Services, user_id: str, text: str, *, now: datetime | None = None
) -> PendingDispute:
    """`/handoff dispute LEAD NOTE`: the lead's latest rejection, checked with reads only."""
    lead_id, _, note = text.strip().partition(" ")
    if not lead_id or not note.strip():
        raise Refused(USAGE)
    _marketing_only(services, user_id)
    problem = note_problem(note)
    if problem:
        raise Refused(problem)
    with services.db.session() as session:
        handoff = dispute_store.latest_rejection(session, lead_id)
    if handoff is None:
        raise Refused(md("Lead {} has no rejection to dispute.", code(lead_id)))
    _disputable(services, handoff)
    return PendingDispute(handoff, user_id, note.strip(), now or clock.now())


def dispute(
    services: Services, handoff_id: Any, user_id: str, *, note: str, now: datetime | None = None
) -> Dispute:
    return check_dispute(services, handoff_id, user_id, note=note, now=now).record(services)


def record_after_ack(services: Services, pending: PendingDispute) -> None:
    """Write a dispute once Slack has its answer; what cannot land is told in a DM."""
    try:
        pending.record(services)
    except Refused as refusal:
        services.slack.chat_postMessage(
            channel=pending.user_id,
            text=md(
                "Your dispute of *{}* did not go through. ",
                lead_label(services, pending.handoff),
            )
            + refusal.text,
        )


# --- the manager decides ------------------------------------------------------------------


def _load(services: Services, dispute_id: Any) -> Dispute:
    text = str(dispute_id) if isinstance(dispute_id, int | str) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise Refused("That button does not belong to a dispute I know.")
    with services.db.session() as session:
        found = session.get(Dispute, int(text))
    if found is None:
        raise Refused("That dispute is no longer in Handoff.")
    return found


def decide(
    services: Services,
    dispute_id: Any,
    user_id: str,
    outcome: str,
    *,
    now: datetime | None = None,
) -> Dispute:
    """Reopen or uphold; only the manager the dispute went to may, and only once."""
    assert outcome in (DisputeStatus.REOPENED, DisputeStatus.UPHELD)
    found = _load(services, dispute_id)
    if Viewer(services, user_id).email != found.manager_email:
        who = in_slack(services, found.manager_email)
        raise Refused(md("Only {} can decide on this dispute.", who or "the rep's manager"))
    at = now or clock.now()

    def work(session: Session) -> Dispute | None:
        if not dispute_store.claim(
            session,
            found.id,
            status=outcome,
            decided_by=user_id,
            decided_at=at,  # type: ignore[arg-type]
        ):
            return None
        detail: dict[str, Any] = {}
        if outcome == DisputeStatus.REOPENED:
            detail["new_handoff_id"] = _reopen(services, session, found, user_id, at)
        audit.record(
            session,
            at=at,
            actor=user_id,
            action=f"dispute_{outcome}",
            lead_id=found.lead_id,
            handoff_id=found.handoff_id,
            **detail,
        )
        for kind, key in ((DISPUTE_OUTCOME, "outcome"), (DISPUTE_UPDATE, "update")):
            outbox.enqueue(
                session,
                kind=kind,
                payload={"dispute_id": found.id},
                dedupe_key=f"dispute:{found.id}:{key}",
                handoff_id=found.handoff_id,
                now=at,
            )
        decided = session.get(Dispute, found.id)
        assert decided is not None
        session.expunge(decided)
        return decided

    decided = _write_or_refuse(services, work)
    if decided is None:
        raise _decided_first(services, found.id, user_id, outcome)  # type: ignore[arg-type]
    services.delivery.wake()
    lead_event(f"#{found.lead_id}", "dispute", outcome, decision=outcome)
    return decided


def _write_or_refuse(services: Services, work: Callable[[Session], T]) -> T:
    """`work` retried while the database is busy (bot/decisions.py); a refusal the user
    reads when it stayed busy."""
    try:
        return write_retrying(services, work)
    except OperationalError:
        logger.exception("dispute not written: the database stayed busy")
        raise Refused(
            "I could not save that: the database stayed busy. Please try again."
        ) from None


def _decided_first(services: Services, dispute_id: int, user_id: str, outcome: str) -> Refused:
    with services.db.session() as session:
        current = session.get(Dispute, dispute_id)
    assert current is not None
    if current.decided_by == user_id and current.status == outcome:
        return Refused(md("You already {} this dispute.", outcome), quiet=True)
    return Refused(
        md("This dispute was already {} by {}.", current.status, mention(current.decided_by))
    )


def _reopen(
    services: Services, session: Session, found: Dispute, user_id: str, at: datetime
) -> int:
    """A new handoff of the lead to the rep who rejected it, with a fresh clock."""
    rejected = session.get(Handoff, found.handoff_id)
    assert rejected is not None
    current = dispute_store.open_handoff_of(session, found.lead_id)
    if current is not None:
        raise Refused(
            md("The lead is already with sales again ({}): nothing to reopen.", current.owner_email)
        )
    by = Viewer(services, user_id).email or "the manager"
    (new_id,) = open_handoffs(
        session,
        definition=services.definition,
        new=[
            NewHandoff(
                lead_id=found.lead_id,
                owner_email=rejected.owner_email,
                owner_user_id=rejected.owner_user_id,
                routed_by=f"reopened by {by} after marketing disputed the rejection",
                previous_id=rejected.id,
            )
        ],
        now=at,
        actor=user_id,
    )
    session.execute(
        update(Lead)
        .where(Lead.id == found.lead_id)
        .values(status=LeadStatus.HANDED_OFF, recycled_at=None, returns_after=None, updated_at=at)
    )
    session.execute(update(Dispute).where(Dispute.id == found.id).values(new_handoff_id=new_id))
    return new_id


# --- messages -----------------------------------------------------------------------------


def _model(services: Services, dispute_id: int) -> tuple[Dispute, DisputeModel]:
    with services.db.session() as session:
        found = session.get(Dispute, dispute_id)
        rejected = session.get(Handoff, found.handoff_id) if found else None
        lead = session.get(Lead, found.lead_id) if found else None
    if found is None or rejected is None or lead is None:
        raise Permanent("the dispute no longer exists")
    reason = services.definition.reason(rejected.reason_id) if rejected.reason_id else None
    return found, DisputeModel(
        dispute_id=found.id,  # type: ignore[arg-type]
        company=lead.company or lead.external_id,
        lead_external_id=lead.external_id,
        rep_user_id=rejected.owner_user_id,
        rep_email=rejected.owner_email,
        reason_label=reason.label if reason else (rejected.reason_id or "no reason"),
        action=rejected.action,
        rep_note=rejected.note,
        marketing_user_id=found.by,
        marketing_note=found.note,
        status=found.status,
        decided_by=found.decided_by,
    )


def _requests_posted(session: Session, sent: list[tuple[Outbox, dict[str, Any]]]) -> None:
    """Where each manager's DM went (to update it with the outcome)."""
    for item, result in sent:
        if "ts" in result:
            session.execute(
                update(Dispute)
                .where(Dispute.id == item.payload["dispute_id"])
                .values(channel=result["channel"], ts=result["ts"])
            )


@sender(DISPUTE_REQUEST, on_sent=_requests_posted)
def send_request(services: Services, item: Outbox) -> dict[str, Any]:
    found, model = _model(services, item.payload["dispute_id"])
    manager = services.directory.by_email(found.manager_email)
    if manager is None or manager.user_id is None:
        raise Permanent(f"manager {found.manager_email} not found in Slack")
    return post_to_user(
        services, manager.user_id, text=request_text(model), blocks=request_blocks(model)
    )


@sender(DISPUTE_UPDATE)
def send_update(services: Services, item: Outbox) -> dict[str, Any]:
    found, model = _model(services, item.payload["dispute_id"])
    if not found.channel or not found.ts:
        raise Retry(timedelta(seconds=5), "the manager's message is not posted yet")
    services.slack.chat_update(
        channel=found.channel, ts=found.ts, text=request_text(model), blocks=request_blocks(model)
    )
    return {"channel": found.channel, "ts": found.ts}


@sender(DISPUTE_OUTCOME)
def send_outcome(services: Services, item: Outbox) -> dict[str, Any]:
    found, model = _model(services, item.payload["dispute_id"])
    text = outcome_text(model)
    return post_to_user(services, found.by, text=text, blocks=[section(text)])
