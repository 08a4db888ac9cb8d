"""Decisions benchmark: ack latency of button clicks, and racing clicks.

    python benchmarks/bench_decisions.py

Against the real app (waitress + Bolt) and the fake Slack on loopback: 8
concurrent clickers press Accept on distinct handoffs (signed block_actions
requests); then 1000 clicks race on 100 handoffs. Prints figures; asserts nothing.
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from bot.blocks.card import ACCEPT  # noqa: E402
from bot.definition import load_definition  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import Handoff, HandoffStatus  # noqa: E402
from tests.conftest import DATA, REPS, RunningApp, lead, make_settings, start_app  # noqa: E402
from tests.fakeslack import FakeSlack  # noqa: E402
from tests.slackreq import block_actions  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def handoffs(app: RunningApp, prefix: str, count: int) -> list[int]:
    for start in range(0, count, 500):
        app.post_leads(
            [
                lead(f"{prefix}-{i}", owner="rep1@example.com")
                for i in range(start, min(count, start + 500))
            ]
        )
    with app.services.db.session() as session:
        return list(session.scalars(select(Handoff.id).where(Handoff.status == HandoffStatus.OPEN)))


def accepted(app: RunningApp) -> int:
    with app.services.db.session() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Handoff)
                .where(Handoff.status == HandoffStatus.ACCEPTED)
            )
            or 0
        )


def wait_for_decisions(app: RunningApp, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while accepted(app) < expected and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, FakeSlack() as fake:
        for email, user_id in REPS.items():
            fake.add_user(user_id, email)
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.create_schema()
        settings = make_settings(fake, db.url)
        server, _ = start_app(settings, load_definition(DATA / "definition.yml"), db)
        app = RunningApp(server)
        app.services.directory.by_user_id("U0REP1")

        ids = handoffs(app, "lat", 800)
        latencies: list[float] = []
        lock = threading.Lock()

        def press(handoff_id: int) -> None:
            body = block_actions(user_id="U0REP1", action_id=ACCEPT, value=str(handoff_id))
            start = time.perf_counter()
            response = app.slack(body)
            elapsed = time.perf_counter() - start
            assert response.status_code == 200
            with lock:
                latencies.append(elapsed)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(press, ids))
        wait_for_decisions(app, len(ids))
        print(
            f"ack latency, 8 concurrent clickers, {len(latencies)} clicks: "
            f"p50 {pct(latencies, 0.5) * 1000:.1f} ms, p95 {pct(latencies, 0.95) * 1000:.1f} ms, "
            f"p99 {pct(latencies, 0.99) * 1000:.1f} ms [target p95 <= 100 ms]; "
            f"{accepted(app)} decisions recorded"
        )

        before = accepted(app)
        race_ids = [i for i in handoffs(app, "race", 100)]
        clicks = race_ids * 10
        random.Random(7).shuffle(clicks)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(press, clicks))
        wait_for_decisions(app, before + len(race_ids))
        time.sleep(1.0)  # let any late listener finish before counting
        print(
            f"1000 racing clicks on {len(race_ids)} handoffs: "
            f"{accepted(app) - before} decisions [expected exactly {len(race_ids)}]"
        )
        server.stop()


if __name__ == "__main__":
    main()
