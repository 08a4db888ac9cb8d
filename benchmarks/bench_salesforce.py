"""Salesforce poll benchmark: 10,000 changed Leads from the fake Salesforce, over HTTP.

    python benchmarks/bench_salesforce.py [--leads 10000] [--batch 2000]

Two runs on a fresh SQLite file each: the poll alone (token, SOQL query, every
`nextRecordsUrl` page, the cursor saved after each page; ingest does nothing) and
the poll through the real mapping and intake (judged, stored, handoffs queued in
the outbox; no worker runs, so nothing is sent). The fake runs in this process and
shares its GIL, so the figures are an upper bound on Handoff's own cost. Prints
figures, including the memory high-water mark after each run; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bot import clock  # noqa: E402
from bot.app import build_services  # noqa: E402
from bot.crm.sources import parse_sources  # noqa: E402
from bot.crm.webhook import ingest_records  # noqa: E402
from bot.definition import load_definition  # noqa: E402
from bot.intake import Intake  # noqa: E402
from bot.salesforce.api import SalesforceClient  # noqa: E402
from bot.salesforce.poll import poll_once  # noqa: E402
from bot.settings import Settings  # noqa: E402
from store.db import Database  # noqa: E402
from tests.fakesalesforce import CLIENT_ID, CLIENT_SECRET, FakeSalesforce  # noqa: E402

DEFINITION = ROOT / "tests" / "data" / "definition.yml"
SOURCE = parse_sources(
    {
        "salesforce": {
            "fields": {
                "email": "Email",
                "name": ["FirstName", "LastName"],
                "company": "Company",
                "owner": "Owner.Email",
            },
            "attributes": {"employees": "NumberOfEmployees", "country": "Country"},
            "signals": {"demo_request": "Demo_Requested__c", "pricing_page": "Pricing_Visit__c"},
        }
    }
).salesforce


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill(fake: FakeSalesforce, count: int) -> int:
    """`count` Leads changed from now on, ten a second; half qualify. The cursor start."""
    fake.add_field("Demo_Requested__c", "datetime")
    fake.add_field("Pricing_Visit__c", "datetime")
    owners = [fake.add_user(f"rep{n}@example.com") for n in (1, 2)]
    start = clock.now().replace(microsecond=0) + timedelta(minutes=1)
    yesterday = (start - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    for n in range(count):
        fake.add_lead(
            start + timedelta(seconds=n // 10),
            Email=f"lead{n}@acme.example",
            FirstName="Ana",
            LastName=f"Ruiz {n}",
            Company=f"Acme {n % 500}",
            NumberOfEmployees=250 if n % 2 else 20,
            Country="AU",
            Demo_Requested__c=yesterday,
            Pricing_Visit__c=yesterday,
            OwnerId=owners[n % 2],
        )
    return int(start.timestamp() * 1000)


def run(fake: FakeSalesforce, start_ms: int, batch: int, *, full: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{tmp}/bench.db"
        db = Database(db_url)
        db.create_schema()
        settings = Settings(database_url=db_url, slack_bot_token="xoxb-bench")
        services = build_services(settings, load_definition(DEFINITION), db)
        intake = Intake(db, services.definition, delivery=services.delivery)
        outcomes: dict[str, int] = {}

        def ingest(records: list[dict[str, Any]]) -> None:
            if full:
                for result in ingest_records(services, intake, SOURCE, records):
                    outcomes[result["outcome"]] = outcomes.get(result["outcome"], 0) + 1

        with httpx.Client(timeout=60) as http:
            client = SalesforceClient(http, fake.url, CLIENT_ID, CLIENT_SECRET)
            began = time.perf_counter()
            result = poll_once(client, db, ingest, SOURCE, start_ms=start_ms, batch_size=batch)
            seconds = time.perf_counter() - began
        db.dispose()
    return {"seconds": seconds, "result": result, "outcomes": outcomes, "rss": max_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=2_000)
    args = parser.parse_args()
    with FakeSalesforce() as fake:
        start_ms = fill(fake, args.leads)
        print(f"{args.leads} changed Leads, pages of {args.batch}; RSS {max_rss_mb():.0f} MB")
        for label, full in (("poll only", False), ("poll + mapping + intake", True)):
            done = run(fake, start_ms, args.batch, full=full)
            result = done["result"]
            print(
                f"{label:<26} {done['seconds']:6.2f} s  "
                f"{result.delivered / done['seconds']:8.0f} records/s  "
                f"{result.pages} pages  max RSS {done['rss']:.0f} MB"
                + (f"  outcomes {done['outcomes']}" if full else "")
            )


if __name__ == "__main__":
    main()
