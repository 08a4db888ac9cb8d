"""Intake -> DM benchmark against the fake Slack Web API.

    python benchmarks/bench_delivery.py

0. floors, measured first in the same run: a bare chat.postMessage round trip
   through the client the app uses (slack-sdk's WebClient on a kept-alive
   connection) and through a stock WebClient (urllib, a new connection per call,
   how the app called Slack before); and the fake Slack's own throughput, to show
   it is not what limits part 2;
1. latency lead received -> DM posted (median, p95): from sending POST /leads
   to the fake recording the chat.postMessage, one lead at a time. Twice: for
   reps Handoff already knows (the usual case: a team's reps, each looked up
   once; leads spaced so no rep gets two within Slack's 1 s pace), and for a
   rep new to Handoff (users.lookupByEmail first, one more round trip). Next to
   it, the POST /leads round trip alone (the 202 can come back after the DM),
   and the ratios against the floors;
2. 1000 leads posted as 10 lists of 100 until every DM is sent (fake at no limit);
3. the fake answering 429 + Retry-After when a channel gets more than one
   message a second: 60 leads for 3 reps, time to deliver all and 429 share;
4. Slack down (HTTP 503) while 1000 leads for 1000 reps arrive, for OUTAGE
   seconds: the calls the app makes meanwhile (it holds the queue and probes),
   then from Slack back to the last DM.

Two processes: the app, started as `handoff run` starts it (waitress + Bolt,
outbox worker, scheduler) with its own GIL, since Slack and the system sending
leads are other machines; and this one, running the fake Slack, the client that
posts leads and the floors (perf_counter is the system's monotonic clock, so the
fake's timestamps and the client's compare). On 2 cores the fake still takes CPU
a real Slack would not. Timings on a busy machine drift: compare the ratios
against the floors of the same run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import http.client
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from slack_sdk import WebClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import start_app_process  # noqa: E402
from bot.slack import make_client  # noqa: E402
from store.db import Database  # noqa: E402
from tests.conftest import (  # noqa: E402
    BOT_TOKEN,
    DATA,
    intake_headers,
    lead,
    make_settings,
)
from tests.fakeslack import FakeSlack  # noqa: E402

REPS = {"rep1@example.com": "U0REP1", "rep2@example.com": "U0REP2", "rep3@example.com": "U0REP3"}
LATENCY_LEADS = 200
TEAM = [f"team{i}@example.com" for i in range(20)]  # reps Handoff knows, for part 1
PACE = 1.05  # seconds between two leads for the same rep (Slack: ~1 message/s/channel)
OUTAGE = 30.0  # seconds Slack is down in part 4
POST = "chat.postMessage"


def three_rep_definition(tmp: Path) -> Path:
    text = (
        (DATA / "definition.yml")
        .read_text()
        .replace(
            "{round_robin: [rep1@example.com, rep2@example.com]}",
            "{round_robin: [rep1@example.com, rep2@example.com, rep3@example.com]}",
        )
    )
    path = tmp / "definition.yml"
    path.write_text(text)
    return path


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:5.1f} ms, p95 {pct(values, 0.95) * 1000:5.1f} ms"
    )


class App:
    """The app as `handoff run` runs it, in a process of its own (with its own GIL:
    Slack and the system sending leads are other machines), on a fresh SQLite file;
    and a lean client for POST /leads (http.client on one kept-alive connection)."""

    def __init__(self, tmp: Path, fake: FakeSlack, name: str) -> None:
        db = Database(f"sqlite:///{tmp / (name + '.db')}")
        db.create_schema()
        db.dispose()
        definition = three_rep_definition(tmp)
        self.process, base_url = start_app_process(make_settings(fake, db.url), definition, db.url)
        self.connection = http.client.HTTPConnection(*base_url.removeprefix("http://").split(":"))

    def post_leads(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.connection.request("POST", "/leads", body, intake_headers(body))
        response = self.connection.getresponse()
        response.read()
        assert response.status == 202, response.status

    def stop(self) -> None:
        self.connection.close()
        self.process.terminate()  # SIGTERM: the app finishes in-flight work and exits
        self.process.join(30)


def round_trips(call: Callable[[], object], n: int = 300) -> list[float]:
    call()  # connect
    times = []
    for _ in range(n):
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    return times


def fake_throughput(fake: FakeSlack, threads: int = 4, calls: int = 500) -> float:
    """chat.postMessage calls a second the fake answers, from `threads` kept-alive clients."""
    client = make_client(BOT_TOKEN, fake.url)

    def post() -> None:
        for _ in range(calls):
            client.chat_postMessage(channel="C0FLOOR", text="floor")

    workers = [threading.Thread(target=post) for _ in range(threads)]
    begin = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return threads * calls / (time.perf_counter() - begin)


def floors(fake: FakeSlack) -> tuple[list[float], list[float]]:
    app_client = make_client(BOT_TOKEN, fake.url)
    stock = WebClient(token=BOT_TOKEN, base_url=fake.url)
    floor = round_trips(lambda: app_client.chat_postMessage(channel="C0FLOOR", text="floor"))
    stock_floor = round_trips(lambda: stock.chat_postMessage(channel="C0FLOOR", text="floor"))
    print(f"floor chat.postMessage, app's client (kept alive): {ms(floor)}")
    print(f"floor chat.postMessage, stock WebClient (urllib):  {ms(stock_floor)}")
    print(f"fake Slack alone, 4 threads: {fake_throughput(fake):,.0f} chat.postMessage/s")
    return floor, stock_floor


def time_leads(app: App, fake: FakeSlack, name: str, owners: list[str]) -> tuple[list, list]:
    """Post one lead per owner, one at a time, each after the previous one's DM and
    at least PACE after the last lead for the same owner; (to 202, to DM) each."""
    to_202, to_dm = [], []
    last_for: dict[str, float] = {}
    for i, owner in enumerate(owners):
        wait = last_for.get(owner, 0.0) + PACE - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        before = len(fake.successful(POST))
        begin = time.perf_counter()
        app.post_leads(lead(f"{name}-{i}", owner=owner))
        answered = time.perf_counter()
        posted = fake.wait_for(POST, count=before + 1, timeout=10)[-1].at_perf
        last_for[owner] = posted
        to_202.append(answered - begin)
        to_dm.append(posted - begin)
    return to_202, to_dm


def latency(tmp: Path, fake: FakeSlack, floor: list[float], stock_floor: list[float]) -> None:
    """One lead at a time: this measures Handoff's latency, not Slack's pacing (part 3)."""
    app = App(tmp, fake, "latency")
    time_leads(app, fake, "warm", TEAM)  # each rep looked up once; statements compiled
    rounds = LATENCY_LEADS // len(TEAM)
    known_202, known = time_leads(app, fake, "known", TEAM * rounds)
    new_reps = [f"lat{i}@example.com" for i in range(LATENCY_LEADS)]
    _, new = time_leads(app, fake, "new", new_reps)
    app.stop()
    card = fake.successful(POST)[-1].args  # a real card's text and blocks, posted bare
    client = make_client(BOT_TOKEN, fake.url)
    card_floor = round_trips(
        lambda: client.chat_postMessage(channel="C0FLOOR", text=card["text"], blocks=card["blocks"])
    )
    floor95, stock95 = pct(floor, 0.95), pct(stock_floor, 0.95)
    print(f"floor chat.postMessage with a card's blocks:      {ms(card_floor)}")
    print(f"POST /leads -> 202:            {ms(known_202)}")
    for label, to_dm in (("rep already known", known), ("rep new to Handoff", new)):
        p95 = pct(to_dm, 0.95)
        print(
            f"lead -> DM, {label + ':':19s}{ms(to_dm)} = {p95 / floor95:.1f}x the kept-alive "
            f"floor p95, {p95 / pct(card_floor, 0.95):.1f}x the card floor p95, "
            f"{p95 / stock95:.1f}x the stock floor p95 [target <= 3x]"
        )


def throughput(tmp: Path, fake: FakeSlack) -> None:
    """1000 leads as 10 lists of 100, each lead for a rep of their own (pacing: part 3)."""
    app = App(tmp, fake, "throughput")
    before = len(fake.successful(POST))
    begin = time.perf_counter()
    for batch in range(10):
        leads = [
            lead(f"tp-{batch}-{i}", owner=f"tp{batch * 100 + i}@example.com") for i in range(100)
        ]
        app.post_leads(leads)
    posted = time.perf_counter() - begin
    fake.wait_for(POST, count=before + 1000, timeout=120)
    elapsed = time.perf_counter() - begin
    app.stop()
    print(
        f"1000 leads -> 1000 DMs: {elapsed:.2f} s = {1000 / elapsed:,.0f} DMs/s "
        f"[target >= 200/s] (the 10 POSTs took {posted:.2f} s of it)"
    )


def rate_limited(tmp: Path, fake: FakeSlack) -> None:
    """60 leads round-robin over 3 reps with the fake at 1 message/s per channel: the
    pace allows 20 a rep in ~20 s."""
    app = App(tmp, fake, "ratelimit")
    fake.rate_limit_per_channel(per_second=1.0, retry_after=1)
    calls_before, ok_before = len(fake.calls_to(POST)), len(fake.successful(POST))
    limited_before = fake.rate_limited
    begin = time.perf_counter()
    app.post_leads([lead(f"rl-{i}") for i in range(60)])
    fake.wait_for(POST, count=ok_before + 60, timeout=120)
    elapsed = time.perf_counter() - begin
    fake.rate_limit_per_channel(None)
    calls = len(fake.calls_to(POST)) - calls_before
    limited = fake.rate_limited - limited_before
    app.stop()
    print(
        f"60 leads, 3 reps, 1 msg/s/channel: all delivered in {elapsed:.1f} s "
        f"(pace allows ~20 s; {elapsed / 20:.2f}x) [target <= 1.5x]; "
        f"429s {limited}/{calls} calls = {limited / max(calls, 1):.1%} [target < 10%]"
    )


def outage(tmp: Path, fake: FakeSlack) -> None:
    """1000 leads (10 lists of 100, one rep each) while Slack answers 503, then Slack back."""
    app = App(tmp, fake, "outage")
    ok_before = len(fake.successful(POST))
    fake.set_outage(True)
    calls_before = len(fake.calls)
    begin = time.perf_counter()
    for batch in range(10):
        leads = [
            lead(f"out-{batch}-{i}", owner=f"tp{batch * 100 + i}@example.com") for i in range(100)
        ]
        app.post_leads(leads)
    time.sleep(max(0.0, OUTAGE - (time.perf_counter() - begin)))  # the outage lasts
    calls = len(fake.calls) - calls_before
    fake.set_outage(False)
    back = time.perf_counter()
    fake.wait_for(POST, count=ok_before + 1000, timeout=120)
    last = fake.successful(POST)[-1].at_perf
    app.stop()
    print(
        f"1000 leads during a {OUTAGE:.0f} s Slack outage: {calls} Slack calls meanwhile; "
        f"all 1000 DMs out {last - back:.1f} s after Slack was back "
        f"[probe at least every 10 s, then the throughput of part 2]"
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp_name, FakeSlack() as fake:
        tmp = Path(tmp_name)
        for email, user_id in REPS.items():
            fake.add_user(user_id, email)
        for i in range(LATENCY_LEADS):
            fake.add_user(f"ULAT{i}", f"lat{i}@example.com")
        for i, email in enumerate(TEAM):
            fake.add_user(f"UTEAM{i}", email)
        for i in range(1000):
            fake.add_user(f"UTP{i}", f"tp{i}@example.com")
        floor, stock_floor = floors(fake)
        latency(tmp, fake, floor, stock_floor)
        throughput(tmp, fake)
        rate_limited(tmp, fake)
        outage(tmp, fake)


if __name__ == "__main__":
    main()
