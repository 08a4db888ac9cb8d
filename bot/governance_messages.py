"""The owners' DMs about a proposed change, sent from the outbox: each rendered from
the proposal as it is when it leaves (so a DM that left late already shows the first
approval), posted once per owner, then updated in place as the proposal moves on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session

from bot.blocks.common import Mrkdwn
from bot.blocks.governance import ProposalView, note_blocks, proposal_blocks, proposal_text
from bot.cards import post_to_user
from bot.delivery import Permanent, Retry, sender
from bot.services import Services
from store import governance as store
from store.governance import ROLES
from store.models import Outbox

PROPOSAL_DM = "proposal_dm"
PROPOSAL_UPDATE = "proposal_update"
GOVERNANCE_NOTE = "governance_note"
_NOT_POSTED_YET = timedelta(seconds=5)


def _view(session: Session, proposal_id: int, role: str) -> ProposalView:
    row = store.get(session, proposal_id)
    if row is None:
        raise Permanent(f"proposal #{proposal_id} no longer exists")
    stored = row.backtest or {}
    approvals = {r: user for r in ROLES if (user := getattr(row, f"{r}_approved_by")) is not None}
    return ProposalView(
        id=proposal_id,
        role=role,
        active_version=stored.get("against", 0),
        proposed_by=row.proposed_by,
        note=row.note,
        changes=tuple(stored.get("changes") or ()),
        backtest=stored.get("summary") or {},
        state=row.state,
        approvals=approvals,
        number=row.number,
        ended_by=row.ended_by,
        end_note=row.end_note,
    )


def _posted(session: Session, sent: list[tuple[Outbox, dict[str, Any]]]) -> None:
    for item, result in sent:
        if "ts" in result:
            store.message_posted(
                session,
                item.payload["proposal_id"],
                item.payload["role"],
                result["channel"],
                result["ts"],
            )


@sender(PROPOSAL_DM, on_sent=_posted)
def send_proposal(services: Services, item: Outbox) -> dict[str, Any]:
    proposal_id, role = item.payload["proposal_id"], item.payload["role"]
    with services.db.session() as session:
        view = _view(session, proposal_id, role)
        message = next((m for m in store.messages(session, proposal_id) if m.role == role), None)
    if message is None:
        raise Permanent(f"proposal #{proposal_id} has no {role} owner to ask")
    person = services.directory.by_email(message.email)
    if person is None:
        raise Permanent(f"definition owner {message.email} not found in Slack")
    return post_to_user(
        services, person.user_id, text=proposal_text(view), blocks=proposal_blocks(view)
    )


@sender(PROPOSAL_UPDATE)
def send_proposal_update(services: Services, item: Outbox) -> dict[str, Any]:
    proposal_id, role = item.payload["proposal_id"], item.payload["role"]
    with services.db.session() as session:
        view = _view(session, proposal_id, role)
        message = next((m for m in store.messages(session, proposal_id) if m.role == role), None)
    if message is None:
        return {"skipped": "no message"}
    if not message.channel or not message.ts:
        raise Retry(_NOT_POSTED_YET, "proposal DM not posted yet")
    services.slack.chat_update(
        channel=message.channel,
        ts=message.ts,
        text=proposal_text(view),
        blocks=proposal_blocks(view),
    )
    return {"channel": message.channel, "ts": message.ts}


@sender(GOVERNANCE_NOTE)
def send_note(services: Services, item: Outbox) -> dict[str, Any]:
    to = item.payload["to"]
    if "@" in to:
        person = services.directory.by_email(to)
        if person is None:
            return {"skipped": f"{to} is not in Slack"}
        user_id = person.user_id
    else:
        user_id = to
    text = Mrkdwn(item.payload["text"])  # built with md() when queued
    return post_to_user(services, user_id, text=text, blocks=note_blocks(text))
