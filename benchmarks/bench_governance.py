"""Governance benchmark: `backtest` and `calibrate` over a big SQLite file, streamed.

    python benchmarks/bench_governance.py [--leads 1000000] [--baseline 100000]

Two databases are filled straight into SQLite (this measures the reads, not intake):
a baseline of 100k leads and the full 1M, each with attributes and signals that the
judge reads, and 40% of the leads decided over 8 weeks (a fifth of the decisions
rejections, spread over the definition's reasons, "too small" ones at 50-99 employees).
Each command runs on both in this process; the figures are the time, the peak of the
Python heap (tracemalloc, a second run) and how far the RSS rose during the run, and
the ratio of the 1M heap peak to the baseline's: flat memory is a ratio near 1, where
loading everything would give 10. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from bot.backtest import run_backtest  # noqa: E402
from bot.calibrate import calibrate  # noqa: E402
from bot.definition import load_definition, parse_definition  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import Handoff, Lead  # noqa: E402

DEFINITION = ROOT / "tests" / "data" / "definition.yml"
NOW = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
COUNTRIES = ["AU", "AU", "AU", "NZ"]
REASONS = ["too_small", "too_small", "wrong_region", "no_budget", "bad_timing", "other"]


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets VmHWM to the current RSS."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def fill(db: Database, leads: int) -> None:
    rng = random.Random(1)
    chunk = 50_000
    decided = int(leads * 0.4)
    with db.engine.begin() as conn:
        for start in range(0, leads, chunk):
            rows, handoffs = [], []
            for i in range(start, min(leads, start + chunk)):
                is_decided = i < decided
                rejected = is_decided and i % 5 == 0
                reason = REASONS[i % len(REASONS)] if rejected else None
                employees = rng.randint(50, 99) if reason == "too_small" else rng.randint(20, 6000)
                at = NOW - timedelta(days=rng.randint(1, 20))
                rows.append(
                    {
                        "id": i + 1,
                        "external_id": f"L{i}",
                        "email": f"l{i}@x.example",
                        "company": f"Co {i % 5000}",
                        "source": "webinar",
                        "attributes": {
                            "employees": employees,
                            "country": "NZ" if reason == "wrong_region" else COUNTRIES[i % 4],
                            "industry": "Software",
                        },
                        "signals": [
                            {"name": "demo_request", "at": at.isoformat()},
                            {"name": "pricing_page", "at": at.isoformat()},
                            {"name": "pricing_page", "at": (at + timedelta(hours=2)).isoformat()},
                        ][: 1 + i % 3 if not is_decided else 3],
                        "payload_hash": "x",
                        "status": "accepted" if is_decided and not rejected else "nurture",
                        "qualified": is_decided,
                        "ready": is_decided,
                        "hot": False,
                        "score": 60,
                        "created_at": at,
                        "updated_at": at + timedelta(hours=3),
                    }
                )
                if is_decided:
                    assigned = NOW - timedelta(minutes=i % 80640)
                    handoffs.append(
                        {
                            "id": i + 1,
                            "lead_id": i + 1,
                            "owner_email": f"rep{i % 12}@example.com",
                            "routed_by": "bench",
                            "assigned_at": assigned,
                            "due_at": assigned + timedelta(hours=4),
                            "status": "rejected" if rejected else "accepted",
                            "decided_at": assigned + timedelta(minutes=30),
                            "reason_id": reason,
                            "action": "disqualify" if rejected else None,
                            "commercial": [],
                        }
                    )
            conn.execute(insert(Lead), rows)
            if handoffs:
                conn.execute(insert(Handoff), handoffs)


def measure(run: Callable[[], object]) -> tuple[float, float, float, object]:
    """(seconds, how far the process's RSS peaked above its level at the start in MB,
    peak Python heap in MB, result). The heap is traced in a second run: tracing slows
    Python down. (The RSS at the start holds what filling the database left behind.)"""
    gc.collect()
    reset_peak_rss()
    before = peak_rss_mb()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    rss = peak_rss_mb() - before
    del result
    gc.collect()
    tracemalloc.start()
    result = run()
    heap = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, rss, heap, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    args = parser.parse_args()
    text = DEFINITION.read_text()
    definition = load_definition(DEFINITION)
    data = yaml.safe_load(text)
    data["version"] += 1
    data["fit"][0]["between"] = [100, 5000]
    candidate = parse_definition(data, source="candidate")
    start, end = NOW - timedelta(weeks=12), NOW + timedelta(days=1)
    figures: dict[str, dict[int, tuple[float, float, float]]] = {"backtest": {}, "calibrate": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for leads in (args.baseline, args.leads):
            db = Database(f"sqlite:///{Path(tmp) / f'bench-{leads}.db'}")
            db.create_schema()
            begin = time.perf_counter()
            fill(db, leads)
            print(
                f"filled {leads:,} leads ({int(leads * 0.4):,} decided) in "
                f"{time.perf_counter() - begin:.0f} s"
            )
            seconds, rss, heap, report = measure(
                lambda db=db: run_backtest(db, definition, candidate)
            )
            figures["backtest"][leads] = (seconds, rss, heap)
            print(
                f"  backtest  on {leads:>9,} leads: {seconds:6.2f} s [target <= 10 s]; "
                f"RSS peak +{rss:.0f} MB over its start, peak heap {heap:.1f} MB; "
                f"{report.rejected['filtered']:,} rejections filtered, "  # type: ignore[attr-defined]
                f"{report.accepted['dropped']:,} accepts dropped"  # type: ignore[attr-defined]
            )
            seconds, rss, heap, result = measure(
                lambda db=db: calibrate(db, definition, text, start=start, end=end)
            )
            figures["calibrate"][leads] = (seconds, rss, heap)
            top = result.suggestions[0]  # type: ignore[attr-defined]
            print(
                f"  calibrate on {leads:>9,} leads: {seconds:6.2f} s [target <= 10 s]; "
                f"RSS peak +{rss:.0f} MB over its start, peak heap {heap:.1f} MB; "
                f"top: {top.change}: {top.summary}"
            )
            db.dispose()
    for name, runs in figures.items():
        base, full = runs[args.baseline], runs[args.leads]
        print(
            f"{name}: {args.leads // args.baseline}x the leads took {full[0] / base[0]:.1f}x the "
            f"time; peak heap ratio {full[2] / max(base[2], 0.01):.2f} [flat memory: near 1]; "
            f"RSS growth during the run +{base[1]:.0f} MB -> +{full[1]:.0f} MB"
        )


if __name__ == "__main__":
    main()
