"""POST /leads and GET /healthz through the real server, and the card's delivery
to the owner's DM through the real slack-sdk client and the fake Slack Web API."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

from click.testing import CliRunner
from freezegun import freeze_time
from sqlalchemy import select

from bot import clock, governance
from bot.cli import main
from store.models import Audit, Handoff, Lead, Outbox
from tests.conftest import DATA, lead

ROOT = DATA.parent.parent


def stored(db, model):
    with db.session() as session:
        return session.scalars(select(model)).all()


def test_healthz(app) -> None:
    assert app.http.get("/healthz").json() == {"status": "ok"}


def test_a_qualified_lead_reaches_the_owner_dm(app, db, fake_slack) -> None:
    response = app.post_leads(lead("crm-1"))
    assert response.status_code == 202
    assert response.json()["results"] == [
        {
            "id": "crm-1",
            "outcome": "handed_off",
            "score": 60,
            "qualified": True,
            "owner": "rep1@example.com",
            "why": "next in the general rotation of 2 reps",
        }
    ]
    app.drain()
    [post] = fake_slack.calls_to("chat.postMessage")
    assert post.args["channel"] == "U0REP1"
    assert "Acme" in post.args["text"] and "Respond by" in post.args["text"]
    blocks = post.args["blocks"]
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    dump = json.dumps(blocks)
    for expected in (
        "50-5000 employees",
        "Requested a demo",
        "+40",
        "Visited pricing",
        "60 points (qualifies at 50)",
        "Budget confirmed",
        "Accept",
        "Reject",
    ):
        assert expected in dump
    accept = blocks[-2]["elements"][0]
    assert (accept["action_id"], accept["style"]) == ("handoff_accept", "primary")
    [handoff] = stored(db, Handoff)
    assert (handoff.channel, handoff.owner_user_id) == ("DU0REP1", "U0REP1")
    assert handoff.ts == post.response["ts"]


def test_list_of_leads_gets_an_outcome_each(app) -> None:
    first = lead("a")
    body = [first, lead("b", signals=[]), lead("c", company=None), first]
    results = app.post_leads(body).json()["results"]
    assert [(r["id"], r["outcome"]) for r in results] == [
        ("a", "handed_off"),
        ("b", "nurture"),
        ("c", "missing_context"),
        ("a", "unchanged"),
    ]


def test_a_lead_not_handed_off_says_why(app) -> None:
    now = clock.now().replace(microsecond=0)
    day = timedelta(days=1)
    small = lead(
        "small",
        attributes={"employees": 20, "country": "DE"},
        signals=[
            {"name": "webinar", "at": (now - day).isoformat()},
            {"name": "demo_request", "at": (now - 40 * day).isoformat()},
            {"name": "pricing_page", "at": (now + 2 * day).isoformat()},
            {"name": "podcast", "at": (now - day).isoformat()},
        ],
    )
    no_company = lead("no-company", company=None)
    results = {r["id"]: r for r in app.post_leads([small, no_company]).json()["results"]}
    assert results["small"] == {
        "id": "small",
        "outcome": "nurture",
        "score": 15,
        "qualified": False,
        "why": "fit failed: size (employees 20, needs 50-5000 employees), "
        "region (country DE, needs AU or NZ); intent 15 of 50 points (not counted: "
        "demo_request older than 30 days, pricing_page in the future, "
        "podcast not in the definition)",
    }
    assert results["no-company"]["outcome"] == "missing_context"
    assert results["no-company"]["why"] == "missing: company"

    # Sent again: unchanged says so; changed while with sales says it stays there.
    ready = lead("ready")
    assert app.post_leads(ready).json()["results"][0]["outcome"] == "handed_off"
    again = app.post_leads([small, {**ready, "title": "COO"}]).json()["results"]
    assert [(r["outcome"], r["why"]) for r in again] == [
        ("unchanged", "sent before with the same data: nothing to judge again"),
        ("updated", "already with sales: judged again and kept, not handed off again"),
    ]


def test_handoff_lead_shows_the_whole_verdict(app, db, monkeypatch) -> None:
    now = clock.now().replace(microsecond=0)
    day = timedelta(days=1)
    signals = [
        *[{"name": "pricing_page", "at": (now - day).isoformat()}] * 4,
        {"name": "webinar", "at": (now - day).isoformat()},
        {"name": "demo_request", "at": (now - 40 * day).isoformat()},
        {"name": "demo_request", "at": (now + 2 * day).isoformat()},
        {"name": "podcast", "at": (now - day).isoformat()},
    ]
    small = lead("small", attributes={"employees": 20, "country": "AU"}, signals=signals)
    assert app.post_leads(small).json()["results"][0]["outcome"] == "nurture"
    monkeypatch.setenv("DATABASE_URL", db.url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))

    result = CliRunner().invoke(main, ["lead", "small"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    judged = next(i for i, line in enumerate(lines) if " judged " in line)
    assert lines[judged].endswith(
        "judged         not qualified: fit failed, 45 of 50 points (definition v3)"
    )
    assert lines[judged + 1 : judged + 8] == [
        "✗ size failed: employees 20 (needs 50-5000 employees)",
        "✓ region passed: country AU (needs AU or NZ)",
        "+30 pricing_page ×4 (Visited pricing), capped from +40",
        "+15 webinar (Attended a webinar)",
        f"not counted: demo_request at {(now - 40 * day).isoformat()} (older than 30 days)",
        f"not counted: demo_request at {(now + 2 * day).isoformat()} (in the future)",
        f"not counted: podcast at {(now - day).isoformat()} (not in the definition)",
    ]

    # Judged under another version than the active one: its labels might not mean the
    # same, so ids only.
    governance.force(
        app.services, (ROOT / "qualification.yml").read_text(), why="a test", by="ops@example.com"
    )
    other = CliRunner().invoke(main, ["lead", "small"]).stdout
    assert "✗ size failed: 20\n" in other and "+15 webinar\n" in other


def test_bad_signature_is_refused_and_nothing_stored(app, db) -> None:
    response = app.post_leads(lead(), secret="wrong")
    assert (response.status_code, response.json()) == (401, {"error": "bad signature"})
    assert stored(db, Lead) == []


def test_stale_timestamp_is_refused(app, db) -> None:
    response = app.post_leads(lead(), timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    assert "more than 5 minutes" in response.json()["error"]
    assert stored(db, Lead) == []


def test_missing_signature_headers(app) -> None:
    response = app.http.post("/leads", json=lead())
    assert response.status_code == 401


def test_oversize_body_is_413(app, db) -> None:
    response = app.post_leads(b"[" + b" " * (1024 * 1024) + b"]")
    assert response.status_code == 413
    assert stored(db, Lead) == []


def test_bad_json_is_400(app) -> None:
    response = app.post_leads(b"{not json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"].startswith("body is not valid JSON")


def test_missing_id_and_wrong_types_are_listed_and_nothing_stored(app, db) -> None:
    bad = [
        lead("ok"),
        {"email": "x@y.example"},
        lead("t", attributes="big", signals=[{"name": "demo_request", "at": "yesterday"}]),
    ]
    response = app.post_leads(bad)
    assert response.status_code == 400
    errors = {(e["index"], e["field"], e["message"]) for e in response.json()["errors"]}
    assert errors == {
        (1, "id", "required"),
        (2, "attributes", "expected an object"),
        (2, "signals[0].at", "expected an ISO 8601 time, like 2026-11-20T10:00:00Z"),
    }
    assert stored(db, Lead) == []


def test_too_many_leads_in_one_request(app) -> None:
    response = app.post_leads([lead(f"l{i}") for i in range(1001)])
    assert response.status_code == 400
    assert "at most 1000" in response.json()["errors"][0]["message"]


def test_same_lead_from_eight_threads_gives_exactly_one_dm(app, db, fake_slack) -> None:
    barrier = threading.Barrier(8)
    statuses = []

    def send() -> None:
        barrier.wait()
        statuses.append(app.post_leads(lead("race")).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    app.drain()
    assert statuses == [202] * 8
    assert len(stored(db, Handoff)) == 1
    assert len(fake_slack.calls_to("chat.postMessage")) == 1


def test_restart_between_handoff_and_send_delivers_once(app_factory, db, fake_slack) -> None:
    first = app_factory(db)
    assert first.post_leads(lead("crm-1")).status_code == 202
    first.server.stop()  # the process dies before the worker ran
    assert fake_slack.calls_to("chat.postMessage") == []
    second = app_factory(db)
    second.drain()
    second.drain()
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    [item] = stored(db, Outbox)
    assert item.status == "sent"


def test_429_with_retry_after_is_honoured(app, db, fake_slack) -> None:
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=1)
    app.post_leads(lead("crm-1"))
    app.drain()
    posts = fake_slack.calls_to("chat.postMessage")
    assert len(posts) == 2  # the 429, then the retry after Retry-After
    assert posts[1].at - posts[0].at >= 0.9
    [handoff] = stored(db, Handoff)
    assert handoff.ts is not None


def test_slack_outage_keeps_the_message_and_sends_it_later(app, db, fake_slack) -> None:
    app.post_leads(lead("crm-1"))
    fake_slack.set_outage(True)
    app.drain()
    [item] = stored(db, Outbox)
    assert (item.status, item.attempts) == ("pending", 1)
    assert "503" in item.last_error or "Slack" in item.last_error
    fake_slack.set_outage(False)
    with freeze_time(clock.now() + timedelta(minutes=5)):
        app.drain()
    [item] = stored(db, Outbox)
    assert item.status == "sent"
    assert len([c for c in fake_slack.calls_to("chat.postMessage")]) == 1


def test_owner_unknown_to_slack_falls_back_to_the_pool(app, db, fake_slack) -> None:
    app.post_leads(lead("crm-1", owner="gone@example.com"))
    app.drain()
    [post] = fake_slack.calls_to("chat.postMessage")
    assert post.args["channel"] == "U0REP1"
    [handoff] = stored(db, Handoff)
    assert handoff.owner_email == "rep1@example.com"
    rerouted = [a for a in stored(db, Audit) if a.action == "rerouted"]
    assert rerouted[0].detail["why"] == "gone@example.com not found in Slack; fell back to the pool"


def test_long_values_are_cut_not_refused(app, fake_slack) -> None:
    long = lead("crm-1", company="A" * 400, name="N" * 500, title="T" * 500, campaign="c" * 500)
    assert app.post_leads(long).status_code == 202
    app.drain()
    [post] = fake_slack.calls_to("chat.postMessage")
    blocks = post.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    assert len(blocks[0]["text"]["text"]) == 150 and blocks[0]["text"]["text"].endswith("…")
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
