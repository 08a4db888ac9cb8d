"""Every bad input gets a clear answer: a 4xx over HTTP, one line and exit status 2
from the CLI; never a 500 or a traceback, and nothing valid is lost on the way."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select, text

from bot.blocks.card import ACCEPT
from bot.blocks.home import HOME_PAGE
from bot.cli import main
from store.db import Database
from store.models import Handoff, Heartbeat, Lead
from tests.conftest import DATA, lead
from tests.slackreq import block_actions, sign
from tests.test_decisions import wait_until
from tests.test_home import open_home

PG_NUL = "\x00"


def stored(db: Database, model: type) -> list[Any]:
    with db.session() as session:
        return list(session.scalars(select(model)))


def errors_of(response) -> set[tuple[Any, str, str]]:
    return {(e["index"], e["field"], e["message"]) for e in response.json()["errors"]}


# --- 3: the HubSpot write-back path cannot be steered -----------------------------------


def test_an_email_that_would_steer_a_url_is_refused(app, db) -> None:
    steering = "a/../../../../admin/evil?x=1#@evil.example"
    response = app.post_leads([lead("ok"), lead("evil", email=steering)])
    assert response.status_code == 400
    assert errors_of(response) == {(1, "email", "expected an email address like ana@acme.com")}
    assert stored(db, Lead) == []


@pytest.mark.parametrize(
    "address",
    ["a..b@acme.example", "a@acme", "a@-acme.example", "a b@acme.example", "a@acme..example"],
)
def test_malformed_addresses_are_refused(app, address) -> None:
    response = app.post_leads(lead("x", owner=address))
    assert response.status_code == 400
    assert errors_of(response) == {(None, "owner", "expected an email address like ana@acme.com")}


def test_odd_but_valid_addresses_are_accepted(app, db) -> None:
    odd = ["O'Brien+x@Sub.Example.co", "josé@café.example", "a.b-c_d@xn--caf-dma.example"]
    response = app.post_leads([lead(f"l{i}", email=email) for i, email in enumerate(odd)])
    assert response.status_code == 202
    assert sorted(row.email for row in stored(db, Lead)) == [
        "a.b-c_d@xn--caf-dma.example",
        "josé@café.example",
        "o'brien+x@sub.example.co",
    ]


class FakeHubSpot:
    """A CRM API on a loopback port that records each request line as it arrived."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        recorded = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorded.append((self.command, self.path))
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    fake = FakeHubSpot()
    yield fake
    fake.close()


def test_hubspot_patch_goes_to_the_contact_whatever_its_address_holds(
    app_factory, db, fake_slack, hubspot
) -> None:
    app = app_factory(db, hubspot_token="pat-test", hubspot_api_url=hubspot.url)
    address = "o'brien/x?y=1#z%2e@acme.example"  # RFC 5322 atext: all allowed
    assert app.post_leads(lead("crm-1", email=address)).status_code == 202
    app.drain()
    [handoff] = stored(db, Handoff)
    app.slack(block_actions(user_id="U0REP1", action_id=ACCEPT, value=str(handoff.id)))
    wait_until(lambda: stored(db, Handoff)[0].status == "accepted")
    app.drain()
    wait_until(lambda: hubspot.requests, timeout=10)
    assert hubspot.requests == [
        (
            "PATCH",
            "/crm/v3/objects/contacts/o%27brien%2Fx%3Fy%3D1%23z%252e%40acme.example"
            "?idProperty=email",
        )
    ]


# --- 8: values a database cannot store are refused per lead, on every database ----------


