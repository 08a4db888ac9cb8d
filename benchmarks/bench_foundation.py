"""Foundation benchmark: judge throughput, and `handoff import` against raw SQLite.

    python benchmarks/bench_foundation.py [--leads 100000]

Prints figures; asserts nothing. The import runs in a child process through the
real `handoff import` entry point; its peak memory is read from VmHWM, which
starts afresh at exec (ru_maxrss would carry over the forking parent's peak).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bot.definition import parse_definition  # noqa: E402
from bot.judge import judge  # noqa: E402
from bot.leads import parse_lead  # noqa: E402

NOW = datetime(2026, 11, 23, tzinfo=UTC)
SIGNALS = [f"s{i:02d}" for i in range(20)]
INDUSTRIES = ["Software", "Retail", "Logistics", "Finance", "Health", "Education"]


def big_definition() -> str:
    """10 fit criteria (every operator) and 20 signals."""
    signals = "\n".join(
        f"    - {{id: {s}, label: 'Signal {s}', points: {5 + i % 7}"
        + (", max: 20" if i % 3 == 0 else "")
        + "}"
        for i, s in enumerate(SIGNALS)
    )
    return f"""
version: 1
owners: {{marketing: m@example.com, sales: s@example.com}}
review_every_days: 90
timezone: Australia/Sydney
fit:
  - {{id: size, label: size, field: employees, between: [50, 5000]}}
  - {{id: region, label: region, field: country, in: [AU, NZ, US, GB]}}
  - {{id: not_edu, label: not education, field: industry, not_in: [Education]}}
  - {{id: revenue, label: revenue, field: revenue, gte: 1000000}}
  - {{id: debt, label: debt, field: debt_ratio, lte: 0.9}}
  - {{id: b2b, label: b2b, field: model, equals: b2b}}
  - {{id: title, label: title, field: title, matches: "head|chief|vp|director|manager"}}
  - {{id: email, label: work email, field: email, matches: "@(?!gmail|yahoo)"}}
  - {{id: seats, label: seats, field: seats, between: [5, 10000]}}
  - {{id: age, label: age, field: company_age, gte: 1}}
intent:
  window_days: 30
  signals:
{signals}
thresholds: {{mql: 50, hot: 80}}
commercial: [{{id: budget, label: Budget}}]
handoff:
  required: [email, company]
  sla: {{respond_within: "4h", business_hours: "mon-fri 09:00-17:00",
        remind_at: ["50%"], escalate_at: "100%"}}
  routing:
    - {{round_robin: [rep1@example.com, rep2@example.com, rep3@example.com]}}
  managers: {{rep1@example.com: mgr@example.com}}
reasons:
  - {{id: other, label: Other, action: recycle, note_required: true}}
