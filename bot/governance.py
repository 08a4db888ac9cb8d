"""Changing the definition: a proposal both owners approve in Slack, or a forced switch.

`propose` validates the candidate, backtests it on stored history and asks both
owners (`owners.marketing`, `owners.sales` of the active version) in a DM with
Approve / Decline. Only those two may act. The first approval is shown to the other
owner (their DM is updated); the second activates the proposal as the next version,
and every process switches to it at its next sweep (bot/versions.py). Decline (with
a note) ends it; a newer proposal withdraws an open one. `force` is the audited
emergency path. Every message goes through the outbox, so a Slack outage loses
nothing; every change of state is a conditional UPDATE (store/governance.py), so
double clicks and two processes approving at once activate exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from bot import access, clock
from bot.backtest import Backtest, run_backtest
from bot.blocks.common import Mrkdwn, md, mention
from bot.changes import describe
from bot.decisions import Refused, write_retrying
from bot.definition import Definition, DefinitionError
from bot.governance_messages import GOVERNANCE_NOTE, PROPOSAL_DM, PROPOSAL_UPDATE
from bot.services import Services
from bot.versions import APPROVED, FORCED, parse_text
from store import audit, outbox
from store import governance as store
from store.governance import ROLES
from store.models import DefinitionState, DefinitionVersion

logger = logging.getLogger(__name__)
T = TypeVar("T")

NOTE_LIMIT = 3000
EXAMPLES = 5


class ProposalError(ValueError):
    """A proposal (or forced activation) refused before anyone was asked: every problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _candidate(text: str, source: str) -> Definition:
    try:
        return parse_text(text, source=source)
    except DefinitionError as exc:
        raise ProposalError([f"{source}: {p}" for p in exc.problems]) from None


def _owners_in_slack(services: Services, definition: Definition) -> dict[str, str]:
    """Role -> email of both owners, once Slack knows them both; else ProposalError
    naming each one Slack does not know."""
    found: dict[str, str] = {}
    problems = []
    for role in ROLES:
        email = getattr(definition.owners, role)
        try:
            person = services.directory.by_email(email)
        except (SlackApiError, OSError) as exc:
            problems.append(f"owners.{role}: cannot look up {email} in Slack: {exc}")
            continue
        if person is None:
            problems.append(
                f"owners.{role}: {email} is not in Slack (no active user with that email); "
                "nothing was sent"
            )
            continue
        found[role] = email
    if problems:
        raise ProposalError(problems)
    return found


def summarize(report: Backtest, current: Definition, candidate: Definition) -> dict[str, Any]:
    """What the owners are shown of a backtest (JSON, stored with the proposal)."""
    filtered = []
    for reason_id, count in report.filtered_by_reason.most_common():
        reason = candidate.reason(reason_id) or current.reason(reason_id)
        filtered.append([reason.label if reason else reason_id, count])
    return {
        "leads": report.leads,
        "newly_qualified": len(report.newly_qualified),
        "no_longer_qualified": len(report.no_longer_qualified),
        "rejected": report.rejected["kept"] + report.rejected["filtered"],
        "rejected_filtered": report.rejected["filtered"],
        "filtered_by_reason": filtered,
        "accepted": report.accepted["kept"] + report.accepted["dropped"],
        "accepted_dropped": report.accepted["dropped"],
        "lost_examples": report.dropped_accepted[:EXAMPLES],
    }


def _store_proposal(
    session: Session,
    active: Definition,
    candidate: Definition,
    text: str,
    *,
    by: str,
    note: str | None,
    now: datetime,
    summary: dict[str, Any] | None = None,
) -> DefinitionVersion:
    """Store `text` as a proposal against the active version (with the change in words
    and, when given, the backtest's summary); a newer proposal withdraws any open one."""
    backtest: dict[str, Any] = {"changes": describe(active, candidate), "against": active.version}
    if summary is not None:
        backtest["summary"] = summary
    row = store.add(
        session,
        DefinitionVersion(
            fingerprint=candidate.fingerprint,
            yaml_text=text,
            state=DefinitionState.PROPOSED,
            created_at=now,
            proposed_by=by,
            note=note,
            backtest=backtest,
        ),
    )
    assert row.id is not None
    for older in store.open_proposals(session):
        if older.id != row.id:
            _withdraw(session, older, by=row.id, at=now)
    return row


