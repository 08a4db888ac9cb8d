"""`handoff salesforce check`: the connected app's credentials and the fields it needs."""

from __future__ import annotations

import click
import httpx

from bot.cli.base import BAD_INPUT, Env, fail, main, pass_env
from bot.crm.sources import DEFAULT_OBJECT, DEFAULT_WRITE_BACK
from bot.salesforce.api import SalesforceClient
from bot.salesforce.check import check_salesforce
from bot.settings import secret


@main.group()
def salesforce() -> None:
    """Salesforce: check the connected app before connecting it."""


@salesforce.command()
@pass_env
def check(env: Env) -> None:
    """Check SALESFORCE_URL and the client credentials (a token), the fields sources.yml
    maps and the write-back fields; one line per check, exit status 2 if anything is
    wrong."""
    settings = env.settings
    problems = settings.salesforce_problems()
    if problems or not settings.salesforce_configured:
        fail(
            "\n".join(problems)
            or "SALESFORCE_URL, SALESFORCE_CLIENT_ID, SALESFORCE_CLIENT_SECRET: required; "
            "the org's My Domain URL and the connected app's consumer key and secret"
        )
    sources = env.sources
    source = sources.salesforce if sources else None
    if source is None:
        click.echo("no salesforce: section in sources.yml: checking the write-back defaults")
    sobject = source.object if source else DEFAULT_OBJECT["salesforce"]
    mapped = list(source.properties) if source else []
    write_back = source.write_back if source else DEFAULT_WRITE_BACK
    with httpx.Client(timeout=10.0) as http:
        client = SalesforceClient(
            http,
            (settings.salesforce_url or "").strip(),
            (settings.salesforce_client_id or "").strip(),
            secret(settings.salesforce_client_secret),
        )
        checks = check_salesforce(client, sobject, mapped=mapped, write_back=write_back)
    for result in checks:
        click.echo(result.line())
    failed = sum(not result.ok for result in checks)
    if failed:
        click.echo(f"{failed} problem(s) with Salesforce", err=True)
        raise SystemExit(BAD_INPUT)
