"""The outbox worker: sends what the outbox holds, paced, retried, at least once.

Each outbox `kind` has a sender registered with `@sender("kind")`. A sender
returns a small JSON result (stored on the row) or raises:
- `Retry(after)`: not now (a channel's pace, a 429, a card not posted yet): no attempt;
- `Permanent(why)`: no retry will help: the row fails, logged once at ERROR;
- `Unavailable(why)`: the service is down or unreachable: tried again, never given up;
- anything else: logged and retried with exponential backoff up to MAX_ATTEMPTS.
Slack's errors and network failures are sorted into these by `classify`
(bot/send_failures.py), so a sender only raises what it knows better.
A sender may also register `on_sent(session, [(item, result), ...])`: database
changes that belong to the sends (the card's channel and ts), made in the same
transaction that marks the rows sent.

An outage of any length: the first send of a kind that finds its service
unavailable pauses that kind in this process (`Breaker`): its rows stay queued and
unclaimed, and one of them goes as a probe every PROBE_EVERY at most. When a send
gets through, the kind flows again and what queued meanwhile goes out at once.

Rows are leased to one worker by a conditional UPDATE, so several processes
can share a database. The background loop keeps up to `batch` rows claimed on a
pool of sender threads and records outcomes within RECORD_DELAY of their return
(at once when nothing else is being sent), in the transaction that claims more.
At most `window` sends are between their start and their recorded outcome
(`_Window`); an outcome that cannot be recorded (the database down) keeps its
place, so sending stops rather than the unrecorded pile growing. That bounds
what at-least-once costs: a crash (SIGKILL, power loss) repeats at most `window`
messages, as their leases run out and the rows are sent again (Slack has no
idempotency key for chat.postMessage). While a send lasts its lease is renewed,
only if it is still this worker's; a row whose lease ran out before its send
could start (the database stalled) is left to whoever took it.
A transaction that queues a new handoff's card can lease it to the worker itself
(`claim_now`) and start it the moment it commits (`send_now`): the DM does not
wait for the loop to wake and claim it in a transaction of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from bot import clock
from bot.send_failures import (  # senders also import the three from here
    Permanent,
    Retry,
    Unavailable,
    classify,
)
from store import outbox
from store.models import Outbox

if TYPE_CHECKING:
    from bot.services import Services

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# Sends that fail in a way not known to be transient: given up after this many.
MAX_ATTEMPTS = 12
BACKOFF_CAP = timedelta(minutes=15)
# While a service is unavailable, one probe per kind at least this often: when it
# is back, what queued goes out within this time (plus the sends themselves).
PROBE_EVERY = timedelta(seconds=10)
# Slack allows about one message a second per channel.
CHANNEL_INTERVAL = timedelta(seconds=1)
# Sender threads, and sends at most between their start and their recorded outcome:
# what a crash can repeat (README, Operations). Two more than the threads, so that
# sending goes on while the last outcomes are being recorded.
THREADS = 4
WINDOW = THREADS + 2
# How long a send's outcome may wait to be recorded with others (seconds), unless
# nothing else is being sent: one transaction for several.
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


# A lease this worker found it no longer holds (it ran out while the database stalled).
_LOST = datetime.min.replace(tzinfo=UTC)


@dataclass
class _Pause:
    since: datetime
    until: datetime
    length: timedelta
    why: str
    probing: bool = False


class Breaker:
    """Holds back a kind of message while its service is unavailable (in this process).

    Closed: every send goes. The first send that finds the service unavailable opens
    it: for a pause (doubling from a second up to PROBE_EVERY) the kind's rows are
    not claimed and a send that comes anyway waits (Retry). When the pause ends, one
    send goes as the probe; unavailable again: a longer pause; through: closed, and
    the queue flows. So an outage of hours costs one failed call per PROBE_EVERY,
    not one per queued message, and ends PROBE_EVERY after Slack is back at most.
    """

    FIRST = timedelta(seconds=1)

    def __init__(self, cap: timedelta = PROBE_EVERY) -> None:
        self.cap = cap
        self._paused: dict[str, _Pause] = {}
        self._lock = threading.Lock()

    def held(self, now: datetime) -> tuple[str, ...]:
        """The kinds not to claim now: paused, or their probe on its way."""
        with self._lock:
            return tuple(k for k, p in self._paused.items() if p.probing or now < p.until)

    def next_probe_at(self) -> datetime | None:
        """When the earliest pause ends (a probe may go), if any kind is paused."""
        with self._lock:
            return min((p.until for p in self._paused.values() if not p.probing), default=None)

    def admit(self, kind: str, now: datetime) -> bool:
        """Let a send of `kind` go (True: as the probe), or raise Retry for when."""
        with self._lock:
            pause = self._paused.get(kind)
            if pause is None:
                return False
            if pause.probing or now < pause.until:
                later = max(pause.until, now + pause.length)
                raise Retry(later - now, f"holding {kind} messages: {pause.why}")
            pause.probing = True
            return True

    def settle(self, kind: str, *, probe: bool, now: datetime, outcome: Outcome) -> None:
        """What a send of `kind` found: through, unavailable, or neither."""
        with self._lock:
            pause = self._paused.get(kind)
            if outcome.status == "sent":
                if pause is not None:
                    del self._paused[kind]
                    logger.info("%s messages flow again after %s", kind, now - pause.since)
            elif outcome.unavailable:
                if pause is None:
                    self._paused[kind] = _Pause(now, now + self.FIRST, self.FIRST, outcome.error)
                    logger.warning(
                        "%s: %s; holding these messages, trying one at least every %ss",
                        kind,
                        outcome.error,
                        self.cap.total_seconds(),
                    )
                elif probe:
                    pause.length = min(2 * pause.length, self.cap)
                    pause.until, pause.probing, pause.why = now + pause.length, False, outcome.error
            elif probe and pause is not None:
                pause.probing = False  # neither: the next send is the probe


class _Window:
    """At most `size` sends between their start and their recorded outcome: what a
    crash can repeat. A send waits for a place; once closed, it does not start."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._open = 0
        self._closed = False
        self._changed = threading.Condition()

    def enter(self) -> bool:
        with self._changed:
            while self._open >= self.size and not self._closed:
                self._changed.wait()
            if self._closed:
                return False
            self._open += 1
            return True

    def all_back(self, back: int) -> bool:
        """Whether `back` outcomes are every send in the window (none still going)."""
        with self._changed:
            return back >= self._open

    def leave(self, count: int) -> None:
        if count:
            with self._changed:
                self._open -= count
                self._changed.notify(count)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()


