"""Decisions benchmark: ack latency of button clicks, and racing clicks.

    python benchmarks/bench_decisions.py

Three processes, so that no client shares the app's GIL (Slack is another
machine): the app, started as `handoff run` starts it (waitress + Bolt, outbox
worker, scheduler) on a SQLite file; the clickers, 8 threads sending signed
block_actions requests shaped like Slack's; and this one, which runs the fake
Slack Web API the app calls and reads the database to check the outcome.

The ack latency is the round trip of an Accept click as the clicker sees it. In
each of 4 rounds the same clickers also time two baselines through the same
server: GET /healthz (a database ping) and a checkbox tick (a signed
block_actions request through Bolt whose listener only acks). Timings on a busy
machine drift, so compare the ratio against those baselines, not absolute
figures. After the ack the decision is stored and the card updated; how long
that takes after the click is printed too. Then 200 Reject modal submissions
(checked with reads before the ack, written after it) are timed the same way,
and 1000 clicks by the owner and the manager race on 100 handoffs. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from benchmarks.harness import Request, Sample, send_requests, start_app_process  # noqa: E402
from bot.blocks.card import ACCEPT, COMMERCIAL  # noqa: E402
from bot.blocks.modals import REJECT_VIEW  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import Audit, Handoff, HandoffStatus, Lead  # noqa: E402
from tests.conftest import (  # noqa: E402
    DATA,
    SIGNING_SECRET,
    intake_headers,
    lead,
    make_settings,
)
from tests.fakeslack import FakeSlack  # noqa: E402
from tests.slackreq import block_actions, view_submission  # noqa: E402

CLICKERS = 8
ROUNDS = 4
PER_ROUND = 200
RACE_HANDOFFS = 100
RACE_CLICKS = 1000
REPS = ROUNDS * PER_ROUND  # one card per rep: Handoff paces posts per channel, as Slack asks
MANAGER = "U0MGR"

HEALTHZ = Request("/healthz")


def slack_request(body: str) -> Request:
    return Request("/slack/events", body, SIGNING_SECRET)


def rep(n: int) -> tuple[str, str]:
    """Email and Slack user id of rep number n."""
    return f"rep{n}@bench.example", f"U0B{n:05d}"


def accept(handoff_id: int, user_id: str) -> Request:
    body = block_actions(
        user_id=user_id, action_id=ACCEPT, value=str(handoff_id), channel=f"D{user_id}"
    )
    return slack_request(body)


def reject(handoff_id: int, user_id: str) -> Request:
    """A Reject modal's submission: a reason and a note."""
    values = {
        "reason": {"reason": {"type": "static_select", "selected_option": {"value": "too_small"}}},
        "note": {"note": {"type": "plain_text_input", "value": "Only 12 staff"}},
    }
    return slack_request(
        view_submission(
            user_id=user_id,
            callback_id=REJECT_VIEW,
            private_metadata=str(handoff_id),
            values=values,
        )
    )


def tick(n: int) -> Request:
    """A checkbox tick on a card: the whole Bolt path (signature, parsing, middleware,
    routing, ack) with nothing to do after it."""
    user_id = rep(n % REPS)[1]
    return slack_request(
        block_actions(user_id=user_id, action_id=COMMERCIAL, channel=f"D{user_id}")
    )


def bench_definition(folder: Path) -> Path:
    """The tests' definition, with mgr@example.com managing every bench rep."""
    data = yaml.safe_load((DATA / "definition.yml").read_text())
    data["handoff"]["managers"].update({rep(n)[0]: "mgr@example.com" for n in range(REPS)})
    path = folder / "definition.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(samples: list[float]) -> str:
    return " ".join(f"p{int(q * 100)} {pct(samples, q) * 1000:6.1f} ms" for q in (0.5, 0.95, 0.99))


def seconds(samples: list[Sample]) -> list[float]:
    return [sample.seconds for sample in samples]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class Card(NamedTuple):
    ts: str
    owner: str