def unstorable_batch() -> bytes:
    """A batch whose leads 1..6 each hold one value PostgreSQL cannot store; NaN and
    Infinity as Python's json module writes (and reads) them."""
    leads = [
        lead("ok"),
        lead("nul-company", company=f"Ac{PG_NUL}me"),
        lead("nan", attributes={"employees": float("nan"), "country": "AU"}),
        lead("inf", attributes={"employees": 250, "revenue": {"2025": float("-inf")}}),
        lead("nul-key", attributes={f"coun{PG_NUL}try": "AU"}),
        lead("nul-value", attributes={"tags": ["a", f"b{PG_NUL}"]}),
        lead("nul-signal", signals=[{"name": f"demo{PG_NUL}", "at": "2026-11-20T10:00:00Z"}]),
    ]
    return json.dumps(leads).encode()


EXPECTED_UNSTORABLE = {
    (1, "company", "must not contain a NUL character"),
    (2, "attributes.employees", "must be a finite number, not nan"),
    (3, "attributes.revenue", "must be a finite number, not -inf"),
    (4, "attributes", "the name 'coun\\x00try' must not contain a NUL character"),
    (5, "attributes.tags", "must not contain a NUL character"),
    (6, "signals[0].name", "must not contain a NUL character"),
}


def test_values_postgres_cannot_store_are_refused_on_sqlite_too(app, db) -> None:
    body = unstorable_batch()
    assert b"NaN" in body and b"-Infinity" in body
    response = app.post_leads(body)
    assert response.status_code == 400
    assert errors_of(response) == EXPECTED_UNSTORABLE
    assert stored(db, Lead) == []


def test_values_postgres_cannot_store_are_refused_not_a_500(app_factory, pg_url) -> None:
    pg = Database(pg_url)
    pg.create_schema()
    try:
        app = app_factory(pg)
        response = app.post_leads(unstorable_batch())
        assert response.status_code == 400
        assert errors_of(response) == EXPECTED_UNSTORABLE
        assert stored(pg, Lead) == []
        assert app.post_leads(lead("ok")).status_code == 202  # the good lead, alone, goes in
        assert [row.external_id for row in stored(pg, Lead)] == ["ok"]
    finally:
        pg.dispose()


def test_a_number_too_large_for_a_float_and_a_lone_surrogate_are_refused(app, db) -> None:
    body = (
        b'[{"id": "big", "attributes": {"revenue": 1e999}},'
        b' {"id": "half", "attributes": {"note": "\\ud800"}},'
        b' {"id": "deep", "attributes": {"tree": ' + b"[" * 50 + b"]" * 50 + b"}}]"
    )
    response = app.post_leads(body)
    assert response.status_code == 400
    assert errors_of(response) == {
        (0, "attributes.revenue", "must be a finite number, not inf"),
        (1, "attributes.note", "must not contain a lone surrogate (not Unicode text)"),
        (2, "attributes.tree", "nested too deeply (at most 10 levels)"),
    }
    assert stored(db, Lead) == []


# --- 9: malformed requests are 4xx ------------------------------------------------------


def test_a_400_digit_intake_timestamp_is_refused_before_authentication(app, db) -> None:
    body = json.dumps(lead()).encode()
    response = app.http.post(
        "/leads",
        content=body,
        headers={"X-Handoff-Timestamp": "9" * 400, "X-Handoff-Signature": "v0=00"},
    )
    assert (response.status_code, response.json()) == (
        401,
        {"error": "X-Handoff-Timestamp is not unix seconds"},
    )
    assert stored(db, Lead) == []


def test_deeply_nested_json_is_400(app) -> None:
    response = app.post_leads(b"[" * 100_000 + b"]" * 100_000)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"] == "body is not valid JSON: nested too deeply"


def test_an_integer_of_5000_digits_is_400(app, db) -> None:
    body = b'{"id": "x", "attributes": {"employees": ' + b"7" * 5000 + b"}}"
    response = app.post_leads(body)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"] == "body is not valid JSON: a number has more than 4300 digits"
    assert stored(db, Lead) == []


