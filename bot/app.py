"""Wiring: build the services and the Bolt app from the settings."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltContext

from bot import (  # noqa: F401 - senders
    away,
    cards,
    digest,
    disputes,
    governance_messages,
    held,
    reminders,
    rerouting,
    review,
    writeback,
)
from bot.crm.sources import Sources, with_salesforce_url
from bot.definition import Definition
from bot.services import Services
from bot.settings import Settings, secret
from bot.slack import Directory, make_client
from bot.versions import ActiveDefinition, establish
from store.db import Database

logger = logging.getLogger(__name__)

AFTER_ACK_THREADS = 5


def build_services(
    settings: Settings,
    definition: Definition,
    db: Database,
    sources: Sources | None = None,
    *,
    active: ActiveDefinition | None = None,
) -> Services:
    """`definition` is the file's: the database's active version is what the app judges
    with (the file becomes it on an empty database). A CLI command passes the `active`
    it already read."""
    slack = make_client(secret(settings.slack_bot_token), settings.slack_api_url)
    return Services(
        settings=settings,
        db=db,
        definitions=active or establish(db, definition),
        slack=slack,
        directory=Directory(db, slack),
        sources=with_salesforce_url(sources, settings.salesforce_url),
    )


def build_bolt_app(services: Services) -> App:
    """The Bolt app; every listener finds the services on its context."""

    def use_our_client(context: BoltContext, next: Any) -> Any:  # noqa: A002 - Bolt's name
        # Bolt's authorization and the listeners get the app's own client (kept-alive
        # connections, counted calls, and the auth.test answer `handoff run` already got)
        # instead of the plain one Bolt builds for every request, which would ask Slack
        # auth.test again on the first request (and fail it if Slack were down then).
        context["client"] = services.slack
        return next()

    app = App(
        client=services.slack,
        signing_secret=secret(services.settings.slack_signing_secret),
        # Not Bolt's auth.test at construction, which raises when Slack is unreachable:
        # `handoff run` asks itself before serving (bot/readiness.py), stops on a refused
        # token and otherwise starts not ready and keeps asking.
        token_verification_enabled=False,
        logger=logging.getLogger("slack_bolt"),
        # Listeners run on the request's thread and the ack leaves when they return;
        # they hand slow work to the executor (handlers/after_ack.py). Without this,
        # each request waits for a free executor thread, behind earlier clicks' work.
        process_before_response=True,
        listener_executor=ThreadPoolExecutor(AFTER_ACK_THREADS, thread_name_prefix="after-ack"),
        before_authorize=use_our_client,
    )

    @app.middleware
    def provide_services(context: BoltContext, next: Any) -> Any:  # noqa: A002 - Bolt's name
        context["services"] = services
        return next()

    from handlers import register

    register(app)
    return app
