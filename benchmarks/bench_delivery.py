"""Intake -> DM benchmark against the fake Slack Web API, in one process.

    python benchmarks/bench_delivery.py

1. latency lead received -> DM posted (median, p95), next to the floor: a bare
   chat.postMessage round trip from this process;
2. 1000 leads posted as lists until every DM is sent (fake at no limit);
3. the fake answering 429 + Retry-After when a channel gets more than one
   message a second: 60 leads for 3 reps, time to deliver all and 429 share.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.definition import load_definition  # noqa: E402
from bot.slack import make_client  # noqa: E402
from store.db import Database  # noqa: E402
from tests.conftest import BOT_TOKEN, DATA, lead, make_settings, start_app  # noqa: E402
from tests.fakeslack import FakeSlack  # noqa: E402

REPS = {"rep1@example.com": "U0REP1", "rep2@example.com": "U0REP2", "rep3@example.com": "U0REP3"}


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


def run(tmp: Path, fake: FakeSlack, name: str):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp / (name + '.db')}")
    db.create_schema()
    definition = load_definition(three_rep_definition(tmp))
    settings = make_settings(fake, db.url)
    server, thread = start_app(settings, definition, db, background=True)
    from tests.conftest import RunningApp

    return RunningApp(server), thread


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name, FakeSlack() as fake:
        tmp = Path(tmp_name)
        for email, user_id in REPS.items():
            fake.add_user(user_id, email)
        for i in range(200):
            fake.add_user(f"ULAT{i}", f"lat{i}@example.com")
        for i in range(1000):
            fake.add_user(f"UTP{i}", f"tp{i}@example.com")

        # Floor: a bare chat.postMessage round trip through the same client setup.
        client = make_client(BOT_TOKEN, fake.url)
        floor = []
        for _ in range(200):
            start = time.perf_counter()
            client.chat_postMessage(channel="C0FLOOR", text="floor")
            floor.append(time.perf_counter() - start)

        # 1. latency, one lead at a time.
        app, _ = run(tmp, fake, "latency")
        latencies = []
        for i in range(200):
            before = len(fake.calls_to("chat.postMessage"))
            start = time.perf_counter()
            # A rep of their own per lead: Slack allows ~1 message/s per channel, and
            # this measures Handoff's latency, not that pacing (measured below).
            app.post_leads(lead(f"lat-{i}", owner=f"lat{i}@example.com"))
            fake.wait_for("chat.postMessage", count=before + 1, timeout=10)
            latencies.append(time.perf_counter() - start)
        app.server.stop()
        print(
            f"floor chat.postMessage: median {statistics.median(floor) * 1000:.1f} ms, "
            f"p95 {pct(floor, 0.95) * 1000:.1f} ms"
        )
        print(
            f"lead -> DM:             median {statistics.median(latencies) * 1000:.1f} ms, "
            f"p95 {pct(latencies, 0.95) * 1000:.1f} ms = "
            f"{pct(latencies, 0.95) / pct(floor, 0.95):.1f}x floor p95 [target <= 3x]"
        )

        # 2. throughput: 1000 leads as 10 lists of 100.
        app, _ = run(tmp, fake, "throughput")
        before = len(fake.calls_to("chat.postMessage"))
        start = time.perf_counter()
        for batch in range(10):
            # 1000 owners: per-channel pacing (1/s) is measured separately below.
            app.post_leads(
                [
                    lead(f"tp-{batch}-{i}", owner=f"tp{batch * 100 + i}@example.com")
                    for i in range(100)
                ]
            )
        fake.wait_for("chat.postMessage", count=before + 1000, timeout=120)
        elapsed = time.perf_counter() - start
        app.server.stop()
        print(
            f"1000 leads -> 1000 DMs: {elapsed:.2f} s = {1000 / elapsed:,.0f} DMs/s "
            f"[target >= 200/s]"
        )

        # 3. rate limited: 1 message/s per channel, 60 leads for 3 reps.
        app, _ = run(tmp, fake, "ratelimit")
        fake.rate_limit_per_channel(per_second=1.0, retry_after=1)
        calls_before = len(fake.calls_to("chat.postMessage"))
        limited_before = fake.rate_limited
        start = time.perf_counter()
        app.post_leads([lead(f"rl-{i}") for i in range(60)])
        deadline = time.time() + 120
        while app.services.db and time.time() < deadline:
            with app.services.db.session() as session:
                from sqlalchemy import func, select

                from store.models import Handoff

                sent = session.scalar(
                    select(func.count()).select_from(Handoff).where(Handoff.ts.is_not(None))
                )
            if sent == 60:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        calls = len(fake.calls_to("chat.postMessage")) - calls_before
        limited = fake.rate_limited - limited_before
        app.server.stop()
        print(
            f"60 leads, 3 reps, 1 msg/s/channel: all delivered in {elapsed:.1f} s "
            f"(pace allows ~20 s; {elapsed / 20:.2f}x) [target <= 1.5x]; "
            f"429s {limited}/{calls} calls = {limited / max(calls, 1):.1%} [target < 10%]"
        )


if __name__ == "__main__":
    main()
