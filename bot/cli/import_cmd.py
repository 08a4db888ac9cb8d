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
# Before a live import, a dry pass counts the leads it will hand off; past this size the
# count would cost as much as the import, so the command says so and starts.
PREVIEW_MAX_BYTES = 20 * 1024 * 1024


def _valid_leads(rows: Iterator[Row], invalid: list[Row]) -> Iterator[LeadIn]:
    for row in rows:
        if row.lead is None:
            invalid.append(row)
        else:
            yield row.lead


def import_file(
    intake: Intake, path: Path, *, dry_run: bool, owners: set[str] | None = None
) -> tuple[Counter[str], list[Row]]:
    """Import a file; returns the count per outcome and the invalid rows (and adds the
    owner of every lead handed off to `owners`, when given).

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
            if owners is not None and outcome.owner:
                owners.add(outcome.owner)
    return counts, invalid


def _preview(intake: Intake, path: Path) -> None:
    """Say how many leads a live import hands off, to how many reps, before it starts."""
    if path.stat().st_size > PREVIEW_MAX_BYTES:
        click.echo(
            f"{path}: not counting the handoffs first (over {PREVIEW_MAX_BYTES // 2**20} MiB); "
            "newly qualified leads go to sales (--dry-run counts them, --history sends none)"
        )
        return
    owners: set[str] = set()
    counts, _ = import_file(intake, path, dry_run=True, owners=owners)
    click.echo(
        f"{path}: will hand off {counts.get('handed_off', 0)} lead(s) to {len(owners)} rep(s) "
        "(--history to import without handing off)"
    )


@main.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Judge and report, store nothing.")
@click.option(
    "--history",
    is_flag=True,
    help="A backfill: store and judge (as of each lead's created_at and signals), "
    "hand nothing off.",
)
@pass_env
def import_command(env: Env, file: Path, dry_run: bool, history: bool) -> None:
    """Import leads from a CSV or JSONL FILE (upsert by id, judged on the way in)."""
    if file.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        fail(f"{file}: expected a .csv or .jsonl file")
    intake = Intake(env.db, env.definition, actor="import", history=history)
    # Park what is alive now (modules, engine, definition) outside the collector: an
    # import churns millions of short-lived objects, and every full collection would
    # otherwise walk all of those long-lived ones again (10-15% of an import). A batch
    # keeps thousands of objects alive for a while, so the default young-generation
    # threshold (700) also collected every few rows: 7% more, for no memory back.
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *threshold[1:])
    try:
        if not dry_run and not history:
            _preview(intake, file)
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
    ("held", "qualified, held (all reps at cap)"),
    ("no_owner", "qualified, no rep available"),
    ("missing_context", "qualified, missing context"),
    ("history", "qualified, kept as history"),
    ("cooling_down", "qualified again, recycle cooldown"),
    ("max_cycles", "qualified again, max_cycles reached"),
    ("nurture", "nurture (not qualified)"),
    ("updated", "updated, already with sales"),
    ("unchanged", "unchanged"),
)
