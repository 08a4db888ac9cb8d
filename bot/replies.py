"""Telling one person something about their own click: where they clicked, else a DM."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.common import Mrkdwn, message_text
from bot.decisions import Refused

logger = logging.getLogger(__name__)

# chat.postEphemeral's answers when the bot cannot post where the click was (it is
# not a member, or the channel is gone): the person still needs the answer.
_CANNOT_POST_THERE = frozenset(
    {"channel_not_found", "not_in_channel", "is_archived", "user_not_in_channel"}
)


def tell(client: WebClient, user_id: str, channel: str | None, text: Mrkdwn) -> None:
    """An ephemeral message in `channel`; a DM when there is none (App Home) or the bot
    cannot post there."""
    text = message_text(text)
    if channel:
        try:
            client.chat_postEphemeral(channel=channel, user=user_id, text=text)
            return
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error not in _CANNOT_POST_THERE:
                raise
            logger.info(
                "cannot answer %s in %s (%s): sending a DM instead", user_id, channel, error
            )
    client.chat_postMessage(channel=user_id, text=text)


def tell_refusal(
    client: WebClient, user_id: str, channel: str | None, refusal: Refused, *, retried: bool
) -> None:
    """Say why a click did nothing, once.

    A quiet refusal (the person's own identical decision already stands) is not said:
    the card shows it. Nor is a refusal on a click Slack retried (X-Slack-Retry-Num):
    the first delivery of that click was answered already.
    """
    if refusal.quiet or retried:
        logger.info("not repeating a refusal to %s: %s", user_id, refusal.text)
        return
    tell(client, user_id, channel, refusal.text)