def propose(
    services: Services, definition_text: str, *, note: str | None, proposed_by: str
) -> DefinitionVersion:
    """Store a proposed definition, backtest it and ask both owners in Slack.

    Raises ProposalError (every problem; nothing stored, nobody asked) for an invalid
    definition, one identical to the active version, or an owner Slack does not know.
    Returns the stored proposal (`.id` is its number). The DMs leave through the outbox.
    """
    services.definitions.refresh()
    active = services.definition
    candidate = _candidate(definition_text, "the proposal")
    if candidate.fingerprint == active.fingerprint:
        raise ProposalError(
            [f"the proposal is the active version {active.version}: nothing to change"]
        )
    asked = _owners_in_slack(services, active)
    summary = summarize(run_backtest(services.db, active, candidate), active, candidate)
    now = clock.now()
    with services.db.transaction() as session:
        row = _store_proposal(
            session,
            active,
            candidate,
            definition_text,
            by=proposed_by,
            note=_clip_note(note),
            now=now,
            summary=summary,
        )
        for role, email in asked.items():
            if role != "marketing" and email == asked["marketing"]:
                continue  # one person owns both: one DM, and their click approves for both
            store.save_message(session, row.id, role, email)
            outbox.enqueue(
                session,
                kind=PROPOSAL_DM,
                payload={"proposal_id": row.id, "role": role},
                dedupe_key=f"proposal:{row.id}:{role}",
                now=now,
            )
        audit.record(
            session, at=now, actor=proposed_by, action="definition_proposed", proposal=row.id
        )
    logger.info("definition change #%s proposed by %s: both owners asked", row.id, proposed_by)
    services.delivery.wake()
    return row


def _clip_note(note: str | None) -> str | None:
    note = (note or "").strip()
    return note[:NOTE_LIMIT] or None


def _withdraw(session: Session, older: DefinitionVersion, *, by: int, at: datetime) -> None:
    assert older.id is not None
    if store.end(
        session,
        older.id,
        DefinitionState.WITHDRAWN,
        by="handoff",
        at=at,
        note=f"superseded by #{by}",
    ):
        _update_messages(session, older.id, event=f"withdrawn:{by}", now=at)


def _update_messages(session: Session, proposal_id: int, *, event: str, now: datetime) -> None:
    """Re-render each owner's DM about the proposal in place."""
    for message in store.messages(session, proposal_id):
        outbox.enqueue(
            session,
            kind=PROPOSAL_UPDATE,
            payload={"proposal_id": proposal_id, "role": message.role},
            dedupe_key=f"proposal:{proposal_id}:{message.role}:{event}",
            now=now,
        )


def _notify(
    session: Session, recipients: list[str], text: Mrkdwn, *, key: str, now: datetime
) -> None:
    """A plain DM to each recipient (an email or a Slack user id), once per key."""
    for recipient in dict.fromkeys(recipients):
        outbox.enqueue(
            session,
            kind=GOVERNANCE_NOTE,
            payload={"to": recipient, "text": str(text)},
            dedupe_key=f"{key}:{recipient}"[:200],
            now=now,
        )


def _owner_emails(definition: Definition) -> list[str]:
    return [definition.owners.marketing, definition.owners.sales]


def _proposer(row: DefinitionVersion) -> list[str]:
    """The proposer, when Slack can reach them (an email; a CLI `$USER` is not)."""
    return [row.proposed_by] if "@" in row.proposed_by else []


# --- clicks ----------------------------------------------------------------------------------


