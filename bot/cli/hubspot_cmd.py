"""`handoff hubspot check [--fix]`: the private app's token and the properties it needs."""

from __future__ import annotations

import click
import httpx

from bot.cli.base import BAD_INPUT, Env, fail, main, pass_env
from bot.hubspot.api import HubSpotClient
from bot.hubspot.check import check_hubspot, wanted_properties
from bot.hubspot.options import OUTCOMES, OWNER, WriteBack
from bot.settings import secret


def mapped_properties(env: Env) -> list[str]:
    """The contact properties the HubSpot mapping reads (sources.yml's `hubspot:`)."""
    sources = env.sources
    return list(sources.hubspot.properties) if sources and sources.hubspot else []


@main.group()
def hubspot() -> None:
    """HubSpot: check the private app before connecting it."""


@hubspot.command()
@click.argument("properties", nargs=-1, metavar="[PROPERTY]...")
@click.option("--fix", is_flag=True, help="Create Handoff's own properties that are missing.")
@pass_env
def check(env: Env, properties: tuple[str, ...], fix: bool) -> None:
    """Check HUBSPOT_TOKEN, the mapped properties, the write-back properties and the
    values written to them, the portal the card links into, and any PROPERTY named
    here; one line per check, exit status 2 if anything is wrong."""
    settings = env.settings
    token = secret(settings.hubspot_token)
    if not token:
        fail("HUBSPOT_TOKEN: required; the private app's access token (pat-...)")
    sources = env.sources
    options = sources.hubspot.hubspot if sources and sources.hubspot else None
    config = options.write_back if options else WriteBack()
    status = config.status_property(settings.hubspot_status_property)
    writeback = {
        status: "write_back.status" if config.status else "HUBSPOT_STATUS_PROPERTY",
        settings.hubspot_reason_property: "HUBSPOT_REASON_PROPERTY",
        settings.hubspot_note_property: "HUBSPOT_NOTE_PROPERTY",
    }
    if config.owner:
        writeback[OWNER] = "write_back.owner"
    # With a hubspot: section, also the values written and the portal the card links into.
    values = {status: {outcome: config.value(status, outcome) for outcome in OUTCOMES}}
    wanted = wanted_properties(named=properties, mapped=mapped_properties(env), writeback=writeback)
    with httpx.Client(timeout=10.0) as http:
        client = HubSpotClient(http, settings.hubspot_api_url, token)
        checks = check_hubspot(
            client,
            wanted=wanted,
            fix=fix,
            values=values if options else None,
            portal_id=options.portal_id if options else None,
            link=options is not None,
        )
    for result in checks:
        click.echo(result.line())
    problems = sum(not result.ok for result in checks)
    if problems:
        click.echo(f"{problems} problem(s) with HubSpot", err=True)
        raise SystemExit(BAD_INPUT)
