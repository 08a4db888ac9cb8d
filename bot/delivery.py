"""The outbox worker: sends what the outbox holds, paced, retried, never twice.

Each outbox `kind` has a sender registered with `@sender("kind")`. A sender
returns a small JSON result (stored on the row) or raises:
- `Retry(after)`: not now (a channel's pace, a 429) — try again later, not an error;
- `Permanent(why)`: no retry will help (recorded as failed, with the reason);
- anything else: logged and retried with exponential backoff up to MAX_ATTEMPTS.
A sender may also register `on_sent(session, [(item, result), ...])`: database
changes that belong to the sends (the card's channel and ts), made in the same
transaction that marks the rows sent.

Rows are leased to one worker by a conditional UPDATE, so several processes
can share a database. The background loop keeps up to `batch` rows in flight
on a pool of sender threads; it claims more and records what came back in one
transaction, once half have come back. While a send lasts its lease is renewed,
and an outcome not recorded yet (the database down) holds up further claims, so
no worker, this one included, takes a row that is being sent. A transaction
that queues a new handoff's card can lease it to the worker itself (`claim_now`)
and start it the moment it commits (`send_now`): the DM does not wait for the
loop to wake and claim it in a transaction of its own. A crash leaves
the lease to expire and the row is sent on the next pass (so a crash between
Slack's answer and that commit can repeat one message: Slack has no idempotency
key for chat.postMessage).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from sqlmodel import Session

from bot import clock
from store import outbox
from store.models import Outbox

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 12
BACKOFF_CAP = timedelta(minutes=15)
# Slack allows about one message a second per channel.
CHANNEL_INTERVAL = timedelta(seconds=1)
# How long a send's outcome may wait to be recorded with others (seconds).
RECORD_DELAY = 0.02

Sender = Callable[["Services", Outbox], dict[str, Any]]
OnSent = Callable[[Session, list[tuple[Outbox, dict[str, Any]]]], None]
_SENDERS: dict[str, Sender] = {}
_ON_SENT: dict[str, OnSent] = {}


def sender(kind: str, *, on_sent: OnSent | None = None) -> Callable[[Sender], Sender]:
    def register(function: Sender) -> Sender:
        _SENDERS[kind] = function
        if on_sent is not None:
            _ON_SENT[kind] = on_sent
        return function

    return register


class Retry(Exception):  # noqa: N818 - it is an instruction, not an error
    def __init__(self, after: timedelta, why: str = "") -> None:
        super().__init__(why or f"retry in {after.total_seconds():.1f}s")
        self.after = after


class Permanent(Exception):  # noqa: N818
    pass


class ChannelPacer:
    """One post at a time per channel, the next CHANNEL_INTERVAL after Slack
    answered the previous one (in this process).

    Spacing from the answer rather than from the start means network jitter can
    never bring two posts closer than the interval at Slack's end, so pacing
    alone does not draw 429s.
    """

    _PRUNE_AT = 10_000  # channels remembered before the idle ones are forgotten

    def __init__(self, interval: timedelta = CHANNEL_INTERVAL) -> None:
        self.interval = interval
        self._free_at: dict[str, datetime] = {}
        self._posting: set[str] = set()
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, channel: str) -> Iterator[None]:
        """Hold the channel for one post, or raise Retry for when it is free."""
        self._take(channel)
        try:
            yield
        finally:
            self._release(channel)

    def back_off(self, channel: str, until: datetime) -> None:
        """Slack said 429: nothing to this channel before `until`."""
        with self._lock:
            self._free_at[channel] = max(until, self._free_at.get(channel, until))

    def _take(self, channel: str) -> None:
        now = clock.now()
        with self._lock:
            if channel in self._posting:
                raise Retry(self.interval, f"posting to {channel}")
            free_at = self._free_at.get(channel)
            if free_at is not None and free_at > now:
                raise Retry(free_at - now, f"pacing {channel}")
            self._posting.add(channel)

    def _release(self, channel: str) -> None:
        now = clock.now()
        with self._lock:
            self._posting.discard(channel)
            free_at = now + self.interval
            self._free_at[channel] = max(free_at, self._free_at.get(channel, free_at))
            if len(self._free_at) > self._PRUNE_AT:
                self._free_at = {c: at for c, at in self._free_at.items() if at > now}


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=2 ** min(attempts, 10)), BACKOFF_CAP)


def slack_retry_after(exc: SlackApiError) -> timedelta | None:
    """The Retry-After of a 429, when that is what this error is."""
    if exc.response.status_code != 429:
        return None
    value = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
    try:
        return timedelta(seconds=float(value[0] if isinstance(value, list) else value))
    except (TypeError, ValueError):
        return timedelta(seconds=1)


@dataclass
class Outcome:
    """What became of one claimed row, waiting to be recorded."""

    item: Outbox
    status: str  # sent | retry | failed | unattempted
    result: dict[str, Any] | None = None
    retry_at: datetime | None = None
    error: str = ""
    done_at: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> int:
        assert self.item.id is not None
        return self.item.id


def record(session: Session, outcomes: list[Outcome]) -> None:
    """Write outcomes (and the senders' on_sent changes) in the caller's transaction."""
    by_status: dict[str, list[Outcome]] = {}
    for done in outcomes:
        by_status.setdefault(done.status, []).append(done)
    sent = by_status.get("sent", [])
    outbox.mark_sent(session, {done.id: done.result or {} for done in sent}, now=clock.now())
    by_kind: dict[str, list[tuple[Outbox, dict[str, Any]]]] = {}
    for done in sent:
        by_kind.setdefault(done.item.kind, []).append((done.item, done.result or {}))
    for kind, items in by_kind.items():
        on_sent = _ON_SENT.get(kind)
        if on_sent is not None:
            on_sent(session, items)
    retries = by_status.get("retry", [])
    outbox.mark_retry(session, [(d.id, d.retry_at or clock.now(), d.error) for d in retries])
    outbox.mark_failed(session, [(done.id, done.error) for done in by_status.get("failed", [])])
    outbox.release(session, [done.id for done in by_status.get("unattempted", [])])


class Delivery:
    """Runs the senders over due outbox rows, on a small pool of threads."""

    def __init__(self, services: Services, *, threads: int = 4, batch: int = 32) -> None:
        self.services = services
        self.pacer = ChannelPacer()
        self.batch = batch
        self.threads = threads
        self.lease = LEASE
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # The only state other threads touch, under _lock: outcomes back from the pool
        # and not recorded yet, and rows send_now started that the loop has not seen.
        self._lock = threading.Lock()
        self._finished: list[Outcome] = []
        self._started: list[int] = []
        # Rows the loop claimed and has not recorded yet -> when their lease was last
        # taken (time.monotonic()); read and written by the loop thread only.
        self._held: dict[int, float] = {}

    # -- one pass (drain, tests, CLI) ------------------------------------------
    def run_once(self, *, kinds: tuple[str, ...] | None = None) -> int:
        """Claim and send what is due now, record it; returns how many rows were handled."""
        with self.services.db.transaction() as session:
            items = self._claim(session, self.batch, kinds)
        if not items:
            return 0
        if self._pool is None or len(items) == 1:
            outcomes = [self._send(item) for item in items]
        else:
            outcomes = list(self._pool.map(self._send, items))
        self._record(outcomes)
        return len(items)

    def drain(self, *, timeout: float = 30.0) -> None:
        """Send everything due now (tests, CLI commands that post)."""
        deadline = clock.now() + timedelta(seconds=timeout)
        while self.run_once() and clock.now() < deadline:
            pass

    def _claim(
        self, session: Session, limit: int, kinds: tuple[str, ...] | None = None
    ) -> list[Outbox]:
        now = clock.now()
        return outbox.claim_due(session, now=now, lease=self.lease, limit=limit, kinds=kinds)

    def _send(self, item: Outbox) -> Outcome:
        """Run the row's sender; never raises, the outcome says what happened."""
        handler = _SENDERS.get(item.kind)
        try:
            if handler is None:
                raise Permanent(f"no sender for outbox kind '{item.kind}'")
            result = handler(self.services, item)
        except Retry as exc:
            return Outcome(item, "retry", retry_at=clock.now() + exc.after, error=str(exc))
        except Permanent as exc:
            logger.error("outbox %s #%s failed for good: %s", item.kind, item.id, exc)
            return Outcome(item, "failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure is retried, with the traceback logged
            logger.exception("outbox %s #%s attempt %s failed", item.kind, item.id, item.attempts)
            error = f"{type(exc).__name__}: {exc}"
            if item.attempts >= MAX_ATTEMPTS:
                return Outcome(item, "failed", error=error)
            retry_at = clock.now() + backoff(item.attempts)
            return Outcome(item, "retry", retry_at=retry_at, error=error)
        return Outcome(item, "sent", result=result)

    def _record(self, outcomes: list[Outcome]) -> None:
        with self.services.db.transaction() as session:
            self._write(session, outcomes)

    def _write(self, session: Session, outcomes: list[Outcome]) -> None:
        """The outcomes, and the Slack users the senders looked up on the way."""
        if outcomes:
            record(session, outcomes)
            self.services.directory.save(session)

    # -- sending as soon as a transaction commits ------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def claim_now(self, session: Session, *, kind: str, handoff_ids: list[int]) -> list[Outbox]:
        """Lease these handoffs' new `kind` rows to this worker in the caller's
        transaction, for `send_now` once it commits: a lead's card then starts on its
        way without waiting for the loop to wake and claim it. At most `batch` rows;
        none when the worker is not running (the loop claims the rest as usual)."""
        if not self.running:
            return []
        return outbox.claim_for_handoffs(
            session, handoff_ids[: self.batch], kind=kind, now=clock.now(), lease=self.lease
        )

    def send_now(self, items: list[Outbox]) -> None:
        """Start rows leased to this worker, once their transaction has committed.
        A worker that is not running (or has stopped meanwhile) hands them back."""
        if not items:
            return
        pool = self._pool
        with self._lock:
            accepting = pool is not None and not self._stop.is_set()
            if accepting:
                self._started.extend(item.id for item in items)  # type: ignore[misc]
                futures = [(pool.submit(self._send, item), item) for item in items]  # type: ignore[union-attr]
        if not accepting:
            self._record([Outcome(item, "unattempted") for item in items])
            return
        # Outside the lock: a callback runs at once, on this thread, for a future
        # already done, and _finish takes the lock.
        for future, item in futures:
            future.add_done_callback(lambda f, item=item: self._finish(f, item))

    # -- the background loop --------------------------------------------------
    def wake(self) -> None:
        """Called after a commit that queued work, so it goes out at once."""
        self._wake.set()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="handoff-send")
        self._thread = threading.Thread(target=self._loop, name="handoff-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the sends in progress and record them; rows not started yet go
        back to the outbox for the next start."""
        with self._lock:  # send_now submits nothing once this is set
            self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._record_separately(self._take_finished())
        except Exception:  # noqa: BLE001 - leases expire; the rows are sent after a restart
            logger.exception("could not record the last outbox outcomes")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: a wake() during it is not lost
            try:
                claimed = self._pass()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                logger.exception("outbox pass failed; trying again in a second")
                self._stop.wait(1.0)
                continue
            if not claimed:
                self._wake.wait(timeout=self._wait_time())

    def _wait_time(self) -> float:
        with self._lock:
            first_done = self._finished[0].done_at if self._finished else None
        if first_done is not None:  # outcomes waiting to be recorded with more
            return max(0.0, RECORD_DELAY - (time.monotonic() - first_done))
        # With half the batch out, a send coming back wakes the loop.
        wait = 1.0 if len(self._held) >= self.batch // 2 else self._idle_wait()
        return max(0.0, min(wait, self._next_renewal_in()))

    def _pass(self) -> int:
        """Record what came back and claim for the free places in flight, in one
        transaction; returns how many rows were claimed.

        Under load that is one transaction per half batch: rows are claimed once
        half the places are free, and outcomes are recorded then, or when nothing
        else is in flight, or RECORD_DELAY after the oldest came back. The same
        transaction renews the lease of a send still going after half a lease (a
        Retry-After slept in the client, a slow network), so no worker takes it.
        """
        outcomes = self._take_finished(merge_started=True)
        in_flight = len(self._held) - len(outcomes)
        room = self.batch - in_flight
        limit = room if room >= self.batch // 2 else 0
        sending = self._held.keys() - {outcome.id for outcome in outcomes}
        renew = self._leases_to_renew(sending)
        if not (limit or renew or self._record_now(outcomes, in_flight)):
            self._put_back(outcomes)
            return 0
        try:
            with self.services.db.transaction() as session:
                self._write(session, outcomes)
                outbox.renew_leases(session, renew, until=clock.now() + self.lease)
                items = [
                    item
                    for item in (self._claim(session, limit) if limit else [])
                    if item.id not in sending  # its lease ran out, but its outcome will come
                ]
        except Exception:
            self._record_separately(outcomes)
            raise
        taken = time.monotonic()
        for outcome in outcomes:
            self._held.pop(outcome.id, None)
        self._held.update({item_id: taken for item_id in renew})
        assert self._pool is not None
        for item in items:
            self._held[item.id] = taken  # type: ignore[index]
            future = self._pool.submit(self._send, item)
            future.add_done_callback(lambda f, item=item: self._finish(f, item))
        return len(items)

    def _leases_to_renew(self, sending: set[int]) -> list[int]:
        due = time.monotonic() - self.lease.total_seconds() / 2
        return [i for i in sending if self._held[i] < due]

    def _next_renewal_in(self) -> float:
        if not self._held:
            return 1.0
        return min(self._held.values()) + self.lease.total_seconds() / 2 - time.monotonic()

    def _finish(self, future: Future[Outcome], item: Outbox) -> None:
        outcome = Outcome(item, "unattempted") if future.cancelled() else future.result()
        with self._lock:
            self._finished.append(outcome)
        self._wake.set()

    def _take_finished(self, *, merge_started: bool = False) -> list[Outcome]:
        """The outcomes back so far; with merge_started, also hold what send_now
        started (in the same step, so no outcome comes back for a row not held)."""
        with self._lock:
            outcomes, self._finished = self._finished, []
            if merge_started:
                taken = time.monotonic()
                self._held.update((item_id, taken) for item_id in self._started)
                self._started = []
        return outcomes

    def _put_back(self, outcomes: list[Outcome]) -> None:
        with self._lock:
            self._finished[:0] = outcomes

    @staticmethod
    def _record_now(outcomes: list[Outcome], in_flight: int) -> bool:
        if not outcomes:
            return False
        return in_flight == 0 or time.monotonic() - outcomes[0].done_at >= RECORD_DELAY

    def _record_separately(self, outcomes: list[Outcome]) -> None:
        """One transaction per outcome, so one bad row cannot hold the others back;
        what still fails stays in hand (and blocks claiming) until the next pass."""
        kept = []
        for outcome in outcomes:
            try:
                self._record([outcome])
            except Exception:  # noqa: BLE001
                logger.exception("recording outbox #%s failed", outcome.id)
                kept.append(outcome)
            else:
                self._held.pop(outcome.id, None)
        self._put_back(kept)

    def _idle_wait(self) -> float:
        """Sleep until the next row falls due (paced or backed off), at most a second."""
        now = clock.now()
        try:
            with self.services.db.session() as session:
                due = outbox.next_due_at(session, now=now)
        except Exception:  # noqa: BLE001
            return 1.0
        if due is None:
            return 1.0
        return min(1.0, max(0.01, (due - now).total_seconds()))
