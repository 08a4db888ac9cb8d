"""Store benchmark: the SLA sweep tick, the digest and the report on a big SQLite file.

    python benchmarks/bench_store.py [--handoffs 500000] [--leads 1000000]

Rows are written straight into SQLite (this measures the reads, not intake).
The sweep runs with 100k open handoffs of which 1k fall due per tick; the digest
and report (bot/figures.py counts for both) run over 1M leads and 500k handoffs
spread over 8 weeks. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from bot import reminders  # noqa: E402
from bot.app import build_services  # noqa: E402
from bot.definition import Target, load_definition  # noqa: E402
from bot.digest import build_digest, window_for  # noqa: E402
from bot.report import build_report  # noqa: E402
from bot.settings import Settings  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import Handoff, Lead, SlaTimer  # noqa: E402

DEFINITION = ROOT / "tests" / "data" / "definition.yml"
NOW = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
SOURCES = ["webinar", "ebook", "ads", "partner", "event", "organic"]
REASONS = ["too_small", "wrong_region", "no_budget", "bad_timing", "other"]


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def fill(
    db: Database, leads: int, handoffs: int, *, open_share: float, due_per_tick: int, ticks: int
) -> None:
    rng = random.Random(1)
    chunk = 50_000
    with db.engine.begin() as conn:
        for start in range(0, leads, chunk):
            conn.execute(
                insert(Lead),
                [
                    {
                        "external_id": f"L{i}",
                        "email": f"l{i}@x.example",
                        "company": f"Co {i % 5000}",
                        "source": SOURCES[i % 6],
                        "campaign": f"C{i % 40}",
                        "attributes": {},
                        "signals": [],
                        "payload_hash": "x",
                        "status": "handed_off"
                        if i < handoffs
                        else rng.choice(["nurture", "missing_context"]),
                        "qualified": i < handoffs,
                        "ready": i < handoffs,
                        "hot": False,
                        "score": 60,
                        "created_at": NOW - timedelta(minutes=i % 80640),
                        "updated_at": NOW,
                    }
                    for i in range(start, min(leads, start + chunk))
                ],
            )
        open_count = int(handoffs * open_share)
        for start in range(0, handoffs, chunk):
            rows, timers = [], []
            for i in range(start, min(handoffs, start + chunk)):
                assigned = NOW - timedelta(minutes=i % 80640)
                is_open = i < open_count
                decided = assigned + timedelta(minutes=rng.randint(5, 600))
                status = "open" if is_open else rng.choice(["accepted", "accepted", "rejected"])
                rows.append(
                    {
                        "id": i + 1,
                        "lead_id": i + 1,
                        "owner_email": f"rep{i % 12}@example.com",
                        "routed_by": "bench",
                        "assigned_at": assigned,
                        "due_at": NOW + timedelta(days=30)
                        if is_open
                        else assigned + timedelta(hours=4),
                        "status": status,
                        "decided_at": None if is_open else decided,
                        "reason_id": rng.choice(REASONS) if status == "rejected" else None,
                        "action": "recycle" if status == "rejected" else None,
                        "commercial": [],
                        "business_seconds": None if is_open else rng.randint(300, 36000),
                        "breached": None if is_open else rng.random() < 0.2,
                    }
                )
                if is_open:
                    # 1k per tick fall due at NOW + tick minutes; the rest far in the future.
                    due = (
                        NOW + timedelta(minutes=i // due_per_tick)
                        if i < due_per_tick * ticks
                        else NOW + timedelta(days=30)
                    )
                    timers.append(
                        {
                            "handoff_id": i + 1,
                            "kind": "remind",
                            "fraction": 0.5,
                            "due_at": due,
                            "status": "pending",
                            "late": False,
                        }
                    )
            conn.execute(insert(Handoff), rows)
            if timers:
                conn.execute(insert(SlaTimer), timers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--handoffs", type=int, default=500_000)
    args = parser.parse_args()
    definition = load_definition(DEFINITION)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.create_schema()
        start = time.perf_counter()
        ticks = 10
        fill(
            db,
            args.leads,
            args.handoffs,
            open_share=100_000 / args.handoffs,
            due_per_tick=1000,
            ticks=ticks,
        )
        print(
            f"filled {args.leads:,} leads / {args.handoffs:,} handoffs "
            f"(100,000 open) in {time.perf_counter() - start:.0f} s"
        )

        settings = Settings(
            slack_bot_token="xoxb-bench", slack_api_url="http://127.0.0.1:9/", database_url=db.url
        )
        services = build_services(settings, definition, db)
        times, memory = [], []
        for tick in range(ticks):
            begin = time.perf_counter()
            fired = reminders.sweep(services, now=NOW + timedelta(minutes=tick, seconds=30))
            times.append(time.perf_counter() - begin)
            memory.append(rss_mb())
            assert fired == 1000, fired
        print(
            f"SLA sweep, 100k open / 1k due per tick: "
            f"{', '.join(f'{t * 1000:.0f}' for t in times)} ms per tick "
            f"(median {sorted(times)[len(times) // 2] * 1000:.0f} ms) [target <= 200 ms]; "
            f"RSS {memory[0]:.0f} -> {memory[-1]:.0f} MB across ticks"
        )

        window = window_for(definition, NOW)
        begin = time.perf_counter()
        digest = build_digest(db, definition, window)
        digest_seconds = time.perf_counter() - begin
        # The revenue-target lines count leads by creation time: a second run with a target.
        with_target = replace(definition, target=Target(2_000_000, 2_750, "year", 0.15))
        begin = time.perf_counter()
        build_digest(db, with_target, window)
        target_seconds = time.perf_counter() - begin
        begin = time.perf_counter()
        rows = build_report(db, NOW - timedelta(days=30), NOW, "source")
        report_seconds = time.perf_counter() - begin
        begin = time.perf_counter()
        build_report(db, NOW - timedelta(days=56), NOW, "reason")
        reason_seconds = time.perf_counter() - begin
        # A past period: "open" at its end also counts the handoffs decided since.
        begin = time.perf_counter()
        build_report(db, NOW - timedelta(days=58), NOW - timedelta(days=28), "source")
        past_seconds = time.perf_counter() - begin
        print(
            f"digest over {args.leads:,} leads / {args.handoffs:,} handoffs: "
            f"{digest_seconds:.2f} s ({digest.handed_off:,} handed off that week), "
            f"{target_seconds:.2f} s with a revenue target [target <= 2 s]"
        )
        print(
            f"report --by source (30 days): {report_seconds:.2f} s ({len(rows)} rows); "
            f"--by reason (8 weeks): {reason_seconds:.2f} s; --by source (30 days ending "
            f"4 weeks ago): {past_seconds:.2f} s [target <= 2 s]"
        )
        db.dispose()


if __name__ == "__main__":
    main()