def _roles_of(services: Services, user_id: str) -> list[str]:
    """The owner roles this Slack user holds in the active version (both, if one person)."""
    email = access.Viewer(services, user_id).email
    owners = services.definition.owners
    return [role for role in ROLES if email and getattr(owners, role).lower() == email]


def _not_owner(services: Services) -> Refused:
    owners = services.definition.owners
    return Refused(
        md(
            "Only the two owners of the definition ({} for marketing, {} for sales) can "
            "approve or decline a change to it.",
            owners.marketing,
            owners.sales,
        )
    )


def _load(services: Services, proposal_id: Any) -> DefinitionVersion:
    text = str(proposal_id) if isinstance(proposal_id, int | str) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise Refused("That button does not belong to a proposal I know.")
    with services.db.session() as session:
        row = store.get(session, int(text))
    if row is None:
        raise Refused("That proposal is not one I know.")
    return row


_ENDED = {
    DefinitionState.ACTIVE: "already approved: it is the active version",
    DefinitionState.SUPERSEDED: "already approved (a later version has replaced it since)",
    DefinitionState.DECLINED: "declined",
    DefinitionState.WITHDRAWN: "withdrawn",
}


def _closed(row: DefinitionVersion) -> Refused:
    why = f" ({row.end_note})" if row.end_note and row.state == DefinitionState.WITHDRAWN else ""
    return Refused(f"Proposed change #{row.id} is {_ENDED.get(row.state, row.state)}{why}.")


def check_owner(
    services: Services, proposal_id: Any, user_id: str
) -> tuple[DefinitionVersion, list[str]]:
    """The open proposal and the clicker's owner roles, or Refused saying why not."""
    row = _load(services, proposal_id)
    roles = _roles_of(services, user_id)
    if not roles:
        raise _not_owner(services)
    if row.state != DefinitionState.PROPOSED:
        raise _closed(row)
    return row, roles


@dataclass(frozen=True)
class Approval:
    proposal_id: int
    activated: int | None  # the version number it became, when this approval was the last


def approve(services: Services, proposal_id: Any, user_id: str) -> Approval:
    """One owner approves; the second approval activates. Refused: not an owner, the
    proposal is closed, or this owner approved already (quiet: their DM shows it)."""
    row, roles = check_owner(services, proposal_id, user_id)
    assert row.id is not None
    now = clock.now()
    definition = services.definition

    def work(session: Session) -> int | None:
        approved = [r for r in roles if store.approve(session, row.id, r, user_id=user_id, at=now)]
        current = store.get(session, row.id)
        assert current is not None
        session.refresh(current)
        if not approved:
            if current.state != DefinitionState.PROPOSED:
                raise _closed(current)
            raise Refused("You approved this change already.", quiet=True)
        audit.record(
            session,
            at=now,
            actor=user_id,
            action="definition_approved",
            proposal=row.id,
            roles=approved,
        )
        number = None
        if current.marketing_approved_by and current.sales_approved_by:
            by = ", ".join(dict.fromkeys(_owner_emails(definition)))  # who approved
            number = store.activate(session, row.id, how=APPROVED, by=by, at=now)
        if number is not None:
            audit.record(
                session,
                at=now,
                actor=by,
                action="definition_activated",
                proposal=row.id,
                version=number,
                how=APPROVED,
            )
            _update_messages(session, row.id, event="activated", now=now)
            _notify(
                session,
                _owner_emails(definition) + _proposer(current),
                md(
                    "Proposed change #{} to the lead definition is approved by both owners: "
                    "it is now the active version {}, in use within one sweep.",
                    row.id,
                    number,
                ),
                key=f"proposal:{row.id}:activated",
                now=now,
            )
        else:
            _update_messages(session, row.id, event=f"approved:{'+'.join(approved)}", now=now)
        return number

    number = _write(services, work, "approval")
    if number is not None:
        logger.info("definition change #%s approved by both owners: version %s", row.id, number)
        services.definitions.refresh()
    services.delivery.wake()
    return Approval(row.id, number)