digest: {{channel: "#marketing", schedule: "mon 09:00"}}
"""


def synthetic_record(i: int, rng: random.Random) -> dict:
    signals = [
        {
            "name": rng.choice(SIGNALS),
            "at": (
                NOW - timedelta(days=rng.randint(0, 45), minutes=rng.randint(0, 1440))
            ).isoformat(),
        }
        for _ in range(rng.randint(0, 8))
    ]
    return {
        "id": f"lead-{i}",
        "email": f"p{i}@company{i % 5000}.example",
        "name": f"Person {i}",
        "title": rng.choice(["Head of Ops", "Analyst", "VP Sales", "Engineer", "Director"]),
        "company": f"Company {i % 5000}",
        "source": rng.choice(["webinar", "ebook", "ads"]),
        "campaign": f"campaign-{i % 40}",
        "attributes": {
            "employees": rng.randint(1, 8000),
            "country": rng.choice(["AU", "NZ", "US", "DE"]),
            "industry": rng.choice(INDUSTRIES),
            "revenue": rng.randint(0, 10**8),
            "debt_ratio": rng.random(),
            "model": rng.choice(["b2b", "b2c"]),
            "seats": rng.randint(1, 500),
            "company_age": rng.randint(0, 40),
        },
        "signals": signals,
    }


def bench_judge(n: int) -> None:
    definition = parse_definition(yaml.safe_load(big_definition()), source="bench")
    rng = random.Random(7)
    leads = [parse_lead(synthetic_record(i, rng)) for i in range(n)]
    start = time.perf_counter()
    qualified = sum(judge(lead, definition, NOW).qualified for lead in leads)
    elapsed = time.perf_counter() - start
    print(
        f"judge: {n} leads, 10 criteria, 20 signals: {elapsed:.2f} s = "
        f"{n / elapsed:,.0f} leads/s ({qualified} qualified) [target >= 50,000/s]"
    )


def write_csv(path: Path, n: int) -> list[tuple]:
    rng = random.Random(11)
    attrs = [
        "employees",
        "country",
        "industry",
        "revenue",
        "debt_ratio",
        "model",
        "seats",
        "company_age",
    ]
    columns = [
        "id",
        "email",
        "name",
        "title",
        "company",
        "source",
        "campaign",
        *[f"attributes.{a}" for a in attrs],
        "signals",
    ]
    raw_rows = []
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(n):
            r = synthetic_record(i, rng)
            signals = ";".join(f"{s['name']}@{s['at']}" for s in r["signals"])
            row = [
                r["id"],
                r["email"],
                r["name"],
                r["title"],
                r["company"],
                r["source"],
                r["campaign"],
                *[r["attributes"][a] for a in attrs],
                signals,
            ]
            writer.writerow(row)
            raw_rows.append(
                (
                    r["id"],
                    r["email"],
                    r["name"],
                    r["title"],
                    r["company"],
                    r["source"],
                    r["campaign"],
                    json.dumps(r["attributes"]),
                    json.dumps(r["signals"]),
                )
            )
    return raw_rows


def bench_import(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        csv_path = tmp_path / "leads.csv"
        raw_rows = write_csv(csv_path, n)
        definition_path = tmp_path / "definition.yml"
        definition_path.write_text(big_definition())

        # Baseline: the same rows, one executemany into a plain SQLite table (WAL).
        con = sqlite3.connect(tmp_path / "baseline.db")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(
            "CREATE TABLE lead (id INTEGER PRIMARY KEY, external_id TEXT UNIQUE, "
            "email TEXT, name TEXT, title TEXT, company TEXT, source TEXT, campaign TEXT, "
            "attributes TEXT, signals TEXT)"
        )
        start = time.perf_counter()
        with con:
            con.executemany(
                "INSERT INTO lead (external_id, email, name, title, company, source, "
                "campaign, attributes, signals) VALUES (?,?,?,?,?,?,?,?,?)",
                raw_rows,
            )
        baseline = time.perf_counter() - start
        con.close()
        del raw_rows

        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'handoff.db'}",
            "HANDOFF_DEFINITION": str(definition_path),
        }
        script = (
            "import sys, time\n"
            "from bot.cli import main\n"
            "start = time.perf_counter()\n"
            "try:\n"
            "    main(['import', sys.argv[1]], standalone_mode=False)\n"
            "finally:\n"
            "    elapsed = time.perf_counter() - start\n"
            "    status = open('/proc/self/status').read()\n"
            "    rss = int(status.split('VmHWM:')[1].split()[0]) / 1024\n"
            "    print(f'BENCH {elapsed} {rss}', file=sys.stderr)\n"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script, str(csv_path)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        bench_line = [ln for ln in proc.stderr.splitlines() if ln.startswith("BENCH")][-1]
        _, elapsed_s, rss_s = bench_line.split()
        elapsed, rss = float(elapsed_s), float(rss_s)
        print(proc.stdout.strip())
        print(
            f"baseline raw executemany: {n} rows in {baseline:.2f} s = {n / baseline:,.0f} rows/s"
        )
        print(
            f"handoff import:           {n} rows in {elapsed:.2f} s = {n / elapsed:,.0f} rows/s "
            f"= {baseline / elapsed:.0%} of baseline [target >= 30%]; "
            f"peak RSS {rss:.0f} MB [target < 200 MB]"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=100_000)
    args = parser.parse_args()
    bench_judge(args.leads)
    bench_import(args.leads)


if __name__ == "__main__":
    main()
