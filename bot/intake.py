"""Intake: store leads, judge them, and hand off the ones that newly qualify.

Shared by `POST /leads` and `handoff import`. Work is done in batches, one
transaction each: upsert by external id (re-sending the same lead changes
nothing), a verdict per change, and — only on the transition to ready — a
handoff with its Slack card queued in the outbox. Slack is never called here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError, OperationalError

from bot import metrics
from bot.definition import Definition
from bot.explain import why_not_handed_off
from bot.handoffs import CARD, NewHandoff, hold_handoffs, open_handoffs
from bot.judge import Verdict, judge
from bot.leads import LeadIn
from bot.logs import lead_event
from bot.routing import (
    account_index,
    company_key,
    day_start,
    email_domain,
    pool_managers,
    route,
)
from store import audit
from store import leads as lead_store
from store import routing as routing_store
from store.db import Database
from store.models import LeadStatus

if TYPE_CHECKING:
    from bot.delivery import Delivery

logger = logging.getLogger(__name__)

HANDED_OFF = "handed_off"
NURTURE = "nurture"
MISSING_CONTEXT = "missing_context"
UNCHANGED = "unchanged"
UPDATED = "updated"  # re-judged while already with sales or decided: no new handoff
NO_OWNER = "no_owner"
HELD = "held"  # every rep of the pool is at the daily cap: the pool's manager assigns it
HISTORY = "history"  # qualified in a backfill: stored as qualified, never handed off

# A lead already with sales (or decided) is re-judged but never handed off again.
_SETTLED = {LeadStatus.HANDED_OFF, LeadStatus.ACCEPTED, LeadStatus.DISQUALIFIED}
_RETRIES = 5

# Why a lead was not handed off when its verdict is not the reason.
_SAME_AS_BEFORE = "sent before with the same data: nothing to judge again"
_QUALIFIED_BEFORE = "qualified before this update: only a newly qualified lead is handed off"
_HISTORY = "imported as history: judged and kept, never handed off"
_ALREADY = {
    status: f"already {words}: judged again and kept, not handed off again"
    for status, words in (
        (LeadStatus.HANDED_OFF, "with sales"),
        (LeadStatus.ACCEPTED, "accepted by sales"),
        (LeadStatus.DISQUALIFIED, "disqualified"),
    )
}


class DatabaseBusy(Exception):  # noqa: N818 - a condition the caller answers, not a crash
    """The database stayed busy (another writer's lock, a lost connection) past the
    budget; the batch was rolled back, nothing of it stored. Sending it again is safe."""


@dataclass(frozen=True)
class LeadOutcome:
    id: str
    outcome: str
    score: int = 0
    qualified: bool = False
    owner: str | None = None
    why: str | None = None  # how it was routed, or why it was not handed off
    missing: tuple[str, ...] = field(default_factory=tuple)
    # A lead the verdict kept from sales keeps the verdict, and the sentence is
    # written only when asked for (`explain`): an import never needs it.
    verdict: Verdict | None = field(default=None, repr=False, compare=False)
    definition: Definition | None = field(default=None, repr=False, compare=False)

    def explain(self) -> str | None:
        if self.why or self.verdict is None or self.definition is None:
            return self.why
        return why_not_handed_off(self.verdict, self.definition) or None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "outcome": self.outcome,
            "score": self.score,
            "qualified": self.qualified,
        }
        if self.owner:
            data["owner"] = self.owner
        why = self.explain()
        if why:
            data["why"] = why
        if self.missing:
            data["missing"] = list(self.missing)
        return data


def verdict_detail(verdict: Verdict) -> dict[str, Any]:
    """Compact JSON of a verdict, built by hand: this runs once per imported row."""
    return {
        "criteria": [
            {"id": c.id, "passed": c.passed, "value": c.value, "missing": c.missing}
            for c in verdict.criteria
        ],
        "signals": [
            {"id": s.id, "count": s.count, "points": s.points, "uncapped": s.uncapped}
            for s in verdict.signals
        ],
        "ignored": [{"name": i.name, "at": i.at, "why": i.why} for i in verdict.ignored],
        "mql": verdict.mql,
        "hot_at": verdict.hot_at,
    }


def _lead_values(lead: LeadIn) -> dict[str, Any]:
    return {
        "email": lead.email,
        "name": lead.name,
        "title": lead.title,
        "company": lead.company,
        "owner": lead.owner,
        "source": lead.source,
        "campaign": lead.campaign,
        "attributes": lead.attributes,
        "signals": [{"name": s["name"], "at": s["at"].isoformat()} for s in lead.signals],
        "company_key": company_key(lead.company),
        "email_domain": email_domain(lead.email),
    }


def _as_of(lead: LeadIn, now: datetime) -> datetime:
    """When a backfilled lead last changed, as far as its data says: the latest of its
    creation and its signals (never after now); now when it has neither."""
    times = [signal["at"] for signal in lead.signals]
    if lead.created_at is not None:
        times.append(lead.created_at)
    return min(max(times), now) if times else now


def _unique_batches(leads: Iterable[LeadIn], size: int) -> Iterator[list[LeadIn]]:
    """Cut batches so no id appears twice in one (a repeat starts the next batch)."""
    batch: list[LeadIn] = []
    seen: set[str] = set()
    for lead in leads:
        if lead.id in seen or len(batch) >= size:
            yield batch
            batch, seen = [], set()
        batch.append(lead)
        seen.add(lead.id)
    if batch:
        yield batch


class Intake:
    """Stores, judges and hands off leads. Given a running `delivery`, the cards of
    a batch's handoffs are leased to it in the batch's transaction and sent right
    after the commit; without one (import, demo) they wait in the outbox.

    `busy_budget` (seconds) bounds how long a batch waits for a busy database, retries
    included, before DatabaseBusy; None: each attempt waits the database's own timeout.

    `history` (a backfill, `handoff import --history`): leads are stored and judged as of
    their last known activity (the latest of `created_at` and their signals), and none
    is handed off, so no card, reminder or escalation comes of them.
    """

    def __init__(
        self,
        db: Database,
        definition: Definition,
        *,
        actor: str = "intake",
        delivery: Delivery | None = None,
        busy_budget: float | None = None,
        history: bool = False,
    ) -> None:
        self.db = db
        self.history = history
        self.definition = definition
        self.actor = actor
        self.delivery = delivery
        self.busy_budget = busy_budget
        routing = definition.handoff.routing
        self._rule_keys = [rule.key for rule in routing]
        self._capped_keys = [rule.key for rule in routing if rule.daily_cap is not None]
        self._match_accounts = any(rule.match_account for rule in routing)

    def ingest(
        self,
        leads: Iterable[LeadIn],
        *,
        now: datetime,
        batch_size: int = 1000,
        dry_run: bool = False,
    ) -> list[LeadOutcome]:
        return list(self.stream(leads, now=now, batch_size=batch_size, dry_run=dry_run))

    def stream(
        self,
        leads: Iterable[LeadIn],
        *,
        now: datetime,
        batch_size: int = 1000,
        dry_run: bool = False,
    ) -> Iterator[LeadOutcome]:
        """Like `ingest`, yielding each batch's outcomes as it commits: flat memory for a file.

        A dry run writes every batch in one transaction, rolled back at the end, so that
        a repeated id and the round-robin see the earlier batches, as in a real run.
        """
        batches = _unique_batches(leads, batch_size)
        if dry_run:
            with self.db.transaction() as session:
                try:
                    for batch in batches:
                        yield from self._write_batch(session, batch, now=now)[0]
                finally:
                    session.rollback()
            return
        for batch in batches:
            yield from self._ingest_batch(batch, now=now)

    def _ingest_batch(self, batch: Sequence[LeadIn], *, now: datetime) -> list[LeadOutcome]:
        # Concurrent intake of the same new lead on PostgreSQL loses the race on the
        # unique external id; the retry then sees the stored lead and says "unchanged".
        # A busy database (OperationalError: locked, serialization failure, connection
        # lost) is retried within the budget, then reported as DatabaseBusy.
        deadline = None if self.busy_budget is None else time.monotonic() + self.busy_budget
        for attempt in range(1, _RETRIES + 1):
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise DatabaseBusy("the database stayed busy")
            try:
                with self.db.transaction(busy_timeout=wait) as session:
                    outcomes, handoff_ids = self._write_batch(session, batch, now=now)
                    cards = self._claim_cards(session, handoff_ids)
                break
            except OperationalError as exc:
                # orig: the driver's own words ("database is locked"), never the SQL or
                # its parameters, which hold lead data.
                if attempt == _RETRIES or (deadline is not None and time.monotonic() >= deadline):
                    raise DatabaseBusy(f"the database stayed busy: {exc.orig}") from exc
                logger.warning("intake batch retried: database busy (%s)", exc.orig)
            except IntegrityError as exc:
                if attempt == _RETRIES:
                    raise
                logger.warning("intake batch retried after a conflict (%s)", type(exc).__name__)
        self._send_cards(cards, queued=len(handoff_ids))  # committed: never part of a retry
        return outcomes

    def _claim_cards(self, session: Any, handoff_ids: list[int]) -> list[Any]:
        if self.delivery is None or not handoff_ids:
            return []
        return self.delivery.claim_now(session, kind=CARD, handoff_ids=handoff_ids)

    def _send_cards(self, cards: list[Any], *, queued: int) -> None:
        """Start the cards leased in the batch's transaction; wake the worker for the
        rest (only then: a wake costs the worker a claiming transaction)."""
        if self.delivery is None:
            return
        self.delivery.send_now(cards)
        if len(cards) < queued:
            self.delivery.wake()

    def _write_batch(
        self, session: Any, batch: Sequence[LeadIn], *, now: datetime
    ) -> tuple[list[LeadOutcome], list[int]]:
        """Write the batch; returns the outcomes and the ids of the handoffs opened."""
        definition = self.definition
        known = lead_store.known_leads(session, (lead.id for lead in batch))
        outcomes: list[LeadOutcome | None] = [None] * len(batch)
        new_rows: list[dict[str, Any]] = []
        new_index: list[int] = []
        new_verdicts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        verdict_rows: list[dict[str, Any]] = []
        to_route: list[int] = []
        lead_ids: list[int | None] = [None] * len(batch)
        verdict_base = {
            "definition_version": definition.version,
            "definition_fingerprint": definition.fingerprint,
            "judged_at": now,
        }

        for i, lead in enumerate(batch):
            payload_hash = lead.payload_hash()
            previous = known.get(lead.id)
            if previous is not None and previous.payload_hash == payload_hash:
                outcomes[i] = LeadOutcome(lead.id, UNCHANGED, why=_SAME_AS_BEFORE)
                continue
            as_of = _as_of(lead, now) if self.history else now
            verdict = judge(lead, definition, as_of)
            why = None
            if previous is not None and previous.status in _SETTLED:
                status, outcome = previous.status, UPDATED
                why = _ALREADY[previous.status]
            elif self.history and verdict.ready:
                status, outcome, why = LeadStatus.NURTURE, HISTORY, _HISTORY
            elif verdict.ready and not (previous is not None and previous.ready):
                status, outcome = LeadStatus.HANDED_OFF, HANDED_OFF
                to_route.append(i)
            elif verdict.qualified and verdict.missing:
                status, outcome = LeadStatus.MISSING_CONTEXT, MISSING_CONTEXT
            else:
                status, outcome = LeadStatus.NURTURE, NURTURE
                if verdict.ready:
                    why = _QUALIFIED_BEFORE
            outcomes[i] = LeadOutcome(
                lead.id,
                outcome,
                verdict.score,
                verdict.qualified,
                why=why,
                missing=verdict.missing,
                verdict=verdict,
                definition=definition,
            )
            values = _lead_values(lead)
            values.update(
                payload_hash=payload_hash,
                status=status,
                qualified=verdict.qualified,
                ready=verdict.ready,
                hot=verdict.hot,
                score=verdict.score,
                updated_at=as_of,
            )
            verdict_row = {
                **verdict_base,
                "judged_at": as_of,
                "qualified": verdict.qualified,
                "hot": verdict.hot,
                "score": verdict.score,
                "fit_passed": verdict.fit_passed,
                "missing": list(verdict.missing),
                "detail": verdict_detail(verdict),
            }
            if previous is None:
                created = lead.created_at
                values.update(
                    external_id=lead.id,
                    created_at=min(created, as_of) if created is not None else as_of,
                )
                new_rows.append(values)
                new_index.append(i)
                new_verdicts.append(verdict_row)
            else:
                lead_ids[i] = previous.id
                values["b_id"] = previous.id
                updates.append(values)
                verdict_rows.append({**verdict_row, "lead_id": previous.id})

        for i, lead_id, verdict_row in zip(
            new_index, lead_store.insert_leads(session, new_rows), new_verdicts, strict=True
        ):
            lead_ids[i] = lead_id
            verdict_rows.append({**verdict_row, "lead_id": lead_id})
        lead_store.update_leads(session, updates)
        lead_store.insert_verdicts(session, verdict_rows)

        handoff_ids = (
            self._hand_off(session, batch, to_route, lead_ids, outcomes, now=now)
            if to_route
            else []
        )
        return [outcome for outcome in outcomes if outcome is not None], handoff_ids

    def _hand_off(
        self,
        session: Any,
        batch: Sequence[LeadIn],
        indexes: list[int],
        lead_ids: list[int | None],
        outcomes: list[LeadOutcome | None],
        *,
        now: datetime,
    ) -> list[int]:
        definition = self.definition
        away = routing_store.away_reps(session, now=now)
        # Leads whose explicit owner is not away need no rotation: skip reading it (and
        # its lock). Everything counted below is read after the lock.
        needs_rotation = any(not batch[i].owner or batch[i].owner in away for i in indexes)
        rotation = routing_store.positions(session, self._rule_keys) if needs_rotation else {}
        loads = (
            routing_store.day_loads(session, self._capped_keys, since=day_start(definition, now))
            if needs_rotation and self._capped_keys
            else {}
        )
        accounts = (
            account_index(session, [batch[i] for i in indexes])
            if needs_rotation and self._match_accounts
            else None
        )
        new: list[NewHandoff] = []
        held: list[NewHandoff] = []
        other_managers: list[list[str]] = []
        changed_keys: set[str] = set()
        unrouted: list[dict[str, Any]] = []
        for i in indexes:
            lead, lead_id, outcome = batch[i], lead_ids[i], outcomes[i]
            assert lead_id is not None and outcome is not None
            decision = route(
                lead, definition, rotation=rotation, away=away, loads=loads, accounts=accounts
            )
            if decision.held is not None:
                manager, *others = pool_managers(definition, decision.held)
                held.append(NewHandoff(lead_id, manager, decision.why, route_key=decision.held.key))
                other_managers.append(others)
                outcomes[i] = LeadOutcome(lead.id, HELD, outcome.score, True, why=decision.why)
                continue
            if decision.owner is None:
                unrouted.append({"b_id": lead_id, "status": LeadStatus.NURTURE, "ready": False})
                audit.record(
                    session,
                    at=now,
                    actor=self.actor,
                    action="not_routed",
                    lead_id=lead_id,
                    why=decision.why,
                )
                outcomes[i] = LeadOutcome(lead.id, NO_OWNER, outcome.score, True, why=decision.why)
                continue
            if decision.rotation_key is not None and decision.next_position is not None:
                rotation[decision.rotation_key] = decision.next_position
                changed_keys.add(decision.rotation_key)
            if decision.rule_key in loads:
                day = loads[decision.rule_key]
                day[decision.owner] = day.get(decision.owner, 0) + 1
            if accounts is not None:
                accounts.add(lead, decision.owner)
            new.append(
                NewHandoff(lead_id, decision.owner, decision.why, route_key=decision.rule_key)
            )
            outcomes[i] = LeadOutcome(
                lead.id, HANDED_OFF, outcome.score, True, owner=decision.owner, why=decision.why
            )
        lead_store.update_leads(session, unrouted)
        for key in changed_keys:
            routing_store.save_position(session, key, rotation[key])
        opened = open_handoffs(session, definition=definition, new=new, now=now, actor=self.actor)
        if held:
            hold_handoffs(
                session,
                definition=definition,
                held=held,
                others=other_managers,
                now=now,
                actor=self.actor,
            )
        return opened


def report_received(result: dict[str, Any], *, via: str = "") -> None:
    """A lead's outcome (its 202 JSON) as a line in the log and a count in the metrics:
    the same for POST /leads, the HubSpot webhook and a poll."""
    outcome = result["outcome"]
    metrics.LEADS.labels(outcome).inc()
    detail = f"{via}{outcome}, score {result['score']}"
    if result.get("owner"):
        detail += f", handed off to {result['owner']}"
        metrics.HANDOFFS.inc()
    lead_event(result["id"], "received", detail, outcome=outcome, owner=result.get("owner"))
