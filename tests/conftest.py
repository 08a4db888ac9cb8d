"""Shared fixtures: a real SQLite file (or PostgreSQL), the fake Slack Web API,
and the real app served over HTTP on a free loopback port."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from bot import clock
from bot.definition import Definition, load_definition
from bot.server import HandoffServer
from bot.services import Services
from bot.settings import Settings
from bot.signing import intake_signature
from store.db import Database
from tests.fakeslack import FakeSlack
from tests.slackreq import sign

DATA = Path(__file__).parent / "data"
SIGNING_SECRET = "test-signing-secret"
INTAKE_SECRET = "test-intake-secret"
BOT_TOKEN = "xoxb-test-token"
POSTGRES_URL = os.environ.get("HANDOFF_TEST_POSTGRES_URL")

REPS = {
    "rep1@example.com": "U0REP1",
    "rep2@example.com": "U0REP2",
    "nz-rep@example.com": "U0NZREP",
    "mgr@example.com": "U0MGR",
    "stranger@example.com": "U0STRANGER",
}


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's Slack, database or logging settings."""
    for name in list(os.environ):
        ours = name.startswith(("SLACK_", "HANDOFF_", "HUBSPOT_", "SALESFORCE_")) or name in (
            "DATABASE_URL",
            "PORT",
            "LOG_LEVEL",
            "LOG_FORMAT",
        )
        if ours and name != "HANDOFF_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def definition() -> Definition:
    return load_definition(DATA / "definition.yml")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'handoff.db'}"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.create_schema()
    yield database
    database.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (skipped without HANDOFF_TEST_POSTGRES_URL)."""
    if not POSTGRES_URL:
        pytest.skip("HANDOFF_TEST_POSTGRES_URL not set")
    admin = create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
    )
    name = f"handoff_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg(pg_url: str) -> Iterator[Database]:
    """The store on a fresh PostgreSQL database (skipped without the URL)."""
    database = Database(pg_url)
    database.create_schema()
    yield database
    database.dispose()


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        for email, user_id in REPS.items():
            fake.add_user(user_id, email)
        yield fake


def make_settings(fake_slack: FakeSlack, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "slack_bot_token": BOT_TOKEN,
        "slack_signing_secret": SIGNING_SECRET,
        "slack_api_url": fake_slack.url,
        "database_url": db_url,
        "handoff_definition": str(DATA / "definition.yml"),
        "handoff_intake_secret": INTAKE_SECRET,
        "port": 3000,
    }
    values.update(overrides)
    return Settings(**values)


def intake_headers(
    body: bytes, *, secret: str = INTAKE_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of a signed `POST /leads` (DESIGN.md), stamped now unless told."""
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-Handoff-Timestamp": ts,
        "X-Handoff-Signature": intake_signature(secret, ts, body),
    }


class RunningApp:
    """The real app on a loopback port, and signed clients for its two inbound doors."""

    def __init__(self, server: HandoffServer) -> None:
        self.server = server
        self.services: Services = server.services
        self.url = f"http://127.0.0.1:{server.port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def post_leads(
        self, payload: Any, *, secret: str = INTAKE_SECRET, timestamp: int | None = None
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.http.post(
            "/leads", content=body, headers=intake_headers(body, secret=secret, timestamp=timestamp)
        )

    def slack(
        self,
        body: str,
        *,
        json_body: bool = False,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
    ) -> httpx.Response:
        """POST a Slack request (form `payload=...` or JSON event) to /slack/events, signed."""
        headers = sign(body, secret, timestamp)
        headers["Content-Type"] = (
            "application/json" if json_body else "application/x-www-form-urlencoded"
        )
        return self.http.post("/slack/events", content=body.encode(), headers=headers)

    def drain(self) -> None:
        """Send whatever the outbox holds that is due now."""
        self.services.delivery.drain()


def start_app(
    settings: Settings, definition: Definition, db: Database, *, background: bool = False
) -> tuple[HandoffServer, threading.Thread]:
    from bot.app import build_services
    from bot.crm.sources import read_sources

    signal_ids = frozenset(signal.id for signal in definition.intent.signals)
    sources = read_sources(settings.handoff_sources, signal_ids=signal_ids)
    services = build_services(settings, definition, db, sources)
    server = HandoffServer(services, host="127.0.0.1", port=0, threads=8)
    if background:
        server.start_background()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def app_factory(fake_slack: FakeSlack, definition: Definition) -> Iterator[Any]:
    """Start (and at the end stop) apps; `background=True` also runs the outbox
    worker and scheduler threads, otherwise tests drain the outbox themselves."""
    started: list[tuple[HandoffServer, threading.Thread]] = []
    apps: list[RunningApp] = []

    def start(
        db: Database, *, background: bool = False, defn: Definition | None = None, **overrides: Any
    ) -> RunningApp:
        settings = make_settings(fake_slack, db.url, **overrides)
        server, thread = start_app(settings, defn or definition, db, background=background)
        started.append((server, thread))
        apps.append(RunningApp(server))
        return apps[-1]

    yield start
    for server, thread in started:
        server.stop()
        thread.join(5)
    for running in apps:
        running.http.close()


@pytest.fixture
def app(app_factory: Any, db: Database) -> RunningApp:
    return app_factory(db)


def run_together(*targets: Any) -> None:
    """Start every target on its own thread at once; return when all are done."""
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def lead(lead_id: str = "crm-1", **overrides: Any) -> dict[str, Any]:
    """A lead that qualifies against tests/data/definition.yml (score 60, signals
    a day or two before today, so it qualifies whenever the tests run, and the
    same call gives the same payload all day)."""
    now = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    day = timedelta(days=1)
    data: dict[str, Any] = {
        "id": lead_id,
        "email": f"{lead_id}@acme.example",
        "name": "Ana Ruiz",
        "title": "Head of Ops",
        "company": "Acme",
        "source": "webinar",
        "campaign": "Q4 pricing webinar",
        "attributes": {"employees": 250, "industry": "Software", "country": "AU"},
        "signals": [
            {"name": "demo_request", "at": (now - 2 * day).isoformat()},
            {"name": "pricing_page", "at": (now - 2 * day).isoformat()},
            {"name": "pricing_page", "at": (now - day).isoformat()},
        ],
    }
    data.update(overrides)
    return data