@dataclass
class Outcome:
    """What became of one claimed row, waiting to be recorded."""

    item: Outbox
    # sent | failed | retry (a send failed) | later (sent nothing) | unattempted (handed
    # back) | expired (not sent, and not ours to record: the lease ran out)
    status: str
    result: dict[str, Any] | None = None
    retry_at: datetime | None = None
    error: str = ""
    unavailable: bool = False  # the service was down or unreachable
    in_window: bool = False  # holds a place in the window until recorded
    done_at: float = field(default_factory=time.monotonic)

    @property
    def id(self) -> int:
        assert self.item.id is not None
        return self.item.id


def record(session: Session, outcomes: list[Outcome]) -> None:
    """Write outcomes (and the senders' on_sent changes) in the caller's transaction;
    an `expired` one is not this worker's to write."""
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
    for status, mark in (("retry", outbox.mark_retry), ("later", outbox.mark_later)):
        waiting = by_status.get(status, [])
        mark(session, [(d.id, d.retry_at or clock.now(), d.error) for d in waiting])
    outbox.mark_failed(session, [(done.id, done.error) for done in by_status.get("failed", [])])
    outbox.release(session, [done.id for done in by_status.get("unattempted", [])])


class Delivery:
    """Runs the senders over due outbox rows, on a small pool of threads."""

    def __init__(
        self, services: Services, *, threads: int = THREADS, batch: int = 32, window: int = WINDOW
    ) -> None:
        self.services = services
        self.pacer = ChannelPacer()
        self.breaker = Breaker()
        self.batch = batch
        self.threads = threads
        self.window = window
        self.lease = LEASE
        self._window = _Window(self.window)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # The only state other threads touch, under _lock: outcomes back from the pool
        # and not recorded yet, rows send_now started that the loop has not seen, and
        # when each lease held ends (as taken or renewed; _LOST once it is not ours): a
        # send does not start on a row whose lease is nearly out.
        self._lock = threading.Lock()
        self._finished: list[Outcome] = []
        self._started: list[int] = []
        self._lease_ends: dict[int, datetime] = {}
        # Rows the loop claimed and has not recorded yet -> when their lease was last
        # taken (time.monotonic()); read and written by the loop thread only.
        self._held: dict[int, float] = {}

    # -- one pass (drain, tests, CLI) ------------------------------------------
    def run_once(self, *, kinds: tuple[str, ...] | None = None) -> int:
        """Claim and send what is due now, record it; returns how many rows were handled.
        At most `window` rows a pass, so a crash repeats no more than the loop's would."""
        with self.services.db.transaction() as session:
            items = self._claim(session, self.window, kinds)
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
        return outbox.claim_due(
            session,
            now=now,
            lease=self.lease,
            limit=limit,
            kinds=kinds,
            skip_kinds=self.breaker.held(now),
        )

    def _send(self, item: Outbox) -> Outcome:
        """Run the row's sender; never raises, the outcome says what happened."""
        now = clock.now()
        try:
            probe = self.breaker.admit(item.kind, now)
        except Retry as exc:
            return Outcome(item, "later", retry_at=now + exc.after, error=str(exc))
        outcome = self._attempt(item)
        self.breaker.settle(item.kind, probe=probe, now=clock.now(), outcome=outcome)
        if outcome.status == "failed":
            self._log_failure(item, outcome.error)
        return outcome

    def _attempt(self, item: Outbox) -> Outcome:
        handler = _SENDERS.get(item.kind)
        try:
            if handler is None:
                raise Permanent(f"no sender for outbox kind '{item.kind}'")
            try:
                result = handler(self.services, item)
            except Exception as exc:
                sorted_exc = classify(exc)
                if sorted_exc is exc:
                    raise
                raise sorted_exc from exc
        except Retry as exc:
            return Outcome(item, "later", retry_at=clock.now() + exc.after, error=str(exc))
        except Permanent as exc:
            return Outcome(item, "failed", error=str(exc))
        except Unavailable as exc:
            logger.debug("outbox %s #%s: %s", item.kind, item.id, exc)
            retry_at = clock.now() + min(backoff(item.attempts), PROBE_EVERY)
            return Outcome(item, "retry", retry_at=retry_at, error=str(exc), unavailable=True)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, with the traceback logged
            logger.exception("outbox %s #%s attempt %s failed", item.kind, item.id, item.attempts)
            error = f"{type(exc).__name__}: {exc}"
            if item.attempts >= MAX_ATTEMPTS:
                return Outcome(
                    item, "failed", error=f"gave up after {item.attempts} attempts: {error}"
                )
            retry_at = clock.now() + backoff(item.attempts)
            return Outcome(item, "retry", retry_at=retry_at, error=error)
        return Outcome(item, "sent", result=result)

    def _log_failure(self, item: Outbox, why: str) -> None:
        """The one ERROR line of a message that will never be delivered, with its lead."""
        lead = None
        if item.handoff_id is not None:
            try:
                with self.services.db.session() as session:
                    lead = outbox.lead_of(session, item.id)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - the line matters more than the lead's id
                logger.exception("could not look up the lead of outbox #%s", item.id)
        about = f" for lead {lead}" if lead else ""
        logger.error("outbox %s #%s%s not delivered, for good: %s", item.kind, item.id, about, why)

    def _record(self, outcomes: list[Outcome]) -> None:
        with self.services.db.transaction() as session:
            self._write(session, outcomes)
        self._window.leave(sum(outcome.in_window for outcome in outcomes))

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
                self._lease_ends.update((i.id, i.lease_until) for i in items)  # type: ignore[misc]
                futures = [(pool.submit(self._send_in_window, item), item) for item in items]  # type: ignore[union-attr]
        if not accepting:
            self._record([Outcome(item, "unattempted") for item in items])
            return
        # Outside the lock: a callback runs at once, on this thread, for a future
        # already done, and _finish takes the lock.
        for future, item in futures:
            future.add_done_callback(lambda f, item=item: self._finish(f, item))

    def _send_in_window(self, item: Outbox) -> Outcome:
        """`_send` once there is a place in the window (none after stop: not started).

        A row that waited for its place until its lease is nearly out (outcomes not
        recorded, leases not renewed: the database stuck) is not sent: another worker
        may have taken it. It is left alone, neither sent nor recorded.
        """
        if not self._window.enter():
            return Outcome(item, "unattempted")
        with self._lock:
            lease_end = self._lease_ends.get(item.id)  # type: ignore[arg-type]
        if lease_end is not None and lease_end - clock.now() < self.lease / 4:
            self._window.leave(1)
            logger.warning("outbox %s #%s not sent: its lease ran out", item.kind, item.id)
            return Outcome(item, "expired")
        try:
            outcome = self._send(item)
        except BaseException:
            self._window.leave(1)
            raise
        outcome.in_window = True
        return outcome

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
        self._window.close()  # and no send waiting for a place starts
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._record_separately(self._drop_lost(self._take_finished()))
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
        if first_done is not None:  # outcomes to record, with the rest of the window's
            return max(0.0, RECORD_DELAY - (time.monotonic() - first_done))
        # With half the batch out, a send coming back wakes the loop.
        wait = 1.0 if len(self._held) >= self.batch // 2 else self._idle_wait()
        return max(0.0, min(wait, self._next_renewal_in()))

    def _pass(self) -> int:
        """Record what came back and claim for the free places in flight, in one
        transaction; returns how many rows were claimed.

        Outcomes are recorded as soon as every send in the window is back, or
        RECORD_DELAY after the first: each holds its place in the window until then.
        Rows are claimed once half the places in flight are free.
        The same transaction renews the lease of a send still going after half a
        lease (a Retry-After slept in the client, a slow network), so no worker
        takes it.
        """
        outcomes = self._take_finished(merge_started=True)
        in_flight = len(self._held) - len(outcomes)
        room = self.batch - in_flight
        limit = room if room >= self.batch // 2 else 0
        sending = self._held.keys() - {outcome.id for outcome in outcomes}
        renew = self._leases_to_renew(sending)
        if not (limit or renew or self._record_now(outcomes)):
            self._put_back(outcomes)
            return 0
        outcomes = self._drop_lost(outcomes)
        try:
            with self.services.db.transaction() as session:
                self._write(session, outcomes)
                renewed_until = clock.now() + self.lease
                renewed = outbox.renew_leases(session, renew, until=renewed_until)
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
        self._held.update({item_id: taken for item_id in renewed})
        with self._lock:
            for outcome in outcomes:
                self._lease_ends.pop(outcome.id, None)
            for item_id in renew:  # a lease not renewed is lost: _send_in_window skips it
                self._lease_ends[item_id] = renewed_until if item_id in renewed else _LOST
            self._lease_ends.update((item.id, item.lease_until) for item in items)  # type: ignore[misc]
        self._window.leave(sum(outcome.in_window for outcome in outcomes))
        assert self._pool is not None
        for item in items:
            self._held[item.id] = taken  # type: ignore[index]
            future = self._pool.submit(self._send_in_window, item)
            future.add_done_callback(lambda f, item=item: self._finish(f, item))
        return len(items)

    def _record_now(self, outcomes: list[Outcome]) -> bool:
        """Record when every send in the window is back (nothing else is coming),
        else RECORD_DELAY after the first came back: one transaction for several."""
        if not outcomes:
            return False
        if self._window.all_back(sum(outcome.in_window for outcome in outcomes)):
            return True
        return time.monotonic() - outcomes[0].done_at >= RECORD_DELAY

    def _leases_to_renew(self, sending: set[int]) -> dict[int, datetime]:
        """The leases held for half a lease or more: id -> when the one held ends."""
        due = time.monotonic() - self.lease.total_seconds() / 2
        with self._lock:
            return {
                i: self._lease_ends[i]
                for i in sending
                if self._held[i] < due and self._lease_ends.get(i, _LOST) is not _LOST
            }

    def _drop_lost(self, outcomes: list[Outcome]) -> list[Outcome]:
        """What came back for rows whose lease was lost is not ours to record, unless it
        was sent (then it was: the other worker's send will be the repeat)."""
        with self._lock:
            lost = {i for i, end in self._lease_ends.items() if end is _LOST}
        return [
            Outcome(o.item, "expired", in_window=o.in_window)
            if o.id in lost and o.status != "sent"
            else o
            for o in outcomes
        ]

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

    def _record_separately(self, outcomes: list[Outcome]) -> None:
        """One transaction per outcome, so one bad row cannot hold the others back;
        what still fails stays in hand (and in the window) until the next pass."""
        kept = []
        for outcome in outcomes:
            try:
                self._record([outcome])
            except Exception:  # noqa: BLE001
                logger.exception("recording outbox #%s failed", outcome.id)
                kept.append(outcome)
            else:
                self._held.pop(outcome.id, None)
                with self._lock:
                    self._lease_ends.pop(outcome.id, None)
        self._put_back(kept)

    def _idle_wait(self) -> float:
        """Sleep until the next row falls due (paced, backed off, or its kind's pause
        over), at most a second."""
        now = clock.now()
        try:
            with self.services.db.session() as session:
                due = outbox.next_due_at(session, now=now, skip_kinds=self.breaker.held(now))
        except Exception:  # noqa: BLE001
            return 1.0
        probe_at = self.breaker.next_probe_at()
        due = min(filter(None, (due, probe_at)), default=None)
        if due is None:
            return 1.0
        return min(1.0, max(0.01, (due - now).total_seconds()))
