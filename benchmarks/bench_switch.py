"""What following the active definition costs each process.

    python benchmarks/bench_switch.py

1. the check every sweep makes when nothing changed (one indexed row read), next
   to a bare `SELECT 1` on the same engine (the floor);
2. a switch: the check that finds a new active version, reads its YAML, parses and
   validates it, and swaps it in.

SQLite file in a temporary directory (WAL, as the app runs it). Prints figures;
asserts nothing.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import clock  # noqa: E402
from bot.definition import load_definition  # noqa: E402
from bot.versions import APPROVED, establish  # noqa: E402
from store import governance as store  # noqa: E402
from store.db import Database  # noqa: E402
from store.models import DefinitionState, DefinitionVersion  # noqa: E402

ROUNDS = 2000
SWITCHES = 50


def _quantiles(samples: list[float]) -> str:
    cut = statistics.quantiles(samples, n=100)
    return f"median {statistics.median(samples) * 1e6:7.1f} µs   p95 {cut[94] * 1e6:7.1f} µs"


def main() -> None:
    definition = load_definition(ROOT / "qualification.yml")
    text = (ROOT / "qualification.yml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        db.create_schema()
        active = establish(db, definition, report=False)

        floor = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            with db.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            floor.append(time.perf_counter() - start)
        check = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            active.refresh()
            check.append(time.perf_counter() - start)
        print(f"SELECT 1 (floor)            {_quantiles(floor)}")
        print(f"sweep check, no change      {_quantiles(check)}")

        switch = []
        for i in range(SWITCHES):
            changed = text.replace("review_every_days: 90", f"review_every_days: {91 + i}")
            with db.transaction() as session:
                row = store.add(
                    session,
                    DefinitionVersion(
                        fingerprint=f"bench{i:011d}",
                        yaml_text=changed,
                        state=DefinitionState.PROPOSED,
                        created_at=clock.now(),
                        proposed_by="bench",
                    ),
                )
                assert row.id is not None
                store.activate(session, row.id, how=APPROVED, by="bench", at=clock.now())
            start = time.perf_counter()
            assert active.refresh()
            switch.append(time.perf_counter() - start)
        print(f"sweep check with a switch   {_quantiles(switch)}   ({SWITCHES} switches)")
        db.dispose()


if __name__ == "__main__":
    main()
