"""`handoff import FILE`: stream a CSV or JSONL file through intake."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click

from bot import clock
from bot.cli.base import BAD_INPUT, Env, fail, main, pass_env
from bot.intake import Intake, LeadOutcome
from bot.leads import FileProblem, LeadIn, Row, open_rows

BATCH = 1000
GC_YOUNG_THRESHOLD = 50_000


def _valid_leads(rows: Iterator[Row], invalid: list[Row]) -> Iterator[LeadIn]:
    for row in rows:
        if row.lead is None:
            invalid.append(row)
        else:
            yield row.lead


def import_file(intake: Intake, path: Path, *, dry_run: bool) -> tuple[Counter[str], list[Row]]:
    """Import a file; returns the count per outcome and the invalid rows.

    Raises FileProblem (before importing anything) when the file's header is wrong.
    """
    invalid: list[Row] = []
    counts: Counter[str] = Counter()
    now = clock.now()
    outcome: LeadOutcome
    with open_rows(path) as rows:
        for outcome in intake.stream(
            _valid_leads(rows, invalid), now=now, batch_size=BATCH, dry_run=dry_run
        ):
            counts[outcome.outcome] += 1
    return counts, invalid


@main.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Judge and report, store nothing.")
@pass_env
def import_command(env: Env, file: Path, dry_run: bool) -> None:
    """Import leads from a CSV or JSONL FILE (upsert by id, judged on the way in)."""
    if file.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        fail(f"{file}: expected a .csv or .jsonl file")
    intake = Intake(env.db, env.definition, actor="import")
    # Park what is alive now (modules, engine, definition) outside the collector: an
    # import churns millions of short-lived objects, and every full collection would
    # otherwise walk all of those long-lived ones again (10-15% of an import). A batch
    # keeps thousands of objects alive for a while, so the default young-generation
    # threshold (700) also collected every few rows: 7% more, for no memory back.
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *threshold[1:])
    try:
        counts, invalid = import_file(intake, file, dry_run=dry_run)
    except FileProblem as exc:
        fail(f"{file}: {exc}; nothing imported")
    except UnicodeDecodeError as exc:
        hint = ' (from Excel, save as "CSV UTF-8")' if file.suffix.lower() == ".csv" else ""
        fail(f"{file}: cannot read: not UTF-8 text: {exc.reason}{hint}")
    except OSError as exc:
        fail(f"{file}: cannot read: {exc.strerror or exc}")
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
    total = sum(counts.values())
    verb = "would import" if dry_run else "imported"
    summary = f"{file}: {verb} {total} lead(s), {len(invalid)} invalid row(s)"
    if invalid:
        summary += f" {'would be' if dry_run else 'were'} left out, listed below"
    click.echo(summary)
    for outcome, label in OUTCOME_LABELS:
        if counts.get(outcome):
            click.echo(f"  {label:<34}{counts[outcome]:>8}")
    for row in invalid:
        click.echo(f"  line {row.line}: {row.error}", err=True)
    if invalid:  # the valid rows are in; the status tells a script that some were not
        raise SystemExit(BAD_INPUT)


OUTCOME_LABELS = (
    ("handed_off", "qualified, handed off to sales"),
    ("no_owner", "qualified, no rep available"),
    ("missing_context", "qualified, missing context"),
    ("nurture", "nurture (not qualified)"),
    ("updated", "updated, already with sales"),
    ("unchanged", "unchanged"),
)
