"""Leads from HubSpot: webhook -> DM latency, and a 10,000-record poll under a rate limit.

    python benchmarks/bench_crm.py

1. webhook -> DM (median, p95): a workflow's "Send a webhook" body for one contact,
   POSTed to /hubspot/webhook (X-Handoff-Key), until the fake Slack records the
   chat.postMessage; the app in a process of its own, as `handoff run` starts it.
   Handoff's own time is that minus one chat.postMessage round trip (a real card's
   blocks, measured in the same run); the same figures for POST /leads beside it.
   Target: own time p95 <= 10 ms.
2. a poll of POLL_RECORDS changed contacts against the fake HubSpot (in a process of
   its own) limited to RATE search requests a second, `search_per_second` set to
   that limit: wall time against the limit-bound ideal (pages / RATE), the 429s it
   met, and tracemalloc's peak for a tenth of the records and for all of them (flat
   memory: the ratio stays near 1). Target: within 10% of the ideal.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import tempfile
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_delivery import PACE, App, ms, three_rep_definition  # noqa: E402
from bot.app import build_services  # noqa: E402
from bot.crm.sources import load_sources  # noqa: E402
from bot.crm.webhook import ingest_records  # noqa: E402
from bot.definition import load_definition  # noqa: E402
from bot.hubspot.api import HubSpotClient  # noqa: E402
from bot.hubspot.poll import poll_once  # noqa: E402
from bot.intake import Intake  # noqa: E402
from bot.slack import make_client  # noqa: E402
from store.db import Database  # noqa: E402
from tests.conftest import BOT_TOKEN, lead, make_settings  # noqa: E402
from tests.fakehubspot import TOKEN, FakeHubSpot  # noqa: E402
from tests.fakeslack import FakeSlack  # noqa: E402

POST = "chat.postMessage"
LEADS = 200
TEAM = [f"team{i}@example.com" for i in range(20)]
WEBHOOK_KEY = "bench-webhook-key-0123456789"
POLL_RECORDS = 10_000
RATE = 10.0  # search requests a second the fake answers
SOURCES = """\
hubspot:
  object: contacts
  fields:
    email: email
    name: [firstname, lastname]
    company: company
    owner: owner_email
  attributes: {employees: numemployees, country: country, industry: industry}
  signals: {demo_request: demo_requested_at, pricing_page: last_pricing_visit}
  search_per_second: %g
"""


def contact(n: int, owner: str, day_ms: int) -> dict[str, str]:
    """A contact that qualifies (a demo request and a pricing visit a day ago)."""
    return {
        "email": f"lead{n}@acme.example",
        "firstname": "Ana",
        "lastname": f"Ruiz{n}",
        "company": "Acme",
        "owner_email": owner,
        "numemployees": "250",
        "country": "AU",
        "industry": "Software",
        "demo_requested_at": str(day_ms),
        "last_pricing_visit": str(day_ms),
    }


def a_day_ago_ms() -> int:
    return int((time.time() - 86_400) * 1000)


class WebhookApp(App):
    """bench_delivery's App with sources.yml and a webhook key."""

    def __init__(self, tmp: Path, fake: FakeSlack) -> None:
        from benchmarks.harness import start_app_process

        db = Database(f"sqlite:///{tmp / 'webhook.db'}")
        db.create_schema()
        db.dispose()
        sources = tmp / "sources.yml"
        sources.write_text(SOURCES % 4)
        settings = make_settings(fake, db.url, hubspot_webhook_key=WEBHOOK_KEY)
        self.process, self.base_url = start_app_process(
            settings, three_rep_definition(tmp), db.url, sources
        )
        self.http = httpx.Client(base_url=self.base_url, timeout=30)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        response = self.http.post(path, content=body, headers=headers)
        assert response.status_code == 202, (response.status_code, response.text)

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.join(30)


def time_to_dm(app: WebhookApp, fake: FakeSlack, kind: str, n: int, start: int) -> list[float]:
    """Seconds from sending each lead to its DM, one lead at a time, spaced per rep."""
    from tests.conftest import intake_headers

    samples, last_for = [], {}
    day_ms = a_day_ago_ms()
    for i in range(start, start + n):
        owner = TEAM[i % len(TEAM)]
        wait = last_for.get(owner, 0.0) + PACE - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        if kind == "webhook":
            body = json.dumps({"hs_object_id": str(10_000 + i), **contact(i, owner, day_ms)})
            path, headers = "/hubspot/webhook", {"X-Handoff-Key": WEBHOOK_KEY}
        else:
            body = json.dumps(lead(f"direct-{i}", owner=owner))
            path, headers = "/leads", intake_headers(body.encode())
        before = len(fake.successful(POST))
        begin = time.perf_counter()
        app.post(path, body.encode(), {"Content-Type": "application/json", **headers})
        posted = fake.wait_for(POST, count=before + 1, timeout=10)[-1].at_perf
        last_for[owner] = posted
        samples.append(posted - begin)
    return samples


