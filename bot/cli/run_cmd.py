"""`handoff run`: the app (HTTP server, Slack connection, scheduler)."""

from __future__ import annotations

import click

from bot.cli.base import Env, fail, main, pass_env


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@pass_env
def run(env: Env, host: str) -> None:
    """Run Handoff: serve Slack and intake on PORT, send the outbox, tick the SLA clock."""
    from bot.app import build_services
    from bot.server import HandoffServer

    problems = env.settings.problems_for_run()
    if problems:
        fail("Handoff cannot start:\n" + "\n".join(f"  {p}" for p in problems))
    services = build_services(env.settings, env.definition, env.db)
    try:
        server = HandoffServer(services, host=host, port=env.settings.port)
    except OSError as exc:
        fail(f"PORT: cannot listen on {host}:{env.settings.port}: {exc.strerror or exc}")
    server.run()
