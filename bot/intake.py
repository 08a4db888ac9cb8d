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
from bot.judge import IgnoredSignal, Verdict, judge
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
from bot.versions import ActiveDefinition
from store import audit
from store import leads as lead_store
from store import routing as routing_store
from store.db import Database
from store.leads import KnownLead
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
COOLING_DOWN = "cooling_down"  # recycled, qualified again, waiting out its cooldown
MAX_CYCLES = "max_cycles"  # recycled too often (handoff.max_cycles): stays with marketing
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
    returns_after: datetime | None = None  # a recycled lead is not handed off before it
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
        if self.returns_after is not None:
            data["returns_after"] = self.returns_after.isoformat()
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


def _recycled_at(previous: KnownLead | None) -> datetime | None:
    """When a lead still with marketing was last recycled (None: never, or it is with
    sales again): only intent after that counts towards its return."""
    if previous is None or previous.status in _SETTLED:
        return None
    return previous.recycled_at


def _still_cooling(previous: KnownLead, now: datetime) -> datetime | None:
    """The end of the lead's cooldown while it lasts, else None."""
    after = previous.returns_after
    return after if after is not None and now < after else None


def _back_from_cooldown(previous: KnownLead, now: datetime) -> bool:
    """A lead held only by its cooldown is judged again once it ends, even when it is
    sent unchanged: its new intent is already stored."""
    return previous.status == LeadStatus.COOLING_DOWN and _still_cooling(previous, now) is None


def _judge_since(
    lead: LeadIn, definition: Definition, now: datetime, recycled_at: datetime
) -> Verdict:
    """Judge a recycled lead on the intent that arrived after it was recycled: the old
    signals already had their say (they are listed as ignored, with why)."""
    fresh = [signal for signal in lead.signals if signal["at"] > recycled_at]
    if len(fresh) == len(lead.signals):
        return judge(lead, definition, now)
    verdict = judge(lead.model_copy(update={"signals": fresh}), definition, now)
    why = f"before the lead was recycled on {_day(recycled_at)}"
    old = tuple(
        IgnoredSignal(signal["name"], signal["at"].isoformat(), why)
        for signal in lead.signals
        if signal["at"] <= recycled_at
    )
    verdict.ignored = verdict.ignored + old
    return verdict


def _day(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at is not None else "an earlier date"


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
        definition: Definition | ActiveDefinition,
        *,
        actor: str = "intake",
        delivery: Delivery | None = None,
        busy_budget: float | None = None,
        history: bool = False,
    ) -> None:
        self.db = db
        self.history = history
        # A running app passes its ActiveDefinition: each batch is judged with the
        # version active when it starts (import and demo pass one Definition).
        self._definition = definition
        self.actor = actor
        self.delivery = delivery
        self.busy_budget = busy_budget

    @property
    def definition(self) -> Definition:
        source = self._definition
        return source if isinstance(source, Definition) else source.current

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
            if (
                previous is not None
                and previous.payload_hash == payload_hash
                and not _back_from_cooldown(previous, now)
            ):
                outcomes[i] = LeadOutcome(lead.id, UNCHANGED, why=_SAME_AS_BEFORE)
                continue
            as_of = _as_of(lead, now) if self.history else now
            recycled_at = _recycled_at(previous)
            verdict = (
                judge(lead, definition, as_of)
                if recycled_at is None
                else _judge_since(lead, definition, as_of, recycled_at)
            )
            why = None
            returns_after = None
            if previous is not None and previous.status in _SETTLED:
                status, outcome = previous.status, UPDATED
                why = _ALREADY[previous.status]
            elif self.history and verdict.ready:
                status, outcome, why = LeadStatus.NURTURE, HISTORY, _HISTORY
            elif recycled_at is not None and verdict.ready:
                assert previous is not None
                status, outcome, why, returns_after = self._comeback(session, previous, now)
                if outcome == HANDED_OFF:
                    to_route.append(i)
            elif verdict.ready and not (previous is not None and previous.ready):
                status, outcome = LeadStatus.HANDED_OFF, HANDED_OFF
                to_route.append(i)
            elif verdict.qualified and verdict.missing:
                status, outcome = LeadStatus.MISSING_CONTEXT, MISSING_CONTEXT
            else:
                status, outcome = LeadStatus.NURTURE, NURTURE
                if verdict.ready:
                    why = _QUALIFIED_BEFORE
            if recycled_at is not None and outcome not in (HANDED_OFF, MAX_CYCLES):
                assert previous is not None
                returns_after = _still_cooling(previous, now)
            outcomes[i] = LeadOutcome(
                lead.id,
                outcome,
                verdict.score,
                verdict.qualified,
                why=why,
                missing=verdict.missing,
                returns_after=returns_after,
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
            self._hand_off(session, definition, batch, to_route, lead_ids, outcomes, now=now)
            if to_route
            else []
        )
        return [outcome for outcome in outcomes if outcome is not None], handoff_ids

    def _comeback(
        self, session: Any, previous: KnownLead, now: datetime
    ) -> tuple[str, str, str | None, datetime | None]:
        """Status, outcome, why and return time of a recycled lead that new intent
        qualified again: handed off, unless max_cycles or its cooldown holds it back."""
        limit = self.definition.handoff.max_cycles
        if limit is not None:
            rounds = lead_store.handoff_rounds(session, [previous.id]).get(previous.id, 0)
            if rounds >= limit:
                why = (
                    f"handed off {rounds} time(s) already (handoff.max_cycles is {limit}): "
                    "it stays with marketing"
                )
                self._held(session, previous, now, why)
                return LeadStatus.NURTURE, MAX_CYCLES, why, None
        returns_after = _still_cooling(previous, now)
        if returns_after is not None:
            why = (
                "qualified again on new intent, but recycled on "
                f"{_day(previous.recycled_at)}: handed off when its cooldown ends"
            )
            self._held(session, previous, now, why, returns_after=returns_after.isoformat())
            return LeadStatus.COOLING_DOWN, COOLING_DOWN, why, returns_after
        return LeadStatus.HANDED_OFF, HANDED_OFF, None, None

    def _held(
        self, session: Any, previous: KnownLead, now: datetime, why: str, **detail: Any
    ) -> None:
        audit.record(
            session,
            at=now,
            actor=self.actor,
            action="kept_with_marketing",
            lead_id=previous.id,
            why=why,
            **detail,
        )

    def _hand_off(
        self,
        session: Any,
        definition: Definition,
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
        routing = definition.handoff.routing
        rule_keys = [rule.key for rule in routing]
        capped_keys = [rule.key for rule in routing if rule.daily_cap is not None]
        rotation = routing_store.positions(session, rule_keys) if needs_rotation else {}
        loads = (
            routing_store.day_loads(session, capped_keys, since=day_start(definition, now))
            if needs_rotation and capped_keys
            else {}
        )
        accounts = (
            account_index(session, [batch[i] for i in indexes])
            if needs_rotation and any(rule.match_account for rule in routing)
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