def test_a_400_digit_slack_timestamp_is_401_and_nothing_is_logged_of_the_body(app, caplog) -> None:
    body = block_actions(user_id="U0REP1", action_id=ACCEPT, value="SECRET-BODY-MARKER")
    caplog.set_level(logging.DEBUG)
    for timestamp in ("9" * 400, "", "12e3"):
        headers = sign(body, "test-signing-secret")
        headers["X-Slack-Request-Timestamp"] = timestamp
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        response = app.http.post("/slack/events", content=body.encode(), headers=headers)
        assert response.status_code == 401, timestamp
    assert "SECRET-BODY-MARKER" not in caplog.text
    assert "Traceback" not in caplog.text


def test_a_refused_slack_request_body_stays_out_of_the_logs(app, caplog) -> None:
    body = block_actions(user_id="U0REP1", action_id=ACCEPT, value="SECRET-BODY-MARKER")
    caplog.set_level(logging.INFO)
    assert app.slack(body, secret="not-the-signing-secret").status_code == 401
    assert "SECRET-BODY-MARKER" not in caplog.text


def test_a_home_page_value_that_is_not_a_number_shows_the_first_page(app, fake_slack) -> None:
    app.post_leads([lead(f"crm-{i}", owner="rep1@example.com") for i in range(40)])
    app.drain()
    open_home(app, fake_slack, "U0REP1")
    published = 1
    for value, shown in (("two", "25 left"), ("9" * 5000, "25 left"), ("1", "10 left")):
        response = app.slack(block_actions(user_id="U0REP1", action_id=HOME_PAGE, value=value))
        assert response.status_code == 200
        published += 1
        view = fake_slack.wait_for("views.publish", count=published)[-1].args["view"]
        view = json.loads(view) if isinstance(view, str) else view
        assert f"Show more ({shown})" in json.dumps(view), value


# --- 9 and 10: import files --------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("HANDOFF_DEFINITION", str(DATA / "definition.yml"))
    return url


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def lead_ids(url: str) -> list[str]:
    db = Database(url)
    try:
        return sorted(row.external_id for row in stored(db, Lead))
    finally:
        db.dispose()


def test_a_csv_cell_over_128_kib_fails_that_row_only(cli_env, tmp_path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(f'id,company,name\na1,Acme,Ana\na2,Big,"{"x" * 200_000}"\na3,Co,Cy\n')
    result = invoke("import", str(path))
    assert result.exit_code == 2
    assert "imported 2 lead(s), 1 invalid row(s)" in result.stdout
    assert "line 3: not valid CSV: field larger than field limit (131072)" in result.stderr
    assert lead_ids(cli_env) == ["a1", "a3"]


def test_a_nested_or_oversized_jsonl_line_fails_that_line_only(cli_env, tmp_path) -> None:
    path = tmp_path / "leads.jsonl"
    lines = [
        json.dumps(lead("j1")),
        "[" * 100_000 + "]" * 100_000,
        '{"id": "n", "attributes": {"x": ' + "1" * 5000 + "}}",
        json.dumps(lead("j2", attributes={"employees": float("inf")})),
        json.dumps(lead("j3", name=f"A{PG_NUL}")),
        json.dumps(lead("j4")),
    ]
    path.write_text("\n".join(lines) + "\n")
    result = invoke("import", str(path))
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert "imported 2 lead(s), 4 invalid row(s)" in result.stdout
    for expected in (
        "line 2: not valid JSON: nested too deeply",
        "line 3: not valid JSON: a number has more than 4300 digits",
        "line 4: attributes.employees: must be a finite number, not inf",
        "line 5: name: must not contain a NUL character",
    ):
        assert expected in result.stderr
    assert lead_ids(cli_env) == ["j1", "j4"]


def signals_cell() -> str:
    return ";".join(s["name"] + "@" + s["at"] for s in lead()["signals"])


def test_an_excel_csv_with_a_byte_order_mark_imports(cli_env, tmp_path) -> None:
    path = tmp_path / "excel.csv"
    rows = [
        "id,email,company,attributes.employees,attributes.country,signals",
        f"x1,ana@acme.example,Acme,250,AU,{signals_cell()}",
        "x2,bo@acme.example,Acme,250,AU,",
    ]
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("utf-8-sig"))
    result = invoke("import", str(path))
    assert result.exit_code == 0, result.stderr
    assert "imported 2 lead(s), 0 invalid row(s)" in result.stdout
    assert "qualified, handed off to sales           1" in result.stdout
    assert lead_ids(cli_env) == ["x1", "x2"]


