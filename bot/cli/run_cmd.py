"""`handoff run`: the app (HTTP server, Slack connection, scheduler)."""

from __future__ import annotations

import click

from bot.cli.base import Env, fail, main, pass_env
from bot.definition import DefinitionError

CANNOT_START = "Handoff cannot start:"


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@pass_env
def run(env: Env, host: str) -> None:
    """Run Handoff: serve Slack and intake on PORT, send the outbox, tick the SLA clock."""
    from bot.app import build_services
    from bot.readiness import SlackWatch, check_slack
    from bot.server import HandoffServer

    # Every problem with the environment at once: malformed values and missing ones.
    problems = env.settings_problems + env.read_settings.problems_for_run()
    if problems:
        fail(CANNOT_START + "\n" + "\n".join(f"  {p}" for p in dict.fromkeys(problems)))
    try:
        services = build_services(env.settings, env.file_definition, env.db, env.sources)
    except DefinitionError as exc:  # the active version stored in the database
        fail(f"{CANNOT_START} the active definition version cannot be read:\n{exc}")
    # A token Slack refuses (or one without the scopes the app needs) stops here, in one
    # line; Slack being unreachable does not: the server starts, not ready, and retries.
    watch = SlackWatch(lambda: check_slack(services.slack))
    answer = watch.check_now()
    if answer.fatal:
        fail(f"{CANNOT_START} {answer.problem}")
    try:
        server = HandoffServer(services, host=host, port=env.settings.port, slack_watch=watch)
    except OSError as exc:
        fail(
            f"{CANNOT_START} PORT: cannot listen on {host}:{env.settings.port}: "
            f"{exc.strerror or exc}"
        )
    server.run()
