"""`handoff digest` and `handoff report`: the feedback loop on the command line."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

import click

from bot import clock
from bot.cli.base import Env, fail, main, pass_env
from bot.digest import build_digest, digest_text, window_for
from bot.figures import GROUPS
from bot.report import build_report, cooling_down_lines, render


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the digest instead of posting it.")
@click.option("--week", metavar="2026-W47", help="An ISO week instead of the last 7 days.")
@pass_env
def digest(env: Env, dry_run: bool, week: str | None) -> None:
    """The weekly alignment digest: print it, or post it to the digest channel now."""
    try:
        window = window_for(env.definition, clock.now(), week)
    except ValueError as exc:
        fail(f"--week: {exc}")
    built = build_digest(env.db, env.definition, window)
    if dry_run:
        click.echo(digest_text(built))
        return
    from bot.digest import digest_message
    from bot.settings import secret
    from bot.slack import make_client

    token = secret(env.settings.slack_bot_token)
    if not token:
        fail("SLACK_BOT_TOKEN: required to post the digest (or use --dry-run)")
    client = make_client(token, env.settings.slack_api_url)
    channel = env.definition.digest.channel
    text, blocks = digest_message(built)
    client.chat_postMessage(channel=channel, text=text, blocks=blocks)
    click.echo(f"Posted the digest for {window.label} to {channel}.")


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name}: expected a date like 2026-11-01, got '{value}'")


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


@main.command()
@click.option(
    "--from", "start", metavar="DATE", help="First day (default: 30 days before the end)."
)
@click.option("--to", "end", metavar="DATE", help="Last day, included (default: up to now).")
@click.option("--by", type=click.Choice(list(GROUPS)), help="Group the numbers.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_env
def report(env: Env, start: str | None, end: str | None, by: str | None, fmt: str) -> None:
    """Handed off, accepted, rejected, open, nurture, missing context and SLA compliance.

    Days run from midnight to midnight in the definition's time zone and --to's day is
    included, so `--from 2026-11-16 --to 2026-11-22` covers what `digest --week 2026-W47`
    does, with the same figures (each is defined once, in bot/figures.py).
    """
    zone = env.definition.timezone
    first, last = _day(start, "--from"), _day(end, "--to")
    try:
        until = _midnight(last + timedelta(days=1), zone) if last else clock.now()
        since = _midnight(first, zone) if first else until - timedelta(days=30)
    except OverflowError:
        fail(f"--from/--to: {first or last} is out of range")
    if since >= until:
        fail(f"--from: {first} is after {f'--to {last}' if last else 'today'}")
    click.echo(render(build_report(env.db, since, until, by), fmt))
    if fmt == "table":
        for line in cooling_down_lines(env.db, clock.now()):
            click.echo(line)