def test_a_wrong_header_is_reported_once_and_nothing_is_imported(cli_env, tmp_path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "id,e-mail,company,Employees\n" + "".join(f"r{i},a@b.example,Co,5\n" for i in range(500))
    )
    result = invoke("import", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{path}: unknown column(s) in the header: 'e-mail', 'Employees'; ")
    assert "attributes.<name>" in line and line.endswith("nothing imported")
    assert lead_ids(cli_env) == []


def test_a_header_without_an_id_column_is_a_header_problem(cli_env, tmp_path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("email,company\na@b.example,Co\n")
    result = invoke("import", str(path))
    assert result.exit_code == 2
    assert "the header has no id column" in result.stderr


def test_invalid_rows_exit_2_after_the_valid_ones_are_in(cli_env, tmp_path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text("id,company,email\na1,Acme,a@acme.example\n,NoId,x@acme.example\na3,Co,\n")
    result = invoke("import", str(path))
    assert result.exit_code == 2
    assert "imported 2 lead(s), 1 invalid row(s) were left out, listed below" in result.stdout
    assert "line 3: id: required" in result.stderr
    assert lead_ids(cli_env) == ["a1", "a3"]


def test_dry_run_counts_a_repeated_id_as_a_real_run_does(cli_env, tmp_path) -> None:
    path = tmp_path / "leads.csv"
    row = f"d1,ana@acme.example,Acme,250,AU,{signals_cell()}\n"
    path.write_text(
        "id,email,company,attributes.employees,attributes.country,signals\n" + row + row
    )
    dry = invoke("import", "--dry-run", str(path))
    assert lead_ids(cli_env) == []
    real = invoke("import", str(path))
    assert (dry.exit_code, real.exit_code) == (0, 0)
    assert "qualified, handed off to sales           1" in real.stdout
    assert "unchanged                                1" in real.stdout
    # A live import first says what it will hand off (its own dry pass), then imports.
    preview, summary, *counts = real.stdout.splitlines()
    assert preview.endswith(
        "will hand off 1 lead(s) to 1 rep(s) (--history to import without handing off)"
    )
    assert dry.stdout.splitlines()[1:] == counts


# --- 9: DATABASE_URL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nonsense", "DATABASE_URL: not a database URL; expected one like sqlite:///"),
        ("mysql://x", "DATABASE_URL: mysql is not supported; expected a URL like sqlite:///"),
        ("postgresql://u@h:port/db", "DATABASE_URL: not a database URL"),
        (
            "postgresql+pg8000://u@h/db",
            "DATABASE_URL: the pg8000 driver is not supported; use postgresql://... "
            "(psycopg: pip install -e '.[postgres]')",
        ),
    ],
)
def test_a_bad_database_url_is_one_line_for_every_command(
    cli_env, tmp_path, monkeypatch, url, expected
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    csv_path = tmp_path / "leads.csv"
    csv_path.write_text("id\na1\n")
    for args in (("import", str(csv_path)), ("report",), ("lead", "x"), ("digest", "--dry-run")):
        result = invoke(*args)
        assert result.exit_code == 2, args
        assert result.stderr.splitlines() == [result.stderr.strip()], args
        assert result.stderr.startswith(expected), args


def test_run_names_a_bad_database_url_with_the_other_settings(cli_env, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    result = invoke("run")
    assert result.exit_code == 2
    assert "DATABASE_URL: mysql is not supported" in result.stderr
    assert "SLACK_BOT_TOKEN: required" in result.stderr


def test_postgresql_without_the_driver_says_how_to_install_it(cli_env, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://handoff@127.0.0.1/handoff")
    # What `import psycopg` does where the extra is not installed.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    result = invoke("report")
    assert result.exit_code == 2
    assert result.stderr == (
        "DATABASE_URL: PostgreSQL needs the psycopg driver, which is not installed: "
        "pip install -e '.[postgres]'\n"
    )


# --- 11: /healthz checks that the database takes writes ----------------------------------


def refuse_writes(db: Database, statement: str) -> None:
    """Every new SQLite connection runs `statement` first (a test-only connect hook)."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()

    event.listen(db.engine, "connect", on_connect)
    db.engine.dispose()


def poll_health(app, status: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = app.http.get("/healthz")
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status
            return response.json()
        time.sleep(0.05)


def test_healthz_is_503_while_sqlite_refuses_writes(app_factory, db_url) -> None:
    db = Database(db_url, write_check_seconds=0.2)
    db.create_schema()
    try:
        app = app_factory(db)
        assert poll_health(app, 200) == {"status": "ok"}
        refuse_writes(db, "PRAGMA query_only = ON")
        assert app.http.get("/healthz").status_code in (200, 503)  # the last answer, or new
        assert poll_health(app, 503) == {"status": "database refuses writes"}
    finally:
        db.dispose()


def test_healthz_is_503_while_postgres_is_read_only(app_factory, pg_url) -> None:
    pg = Database(pg_url, write_check_seconds=0.2)
    pg.create_schema()
    try:
        app = app_factory(pg)
        assert poll_health(app, 200) == {"status": "ok"}
        with pg.engine.connect() as conn:  # the server's own switch, for new sessions
            name = pg.engine.url.database
            conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
            conn.commit()
        pg.engine.dispose()
        assert poll_health(app, 503) == {"status": "database refuses writes"}
    finally:
        pg.dispose()


def test_a_storm_of_health_checks_costs_one_write(app, db) -> None:
    def beat() -> int:
        with db.session() as session:
            return session.get(Heartbeat, 1).beat

    assert app.http.get("/healthz").status_code == 200  # the first check writes the row
    before = beat()
    results: list[int] = []

    def check() -> None:
        for _ in range(10):
            results.append(app.http.get("/healthz").status_code)

    threads = [threading.Thread(target=check) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 80
    # One heartbeat write per WRITE_CHECK_SECONDS (5 s), however many checks came in.
    assert beat() - before <= 1 + int(elapsed / 5)


def test_healthz_still_says_when_the_database_does_not_answer(app, db) -> None:
    refuse_writes(db, "ATTACH DATABASE '/nonexistent/dir/x.db' AS broken")
    assert poll_health(app, 503)["status"] == "database unavailable"


def test_a_lead_stored_under_the_older_looser_check_still_backtests(cli_env, tmp_path) -> None:
    path = tmp_path / "leads.jsonl"
    path.write_text(json.dumps(lead("old")) + "\n")
    assert invoke("import", str(path)).exit_code == 0
    db = Database(cli_env)
    with db.transaction() as session:  # what an older Handoff accepted (any "x@y.z")
        session.execute(text("UPDATE lead SET email = 'bob..x@localhost.c'"))
    db.dispose()
    result = invoke("backtest", str(DATA / "definition.yml"))
    assert result.exit_code == 0, result.stderr
    assert "on 1 stored leads" in result.stdout


def test_a_card_id_too_long_for_the_database_is_told_not_logged(
    app, db, fake_slack, caplog
) -> None:
    # Slack echoes the value a button was given; this one (signed) was not ours.
    app.slack(block_actions(user_id="U0REP1", action_id=ACCEPT, value="9" * 30))
    [told] = fake_slack.wait_for("chat.postEphemeral")
    assert told.args["text"] == "That card does not belong to a handoff I know."
    assert "Traceback" not in caplog.text
