"""Routing's own moves of an open lead: after a breach (`handoff.sla.reassign_at`) and
when a manager sends an away rep's leads back through routing.

Each move runs in one transaction under the routing lock (store/routing.py), so
rotation, caps and "who already had it" are read as committed, and a move is a
conditional claim of the open handoff (decisions.hand_over): exactly once, also
with several processes sweeping the same timers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from bot import clock
from bot.blocks.common import as_mrkdwn, md, mention, section
from bot.blocks.routing import moved_text, stuck_blocks, stuck_text
from bot.cards import post_to_user, stored_lead
from bot.decisions import hand_over
from bot.definition import Definition, RoutingRule
from bot.delivery import sender
from bot.leads import lead_from_stored
from bot.routing import account_index, day_start, pick, route, team_of_rep
from bot.send_failures import Permanent
from bot.services import Services
from store import audit, outbox
from store import routing as routing_store
from store.models import Handoff, HandoffStatus, Lead, Outbox

logger = logging.getLogger(__name__)

MOVED = "sla_moved"  # to the manager: the lead moved on after a breach
STUCK = "sla_stuck"  # to the manager: nobody is left in the pool, please decide
# How an automatic move is signed on the card ("Reassigned to @x by Handoff (...)").
AUTO_ACTOR = "Handoff (no decision in time)"


@dataclass(frozen=True)
class Next:
    owner: str
    why: str
    route_key: str | None = None


class RoutingLock:
    """The routing lock and what is read under it, for one transaction's moves."""

    def __init__(self, session: Session, definition: Definition, now: datetime) -> None:
        self.session, self.definition = session, definition
        routing = definition.handoff.routing
        self.rotation = routing_store.positions(session, [rule.key for rule in routing])
        self.away = routing_store.away_reps(session, now=now)
        capped = [rule.key for rule in routing if rule.daily_cap is not None]
        self.loads = routing_store.day_loads(session, capped, since=day_start(definition, now))

    def took(self, rule_key: str | None, owner: str, next_position: int | None) -> None:
        """Keep the rotation and the day's loads true for the next move in this batch."""
        if rule_key is None:
            return
        if next_position is not None:
            self.rotation[rule_key] = next_position
            routing_store.save_position(self.session, rule_key, next_position)
        if rule_key in self.loads:
            self.loads[rule_key][owner] = self.loads[rule_key].get(owner, 0) + 1


def earlier_owners(session: Session, handoff: Handoff) -> set[str]:
    """Everyone who had this lead in this chain of handoffs (previous_id links)."""
    owners = {handoff.owner_email}
    previous = handoff.previous_id
    while previous is not None:
        row = session.execute(
            select(Handoff.owner_email, Handoff.previous_id).where(Handoff.id == previous)
        ).first()
        if row is None:
            break
        owners.add(row.owner_email)
        previous = row.previous_id
    return owners


def _pool_rule(definition: Definition, key: str | None) -> RoutingRule | None:
    for rule in definition.handoff.routing:
        if rule.key == key and rule.reps:
            return rule
    return None


def next_in_pool(lock: RoutingLock, handoff: Handoff, skip: set[str]) -> Next | None:
    """The next rep of the handoff's pool: the rotation of the rule that routed it, or
    the owner's team (the reps with the same manager) when no rule did."""
    definition = lock.definition
    unavailable = lock.away | skip
    rule = _pool_rule(definition, handoff.route_key)
    if rule is not None:
        turn = pick(
            rule,
            position=lock.rotation.get(rule.key, 0),
            unavailable=unavailable,
            loads=lock.loads.get(rule.key, {}),
        )
        if turn.rep is None:
            return None
        lock.took(rule.key, turn.rep, turn.next_position)
        size = len(rule.reps)
        return Next(turn.rep, f"next in the rotation of {size} reps", rule.key)
    team = team_of_rep(definition, handoff.owner_email)
    start = team.index(handoff.owner_email) + 1 if handoff.owner_email in team else 0
    for step in range(len(team)):
        rep = team[(start + step) % len(team)]
        if rep not in unavailable:
            manager = definition.manager_of(rep)
            return Next(rep, f"next on {manager}'s team")
    return None


def on_breach(session: Session, services: Services, handoff_id: int, *, now: datetime) -> None:
    """A reassign timer fired (in the sweep's transaction): move the open lead on to the
    next rep of its pool who has not had it, else ask the manager to decide."""
    definition = services.definition
    handoff = session.get(Handoff, handoff_id)
    if handoff is None or handoff.status != HandoffStatus.OPEN:
        return
    lock = RoutingLock(session, definition, now)
    skip = earlier_owners(session, handoff)
    found = next_in_pool(lock, handoff, skip)
    manager = definition.manager_of(handoff.owner_email) or definition.owners.sales
    if found is None:
        audit.record(
            session,
            at=now,
            actor=AUTO_ACTOR,
            action="reassign_stuck",
            lead_id=handoff.lead_id,
            handoff_id=handoff.id,
            why="nobody left in the pool who has not had it",
        )
        outbox.enqueue(
            session,
            kind=STUCK,
            payload={"handoff_id": handoff.id, "manager": manager},
            dedupe_key=f"handoff:{handoff.id}:stuck",
            handoff_id=handoff.id,
            now=now,
        )
        return
    successor_id = hand_over(
        session,
        services,
        handoff.id,
        owner_email=found.owner,
        routed_by=f"no decision from {handoff.owner_email} in time; {found.why}",
        actor=AUTO_ACTOR,
        at=now,
        route_key=found.route_key,
    )
    if successor_id is None:  # decided meanwhile: nothing to move
        return
    outbox.enqueue(
        session,
        kind=MOVED,
        payload={"handoff_id": successor_id, "from": handoff.owner_email, "manager": manager},
        dedupe_key=f"handoff:{successor_id}:moved",
        handoff_id=successor_id,
        now=now,
    )


