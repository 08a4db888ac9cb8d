"""`handoff lead ID`: the whole history of one lead."""

from __future__ import annotations

import click

from bot.cli.base import Env, fail, main, pass_env
from bot.crm.links import crm_name, record_url
from bot.crm.sources import SourcesError, read_sources, with_salesforce_url
from bot.definition import Definition, DefinitionError, load_definition
from bot.history import lead_story, render_story
from bot.versions import stored
from store import governance as governance_store


@main.command("lead")
@click.argument("lead_id")
@pass_env
def lead(env: Env, lead_id: str) -> None:
    """Print everything that happened to one lead, in time order."""
    story = lead_story(env.db, lead_id, _labels(env))
    if story is None:
        fail(f"no lead with id '{lead_id}'")
    click.echo(render_story(*story))
    url = _record_url(env, lead_id)
    if url:
        click.echo(f"Open in {crm_name(lead_id)}: {url}")


def _record_url(env: Env, lead_id: str) -> str | None:
    """The lead's CRM record (bot/crm/links.py); the story is told without it when
    sources.yml cannot be read."""
    try:
        sources = read_sources(env.settings.handoff_sources)
    except SourcesError:
        return None
    return record_url(lead_id, with_salesforce_url(sources, env.settings.salesforce_url))


def _labels(env: Env) -> Definition | None:
    """The active version (else the file), for its labels; the story is told from the
    database without it. Reads only: a story never stores a version."""
    with env.db.session() as session:
        row = governance_store.active(session)
    try:
        if row is not None:
            return stored(row)
        return load_definition(env.settings.handoff_definition)
    except (DefinitionError, OSError):
        return None