class Bench:
    def __init__(self, base_url: str, db: Database, fake: FakeSlack) -> None:
        self.base_url = base_url
        self.db = db
        self.fake = fake
        self.intake = httpx.Client(base_url=base_url, timeout=60)

    def handoffs(self, prefix: str, count: int) -> dict[int, Card]:
        """Hand lead i to rep i; {handoff id: its card} once every card is sent."""
        for start in range(0, count, 500):
            batch = [
                lead(f"{prefix}-{i}", owner=rep(i)[0])
                for i in range(start, min(count, start + 500))
            ]
            body = httpx.Request("POST", "/", json=batch).content
            self.intake.post(
                "/leads", content=body, headers=intake_headers(body)
            ).raise_for_status()

        def cards() -> dict[int, Card]:
            with self.db.session() as session:
                rows = session.execute(
                    select(Handoff.id, Handoff.ts, Handoff.owner_user_id)
                    .join(Lead, Lead.id == Handoff.lead_id)
                    .where(Lead.external_id.startswith(f"{prefix}-"), Handoff.ts.is_not(None))
                )
                return {row.id: Card(row.ts, row.owner_user_id) for row in rows}

        wait_until(lambda: len(cards()) == count, f"{count} cards to be sent")
        return cards()

    def accepted(self, ids: list[int]) -> int:
        return self.in_status(ids, HandoffStatus.ACCEPTED)

    def in_status(self, ids: list[int], status: str) -> int:
        with self.db.session() as session:
            return session.scalar(
                select(func.count())
                .select_from(Handoff)
                .where(Handoff.id.in_(ids), Handoff.status == status)
            )

    def audited(self, ids: list[int]) -> int:
        with self.db.session() as session:
            return session.scalar(
                select(func.count())
                .select_from(Audit)
                .where(Audit.handoff_id.in_(ids), Audit.action == "accepted")
            )

    def decided_at(self, ids: list[int]) -> dict[int, float]:
        with self.db.session() as session:
            rows = session.execute(
                select(Handoff.id, Handoff.decided_at).where(Handoff.id.in_(ids))
            )
            return {row.id: row.decided_at.timestamp() for row in rows}

    def card_updates(self) -> dict[str, float]:
        """When the fake Slack answered each chat.update, by card ts."""
        return {call.args["ts"]: call.at for call in self.fake.successful("chat.update")}

    def already_told(self) -> int:
        return sum(
            "already accepted" in str(call.args.get("text"))
            for call in self.fake.successful("chat.postEphemeral")
        )


def main() -> None:
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as fake:
        fake.add_user(MANAGER, "mgr@example.com")
        for n in range(REPS):
            fake.add_user(rep(n)[1], rep(n)[0])
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.create_schema()
        definition = bench_definition(Path(tmp))
        app, base_url = start_app_process(make_settings(fake, db.url), definition, db.url)
        try:
            with ProcessPoolExecutor(1, mp_context=spawn) as clickers:

                def send(requests: list[Request]) -> list[Sample]:
                    samples = clickers.submit(send_requests, base_url, requests, CLICKERS).result()
                    if any(sample.status != 200 for sample in samples):
                        raise SystemExit(f"not all answered 200: {[s.status for s in samples]}")
                    return samples

                run(Bench(base_url, db, fake), send)
        finally:
            app.terminate()  # SIGTERM: the app finishes in-flight work and exits
            app.join(30)
        db.dispose()