def on_breach_safely(
    session: Session, services: Services, handoff_id: int, *, now: datetime
) -> None:
    """`on_breach` in a savepoint: a move that fails is logged and undone alone, so the
    sweep's other timers (reminders, escalations) still fire."""
    try:
        with session.begin_nested():
            on_breach(session, services, handoff_id, now=now)
    except Exception:
        logger.exception("auto-reassign of handoff %s failed", handoff_id)


def _percent(definition: Definition) -> str:
    fraction = definition.handoff.sla.reassign_at or 0
    return f"{fraction * 100:g}%"


def _manager(services: Services, item: Outbox) -> Any:
    email = item.payload["manager"]
    person = services.directory.by_email(email)
    if person is None:
        raise Permanent(f"manager {email} not found in Slack")
    return person


def _person(services: Services, email: str) -> Any:
    person = services.directory.by_email(email)
    return mention(person.user_id) if person else as_mrkdwn(email)


@sender(MOVED)
def send_moved(services: Services, item: Outbox) -> dict[str, Any]:
    manager = _manager(services, item)
    with services.db.session() as session:
        handoff = session.get(Handoff, item.payload["handoff_id"])
        lead = session.get(Lead, handoff.lead_id) if handoff else None
    if handoff is None or lead is None:
        raise Permanent("the handoff no longer exists")
    text = moved_text(
        lead.company or lead.external_id,
        _person(services, item.payload["from"]),
        _person(services, handoff.owner_email),
        _percent(services.definition),
    )
    return post_to_user(services, manager.user_id, text=text, blocks=[section(text)])


@sender(STUCK)
def send_stuck(services: Services, item: Outbox) -> dict[str, Any]:
    manager = _manager(services, item)
    with services.db.session() as session:
        handoff = session.get(Handoff, item.payload["handoff_id"])
        lead = session.get(Lead, handoff.lead_id) if handoff else None
    if handoff is None or lead is None:
        raise Permanent("the handoff no longer exists")
    if handoff.status != HandoffStatus.OPEN:
        return {"skipped": f"handoff is {handoff.status}"}
    text = stuck_text(
        lead.company or lead.external_id,
        _person(services, handoff.owner_email),
        _percent(services.definition),
    )
    link = None
    if handoff.channel and handoff.ts:
        link = services.slack.chat_getPermalink(channel=handoff.channel, message_ts=handoff.ts).get(
            "permalink"
        )
    return post_to_user(
        services,
        manager.user_id,
        text=text,
        blocks=stuck_blocks(handoff.id, text, link),  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class AwayResult:
    moved: list[str]  # the new owners, one per lead moved
    left: int  # open leads nobody could take


def reassign_away(
    services: Services, rep_email: str, *, actor: str, actor_email: str, now: datetime | None = None
) -> AwayResult:
    """Send every open lead of an away rep through routing (which skips them), in one
    transaction; leads routing finds nobody for stay with the rep."""
    now = now or clock.now()
    definition = services.definition
    moved: list[str] = []
    left = 0
    with services.db.transaction() as session:
        lock = RoutingLock(session, definition, now)
        lock.away.add(rep_email)
        rows = session.execute(
            select(Handoff, Lead)
            .join(Lead, Lead.id == Handoff.lead_id)
            .where(Handoff.owner_email == rep_email, Handoff.status == HandoffStatus.OPEN)
            .order_by(Handoff.id)
        ).all()
        leads = [lead_from_stored(stored_lead(lead)) for _, lead in rows]
        accounts = (
            account_index(session, leads)
            if any(rule.match_account for rule in definition.handoff.routing)
            else None
        )
        for (handoff, _), lead_in in zip(rows, leads, strict=True):
            decision = route(
                lead_in,
                definition,
                rotation=lock.rotation,
                away=lock.away,
                loads=lock.loads,
                accounts=accounts,
            )
            if decision.owner is None:
                left += 1
                continue
            successor = hand_over(
                session,
                services,
                handoff.id,
                owner_email=decision.owner,
                routed_by=f"{rep_email} is away, reassigned by {actor_email}; {decision.why}",
                actor=actor,
                at=now,
                route_key=decision.rule_key,
            )
            if successor is None:
                continue
            lock.took(decision.rotation_key, decision.owner, decision.next_position)
            moved.append(decision.owner)
    services.delivery.wake()
    return AwayResult(moved, left)


def away_outcome(result: AwayResult, rep: str) -> Any:
    """What the manager is told after the one click."""
    if not result.moved and not result.left:
        return md("{} holds no open leads now: nothing to reassign.", rep)
    text = md("Reassigned {} of {}'s open leads", len(result.moved), rep)
    if result.moved:
        counts: dict[str, int] = {}
        for owner in result.moved:
            counts[owner] = counts.get(owner, 0) + 1
        text += md(" ({})", ", ".join(f"{n} to {owner}" for owner, n in counts.items()))
    text += md(".")
    if result.left:
        text += md(" {} stay with them: nobody else in routing can take them now.", result.left)
    return text