def webhook_latency(tmp: Path) -> None:
    with FakeSlack() as fake:
        for i, email in enumerate(TEAM):
            fake.add_user(f"U0TEAM{i:02d}", email)
        app = WebhookApp(tmp, fake)
        try:
            time_to_dm(app, fake, "webhook", len(TEAM), 0)  # warm: every rep looked up once
            webhook = time_to_dm(app, fake, "webhook", LEADS, len(TEAM))
            direct = time_to_dm(app, fake, "leads", LEADS, 0)
        finally:
            app.stop()
        card = fake.successful(POST)[-1].args
        client = make_client(BOT_TOKEN, fake.url)
        client.chat_postMessage(channel="C0FLOOR", text="warm")
        floor = []
        for _ in range(300):
            begin = time.perf_counter()
            client.chat_postMessage(channel="C0FLOOR", text=card["text"], blocks=card["blocks"])
            floor.append(time.perf_counter() - begin)
    slack_trip = statistics.median(floor)
    print(f"chat.postMessage with a card's blocks (one Slack round trip): {ms(floor)}")
    for label, samples in (("webhook", webhook), ("POST /leads", direct)):
        own = [s - slack_trip for s in samples]
        print(
            f"{label:11s} -> DM: {ms(samples)}; Handoff's own time {ms(own)} [target p95 <= 10 ms]"
        )


def serve_hubspot(records: int, rate: float, conn: Connection) -> None:
    """The fake HubSpot in a process of its own: `records` contacts changed a second apart."""
    fake = FakeHubSpot().start()
    day_ms = a_day_ago_ms()
    start = int(time.time() * 1000) - records * 1000
    for n in range(records):
        fake.add_contact(start + n * 1000, **contact(n, TEAM[n % len(TEAM)], day_ms))
    fake.rate_limit(int(rate), seconds=1.0)
    conn.send(fake.url)
    conn.recv()  # until told to stop
    conn.send(fake.rate_limited)
    fake.stop()


def poll(tmp: Path, records: int, *, traced: bool) -> tuple[float, int, int, float]:
    """One poll of `records` changed contacts; (seconds, pages, 429s, peak MiB)."""
    spawn = multiprocessing.get_context("spawn")
    mine, theirs = spawn.Pipe()
    server = spawn.Process(target=serve_hubspot, args=(records, RATE, theirs))
    server.start()
    url = mine.recv()
    db = Database(f"sqlite:///{tmp / f'poll-{records}-{traced}.db'}")
    db.create_schema()
    sources_file = tmp / "poll-sources.yml"
    sources_file.write_text(SOURCES % RATE)
    source = load_sources(sources_file).hubspot
    assert source is not None
    with FakeSlack() as slack, httpx.Client(timeout=30) as http:
        settings = make_settings(slack, db.url)
        definition = load_definition(three_rep_definition(tmp))
        services = build_services(settings, definition, db)
        intake = Intake(db, definition, delivery=services.delivery)
        client = HubSpotClient(http, url, TOKEN, search_per_second=source.search_per_second)

        def ingest(page: list[dict[str, Any]]) -> None:
            ingest_records(services, intake, source, page)

        if traced:
            tracemalloc.start()
        begin = time.perf_counter()
        result = poll_once(client, db, ingest, source.properties, start_ms=0)
        seconds = time.perf_counter() - begin
        peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else 0.0
        tracemalloc.stop()
    mine.send("stop")
    limited = mine.recv()
    server.join(30)
    db.dispose()
    assert result.delivered == records, result
    return seconds, result.pages, limited, peak


def polling(tmp: Path) -> None:
    seconds, pages, limited, _ = poll(tmp, POLL_RECORDS, traced=False)
    ideal = (pages - 1) / RATE  # the first request is free; then one per 1/RATE s
    print(
        f"poll of {POLL_RECORDS:,} records in {pages} pages at {RATE:g} req/s: {seconds:.2f} s, "
        f"ideal {ideal:.2f} s, {seconds / ideal - 1:+.1%} [target within 10%]; "
        f"{limited} answered 429"
    )
    _, _, _, small = poll(tmp, POLL_RECORDS // 10, traced=True)
    _, _, _, full = poll(tmp, POLL_RECORDS, traced=True)
    print(
        f"peak traced memory: {small:.1f} MiB for {POLL_RECORDS // 10:,} records, "
        f"{full:.1f} MiB for {POLL_RECORDS:,} ({full / small:.2f}x) [flat: near 1x]"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        webhook_latency(Path(tmp))
        polling(Path(tmp))


if __name__ == "__main__":
    main()
