"""Events: the App Home tab is rendered when a user opens it (after the ack)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.blocks.home import HOME_PAGE, home_view
from bot.explain import describe_definition
from bot.home import my_queue, team_queue
from bot.services import Services
from handlers.after_ack import after_ack


def publish_home(services: Services, client: WebClient, user_id: str, page: int = 0) -> None:
    view = home_view(
        mine=my_queue(services, user_id),
        team=team_queue(services, user_id),
        definition_text=describe_definition(services.definition),
        page=page,
    )
    client.views_publish(user_id=user_id, view=view)


def on_home_opened(event: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    # Events are acked by Bolt when the listener returns.
    if event.get("tab", "home") == "home":
        after_ack(context, publish_home, context["services"], client, event["user"])


def _page(value: Any) -> int:
    """The "Show more" page number. Slack echoes the value the button was given, so
    anything else (a forged or mangled request) gets the first page, not a traceback."""
    text = value if isinstance(value, str) else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else 0


def on_home_page(ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient) -> None:
    ack()
    page = _page(body["actions"][0].get("value"))
    after_ack(context, publish_home, context["services"], client, body["user"]["id"], page)


def register(app: App) -> None:
    app.event("app_home_opened")(on_home_opened)
    app.action(HOME_PAGE)(on_home_page)
