"""`handoff definition check [FILE]` and `handoff definition show`."""

from __future__ import annotations

import click

from bot.cli.base import Env, main, pass_env
from bot.explain import describe_definition


@main.group()
def definition() -> None:
    """Check or explain the shared definition."""


@definition.command("check")
@click.argument("file", required=False)
@pass_env
def check(env: Env, file: str | None) -> None:
    """Validate FILE (default: HANDOFF_DEFINITION), and the CRM mapping (HANDOFF_SOURCES,
    default sources.yml) when there is one; list every problem."""
    path = file or env.settings.handoff_definition
    defn = env.definition_at(path)
    click.echo(
        f"{path}: OK (version {defn.version}, {len(defn.fit)} fit criteria, "
        f"{len(defn.intent.signals)} intent signals, {len(defn.reasons)} rejection reasons)"
    )
    env.definition = defn  # the mapping's signals are checked against this file's
    sources = env.sources
    if sources is not None:
        crms = [crm for crm in (sources.hubspot, sources.salesforce) if crm is not None]
        described = ", ".join(
            f"{crm.crm}: {crm.object}, {len(crm.properties)} properties, "
            + (f"polled every {crm.poll_every:g}s" if crm.poll_every else "push only")
            for crm in crms
        )
        click.echo(f"{sources.source}: OK ({described})")


@definition.command("show")
@pass_env
def show(env: Env) -> None:
    """Print the definition in plain words."""
    click.echo(describe_definition(env.definition))