def run(bench: Bench, send: Callable[[list[Request]], list[Sample]]) -> None:
    cards = bench.handoffs("lat", ROUNDS * PER_ROUND)
    ids = sorted(cards)
    send([HEALTHZ] * 100 + [tick(n) for n in range(100)])  # warm-up (Bolt's first auth.test)

    health: list[Sample] = []
    ticks: list[Sample] = []
    clicks: dict[int, Sample] = {}
    for round_ in range(ROUNDS):
        batch = ids[round_ * PER_ROUND : (round_ + 1) * PER_ROUND]
        health += send([HEALTHZ] * PER_ROUND)
        ticks += send([tick(n) for n in range(PER_ROUND)])
        samples = send([accept(i, cards[i].owner) for i in batch])
        clicks.update(zip(batch, samples, strict=True))
        # The next round starts on a quiet app: wait for the work done after the acks.
        wait_until(lambda batch=batch: bench.accepted(batch) == len(batch), "decisions")
        wait_until(
            lambda batch=batch: all(cards[i].ts in bench.card_updates() for i in batch),
            "card updates",
        )

    accept_s, health_s, tick_s = seconds(list(clicks.values())), seconds(health), seconds(ticks)
    print(
        f"ack latency, {CLICKERS} concurrent clickers in their own process, "
        f"{ROUNDS} rounds of {PER_ROUND} requests of each kind:"
    )
    print(f"  GET /healthz (baseline)          {ms(health_s)}")
    print(f"  checkbox tick (Bolt, ack only)   {ms(tick_s)}")
    print(f"  Accept click                     {ms(accept_s)}   [target p95 <= 100 ms]")
    print(
        "  Accept / healthz: "
        + ", ".join(
            f"p{int(q * 100)} {pct(accept_s, q) / pct(health_s, q):.2f}x" for q in (0.5, 0.95, 0.99)
        )
        + "; Accept / tick: "
        + ", ".join(
            f"p{int(q * 100)} {pct(accept_s, q) / pct(tick_s, q):.2f}x" for q in (0.5, 0.95, 0.99)
        )
    )
    decided = bench.decided_at(ids)
    updated = bench.card_updates()
    # Per round: how fast the clicks came (acks let the next click go) and how fast the
    # decisions after them were taken; when clicks come faster, decisions queue.
    click_rate = decide_rate = 0.0
    for round_ in range(ROUNDS):
        batch = ids[round_ * PER_ROUND : (round_ + 1) * PER_ROUND]
        first = min(clicks[i].sent for i in batch)
        click_rate += len(batch) / (max(clicks[i].sent + clicks[i].seconds for i in batch) - first)
        decide_rate += len(batch) / (max(decided[i] for i in batch) - first)
    print(
        f"after the ack: {bench.accepted(ids)} decisions; clicks came at "
        f"{click_rate / ROUNDS:.0f}/s, decisions were taken at {decide_rate / ROUNDS:.0f}/s"
    )
    print(f"  decided (decided_at)             {ms([decided[i] - clicks[i].sent for i in ids])}")
    print(
        f"  card updated (chat.update)       "
        f"{ms([updated[cards[i].ts] - clicks[i].sent for i in ids])}   after the click"
    )

    rejects = bench.handoffs("reject", PER_ROUND)
    rejected = send([reject(h, rejects[h].owner) for h in sorted(rejects)])
    wait_until(
        lambda: bench.in_status(list(rejects), HandoffStatus.REJECTED) == len(rejects),
        "rejections",
    )
    stored = time.time() - min(sample.sent for sample in rejected)
    reject_s = seconds(rejected)
    print(
        f"{PER_ROUND} Reject modal submissions: ack {ms(reject_s)}; "
        f"Reject / healthz p95 {pct(reject_s, 0.95) / pct(health_s, 0.95):.2f}x; "
        f"all stored {stored:.1f} s after the first"
    )

    race = bench.handoffs("race", RACE_HANDOFFS)
    told_before = bench.already_told()
    clicks_on = sorted(race) * (RACE_CLICKS // RACE_HANDOFFS)
    random.Random(7).shuffle(clicks_on)
    raced = send([accept(h, (race[h].owner, MANAGER)[n % 2]) for n, h in enumerate(clicks_on)])
    losers = RACE_CLICKS - RACE_HANDOFFS
    wait_until(lambda: bench.already_told() - told_before >= losers, "the losers' ephemerals")
    time.sleep(1.0)  # let any late listener land before counting
    print(
        f"{RACE_CLICKS} racing clicks (owner and manager) on {RACE_HANDOFFS} handoffs: "
        f"{bench.accepted(list(race))} decisions, {bench.audited(list(race))} audited, "
        f"{bench.already_told() - told_before} told 'already accepted' "
        f"[expected exactly {RACE_HANDOFFS}, {RACE_HANDOFFS}, {losers}]; "
        f"acks {ms(seconds(raced))}"
    )


if __name__ == "__main__":
    main()
