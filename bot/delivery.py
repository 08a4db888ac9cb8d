"""The outbox worker: sends what the outbox holds, paced, retried, never twice.

Each outbox `kind` has a sender registered with `@sender("kind")`. A sender
returns a small JSON result (stored on the row) or raises:
- `Retry(after)`: not now (a channel's pace, a 429) — try again later, not an error;
- `Permanent(why)`: no retry will help (recorded as failed, with the reason);
- anything else: logged and retried with exponential backoff up to MAX_ATTEMPTS.

Rows are leased to one worker by a conditional UPDATE, so several processes
can share a database. A crash leaves the lease to expire and the row is sent
on the next pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

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

Sender = Callable[["Services", Outbox], dict[str, Any]]
_SENDERS: dict[str, Sender] = {}


def sender(kind: str) -> Callable[[Sender], Sender]:
    def register(function: Sender) -> Sender:
        _SENDERS[kind] = function
        return function

    return register


class Retry(Exception):  # noqa: N818 - it is an instruction, not an error
    def __init__(self, after: timedelta, why: str = "") -> None:
        super().__init__(why or f"retry in {after.total_seconds():.1f}s")
        self.after = after


class Permanent(Exception):  # noqa: N818
    pass


class ChannelPacer:
    """Spaces posts to one channel at least CHANNEL_INTERVAL apart (in this process)."""

    def __init__(self, interval: timedelta = CHANNEL_INTERVAL) -> None:
        self.interval = interval
        self._next: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def reserve(self, channel: str, now: datetime) -> None:
        """Take the channel's next slot now, or raise Retry for when it is free."""
        with self._lock:
            free_at = self._next.get(channel)
            if free_at is not None and free_at > now:
                raise Retry(free_at - now, f"pacing {channel}")
            self._next[channel] = now + self.interval

    def back_off(self, channel: str, until: datetime) -> None:
        with self._lock:
            self._next[channel] = max(until, self._next.get(channel, until))


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


class Delivery:
    """Runs the senders over due outbox rows, on a small pool of threads."""

    def __init__(self, services: Services, *, threads: int = 4, batch: int = 32) -> None:
        self.services = services
        self.pacer = ChannelPacer()
        self.batch = batch
        self.threads = threads
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- one pass ------------------------------------------------------------
    def run_once(self, *, kinds: tuple[str, ...] | None = None) -> int:
        """Claim and send what is due now; returns how many rows were handled."""
        now = clock.now()
        with self.services.db.transaction() as session:
            items = outbox.claim_due(session, now=now, lease=LEASE, limit=self.batch, kinds=kinds)
        if not items:
            return 0
        if self._pool is None or len(items) == 1:
            for item in items:
                self._send(item)
        else:
            list(self._pool.map(self._send, items))
        return len(items)

    def drain(self, *, timeout: float = 30.0) -> None:
        """Send everything due now (tests, CLI commands that post)."""
        deadline = clock.now() + timedelta(seconds=timeout)
        while self.run_once() and clock.now() < deadline:
            pass

    def _send(self, item: Outbox) -> None:
        assert item.id is not None
        handler = _SENDERS.get(item.kind)
        db = self.services.db
        try:
            if handler is None:
                raise Permanent(f"no sender for outbox kind '{item.kind}'")
            result = handler(self.services, item)
        except Retry as exc:
            with db.transaction() as session:
                outbox.mark_retry(session, item.id, at=clock.now() + exc.after, error=str(exc))
            return
        except Permanent as exc:
            logger.error("outbox %s #%s failed for good: %s", item.kind, item.id, exc)
            with db.transaction() as session:
                outbox.mark_failed(session, item.id, error=str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any failure is retried, with the traceback logged
            logger.exception("outbox %s #%s attempt %s failed", item.kind, item.id, item.attempts)
            with db.transaction() as session:
                if item.attempts >= MAX_ATTEMPTS:
                    outbox.mark_failed(session, item.id, error=f"{type(exc).__name__}: {exc}")
                else:
                    outbox.mark_retry(
                        session,
                        item.id,
                        at=clock.now() + backoff(item.attempts),
                        error=f"{type(exc).__name__}: {exc}",
                    )
            return
        with db.transaction() as session:
            outbox.mark_sent(session, item.id, now=clock.now(), result=result)

    # -- the background loop --------------------------------------------------
    def wake(self) -> None:
        """Called after a commit that queued work, so it goes out at once."""
        self._wake.set()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="handoff-send")
        self._thread = threading.Thread(target=self._loop, name="handoff-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the rows in hand, then stop; unsent rows stay in the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the pass: a wake() during it is not lost
            try:
                handled = self.run_once()
            except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
                logger.exception("outbox pass failed")
                handled = 0
            if handled:
                continue
            self._wake.wait(timeout=self._idle_wait())

    def _idle_wait(self) -> float:
        """Sleep until the next row falls due (paced or backed off), at most a second."""
        try:
            with self.services.db.session() as session:
                due = outbox.next_due_at(session)
        except Exception:  # noqa: BLE001
            return 1.0
        if due is None:
            return 1.0
        return min(1.0, max(0.01, (due - clock.now()).total_seconds()))
