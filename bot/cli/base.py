"""The `handoff` command group and what every command shares.

Every command reads the same environment as `handoff run`. Bad input exits
with status 2 and a message on stderr, never a traceback.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, NoReturn

import click

from bot import logs
from bot.crm.sources import Sources, SourcesError, read_sources, sources_path
from bot.definition import Definition, DefinitionError, load_definition
from bot.settings import Settings, read_settings, secret
from bot.versions import ActiveDefinition, establish
from store.db import Database, SchemaError

if TYPE_CHECKING:
    from bot.services import Services

BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    raise SystemExit(BAD_INPUT)


class Env:
    """Lazily built settings, definition and database for one command."""

    def __init__(self) -> None:
        # Malformed variables are reported when a command first needs the settings
        # (`run` lists them with its other problems); logging starts with what is valid.
        self.read_settings, self.settings_problems = read_settings()

    @cached_property
    def settings(self) -> Settings:
        if self.settings_problems:
            fail("\n".join(self.settings_problems))
        return self.read_settings

    def definition_at(self, path: str) -> Definition:
        try:
            return load_definition(path)
        except DefinitionError as exc:
            fail(f"{path}: the definition has {len(exc.problems)} problem(s):\n{exc}")
        except OSError as exc:
            fail(f"{path}: cannot read the definition: {exc.strerror or exc}")

    @cached_property
    def file_definition(self) -> Definition:
        """HANDOFF_DEFINITION as it is on disk (maybe not yet approved)."""
        return self.definition_at(self.settings.handoff_definition)

    @cached_property
    def active(self) -> ActiveDefinition:
        """The database's active version (the file, on an empty database)."""
        try:
            return establish(self.db, self.file_definition, report=False)
        except DefinitionError as exc:
            fail(f"the stored definition cannot be read:\n{exc}")

    @cached_property
    def definition(self) -> Definition:
        """What Handoff judges with: the active version."""
        return self.active.current

    @cached_property
    def services(self) -> Services:
        """The app's services, for commands that talk to Slack (propose, activate)."""
        from bot.app import build_services

        if not secret(self.settings.slack_bot_token):
            fail("SLACK_BOT_TOKEN: required to reach the definition's owners in Slack")
        return build_services(self.settings, self.file_definition, self.db, active=self.active)

    @cached_property
    def sources(self) -> Sources | None:
        """sources.yml (None: no file, no CRM connector), checked against the definition."""
        signal_ids = frozenset(signal.id for signal in self.definition.intent.signals)
        try:
            return read_sources(self.settings.handoff_sources, signal_ids=signal_ids)
        except SourcesError as exc:
            where = sources_path(self.settings.handoff_sources)[0]
            fail(f"{where}: the CRM mapping has {len(exc.problems)} problem(s):\n{exc}")

    @cached_property
    def db(self) -> Database:
        problem = self.settings.database_problem()
        if problem:
            fail(problem)
        database = Database(self.settings.database_url)
        try:
            database.create_schema()
        except SchemaError as exc:
            fail(f"DATABASE_URL: {exc}")
        except Exception as exc:  # noqa: BLE001 - any connection failure is a bad setting here
            # The driver's own first line, not SQLAlchemy's wrapping of it (several lines).
            reason = (str(getattr(exc, "orig", None) or exc).strip() or repr(exc)).splitlines()[0]
            fail(f"DATABASE_URL: cannot open the database: {reason}")
        return database

    def close(self) -> None:
        """Release the database's connections, if this command opened it."""
        database = self.__dict__.get("db")
        if database is not None:
            database.dispose()


pass_env = click.make_pass_decorator(Env, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level (LOG_LEVEL=DEBUG).")
@click.version_option(package_name="handoff", prog_name="handoff")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Handoff: one shared lead definition, enforced in Slack."""
    env = Env()
    settings = env.read_settings
    logs.configure(
        "DEBUG" if verbose else settings.log_level, settings.log_format, settings.secrets()
    )
    ctx.obj = env
    ctx.call_on_close(env.close)