@dataclass(frozen=True)
class Decline:
    proposal_id: int
    user_id: str
    note: str


def check_decline(services: Services, proposal_id: Any, user_id: str, note: str | None) -> Decline:
    """Reads only (before the modal's ack): Refused, or the decline to record."""
    row, _roles = check_owner(services, proposal_id, user_id)
    assert row.id is not None
    text = (note or "").strip()
    if not text:
        raise Refused("Say why you decline it: the other owner and the proposer read it.")
    return Decline(row.id, user_id, text[:NOTE_LIMIT])


def decline(services: Services, decision: Decline) -> bool:
    """End the proposal as declined; both owners and the proposer are told. False when it
    had closed meanwhile (the decliner is told)."""
    now = clock.now()
    definition = services.definition

    def work(session: Session) -> bool:
        ended = store.end(
            session,
            decision.proposal_id,
            DefinitionState.DECLINED,
            by=decision.user_id,
            at=now,
            note=decision.note,
        )
        row = store.get(session, decision.proposal_id)
        if ended and row is not None:
            audit.record(
                session,
                at=now,
                actor=decision.user_id,
                action="definition_declined",
                proposal=decision.proposal_id,
                note=decision.note,
            )
            _update_messages(session, decision.proposal_id, event="declined", now=now)
            _notify(
                session,
                _owner_emails(definition) + _proposer(row),
                md(
                    "Proposed change #{} to the lead definition was declined by {}: {}",
                    decision.proposal_id,
                    mention(decision.user_id),
                    decision.note,
                ),
                key=f"proposal:{decision.proposal_id}:declined",
                now=now,
            )
        elif row is not None:
            _notify(
                session,
                [decision.user_id],
                _closed(row).text,
                key=f"proposal:{decision.proposal_id}:late-decline",
                now=now,
            )
        return ended

    ended = _write(services, work, "decline")
    services.delivery.wake()
    return ended


def _write(services: Services, work: Callable[[Session], T], what: str) -> T:
    """An owner's click, written after its ack: retried while the database is busy, like
    a decision (bot/decisions.py); the owner reads why when it stayed busy."""
    try:
        return write_retrying(services, work)
    except OperationalError:
        logger.exception("definition %s not written: the database stayed busy", what)
        raise Refused(
            f"I could not save your {what}: the database stayed busy. Please try again."
        ) from None


# --- the emergency path ----------------------------------------------------------------------


def force(services: Services, definition_text: str, *, why: str, by: str) -> int:
    """Make a definition active at once, without the owners' approval (audited; both
    owners told; open proposals withdrawn). Returns its version number."""
    why = why.strip()
    problems = [] if why else ["--why: say why this cannot wait for both owners' approval"]
    try:
        candidate = _candidate(definition_text, "the definition")
    except ProposalError as exc:
        problems += exc.problems
    if problems:
        raise ProposalError(problems)
    services.definitions.refresh()
    active = services.definition
    if candidate.fingerprint == active.fingerprint:
        raise ProposalError([f"the definition is the active version {active.version} already"])
    now = clock.now()
    with services.db.transaction() as session:
        row = _store_proposal(session, active, candidate, definition_text, by=by, note=why, now=now)
        number = store.activate(session, row.id, how=FORCED, by=by, at=now, why=why)
        assert number is not None
        audit.record(
            session,
            at=now,
            actor=by,
            action="definition_forced",
            proposal=row.id,
            version=number,
            why=why,
            replaced=active.version,
        )
        _notify(
            session,
            _owner_emails(active) + _owner_emails(candidate),
            md(
                "The lead definition was switched to version {} by {} WITHOUT your approval "
                "(handoff definition activate --force). Why: {}. See it with "
                "`handoff definition diff {} {}`.",
                number,
                by,
                why,
                active.version,
                number,
            ),
            key=f"forced:{number}",
            now=now,
        )
    logger.warning("definition version %s activated by force by %s: %s", number, by, why)
    services.definitions.refresh()
    services.delivery.wake()
    return number
