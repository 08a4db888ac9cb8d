"""`handoff demo`: the first thing a newcomer sees, with no Slack and no network.

Imports the bundled sample leads into a throwaway SQLite database, judges them
against the bundled example definition and shows what would happen to each.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import click

from bot import clock
from bot.cli.base import Env, main, pass_env
from bot.explain import explain_verdict
from bot.intake import Intake, LeadOutcome
from bot.judge import Verdict, judge
from bot.leads import LeadIn, parse_lead
from store.db import Database

_VERDICT_TEXT = {
    "handed_off": "qualified → sales",
    "missing_context": "qualified, missing context",
    "nurture": "nurture",
    "no_owner": "qualified, no rep",
    "held": "qualified, held for a manager",
}


def sample_leads(now: datetime) -> list[LeadIn]:
    """The bundled sample, its signal dates moved so the newest is an hour old
    (the demo shows the same story whenever it runs)."""
    text = resources.files("bot").joinpath("data/sample_leads.jsonl").read_text("utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    stamps = [datetime.fromisoformat(s["at"]) for r in records for s in r.get("signals", [])]
    shift = (now - timedelta(hours=1)) - max(stamps) if stamps else timedelta(0)
    for record in records:
        for signal in record.get("signals", []):
            signal["at"] = (datetime.fromisoformat(signal["at"]) + shift).isoformat()
    return [parse_lead(record, index=i) for i, record in enumerate(records)]


def _fit_cell(verdict: Verdict) -> str:
    failed = [c.id for c in verdict.failed]
    return "✓" if not failed else "✗ " + ",".join(failed)


def _table(rows: list[tuple[LeadIn, Verdict, LeadOutcome]]) -> str:
    header = f"{'lead':<10} {'company':<24} {'fit':<22} {'intent':>6}  {'verdict':<27} owner"
    lines = [header, "-" * len(header)]
    for lead, verdict, outcome in rows:
        label = _VERDICT_TEXT.get(outcome.outcome, outcome.outcome)
        if verdict.hot and outcome.outcome == "handed_off":
            label += " (hot)"
        if outcome.outcome == "missing_context":
            label += f": {', '.join(outcome.missing)}"
        lines.append(
            f"{lead.id:<10} {(lead.company or '—')[:24]:<24} {_fit_cell(verdict)[:22]:<22} "
            f"{verdict.score:>6}  {label[:27]:<27} {outcome.owner or ''}"
        )
    return "\n".join(lines)


@main.command()
@pass_env
def demo(env: Env) -> None:
    """Judge ~30 sample leads against the example definition (no Slack needed)."""
    definition_path = resources.files("bot").joinpath("data/qualification.yml")
    with resources.as_file(definition_path) as path:
        definition = env.definition_at(str(path))
    now = clock.now()
    leads = sample_leads(now)
    with tempfile.TemporaryDirectory(prefix="handoff-demo-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'demo.db'}")
        db.create_schema()
        outcomes = Intake(db, definition, actor="demo").ingest(leads, now=now)
        db.dispose()
    verdicts = [judge(lead, definition, now) for lead in leads]
    rows = list(zip(leads, verdicts, outcomes, strict=True))
    handed = sum(o.outcome == "handed_off" for o in outcomes)
    click.echo(
        f"Handoff demo: {len(leads)} sample leads judged against the example "
        f"definition (version {definition.version}); {handed} handed off to sales.\n"
    )
    click.echo(_table(rows))
    best = max(
        (r for r in rows if r[2].outcome == "handed_off"), key=lambda r: r[1].score, default=None
    )
    if best is not None:
        lead, verdict, outcome = best
        click.echo(f"\nWhy {lead.company or lead.id} went to {outcome.owner}:\n")
        click.echo(
            explain_verdict(lead, verdict, definition, owner=outcome.owner, routed_by=outcome.why)
        )
    click.echo(
        "\nNext: `handoff definition show` for the rules in plain words; "
        "the README shows how to connect Slack."
    )
