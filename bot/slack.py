"""The Slack Web API client and the email <-> Slack user directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from bot import clock
from store.db import Database
from store.models import SlackUser

logger = logging.getLogger(__name__)

# How long a users.lookupByEmail answer is trusted before asking Slack again.
DIRECTORY_TTL = timedelta(hours=12)


def make_client(token: str, base_url: str, *, timeout: int = 10) -> WebClient:
    """A WebClient that retries connection errors, 5xx and 429 (after Retry-After)."""
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3),
        ],
    )


@dataclass(frozen=True)
class SlackPerson:
    email: str
    user_id: str
    tz: str | None
    name: str | None


class Directory:
    """Resolves emails to Slack users via users.lookupByEmail, cached in the store
    (including "not in Slack", so an unknown owner costs one call, not one per lead)."""

    def __init__(self, db: Database, client: WebClient) -> None:
        self.db = db
        self.client = client

    def by_email(self, email: str) -> SlackPerson | None:
        now = clock.now()
        with self.db.session() as session:
            cached = session.get(SlackUser, email)
        if cached is not None and now - cached.fetched_at < DIRECTORY_TTL:
            return _person(cached)
        try:
            user = self.client.users_lookupByEmail(email=email)["user"]
        except SlackApiError as exc:
            if exc.response.get("error") != "users_not_found":
                raise
            self._remember(email, None, None, None, now)
            return None
        return self._remember(email, user["id"], user.get("tz"), _display_name(user), now)

    def by_user_id(self, user_id: str) -> SlackPerson | None:
        """users.info for a user picked in Slack (reassign): we need their email."""
        try:
            user = self.client.users_info(user=user_id)["user"]
        except SlackApiError as exc:
            if exc.response.get("error") == "user_not_found":
                return None
            raise
        email = (user.get("profile") or {}).get("email")
        if not email:
            return None
        return self._remember(
            email.lower(), user["id"], user.get("tz"), _display_name(user), clock.now()
        )

    def email_of(self, user_id: str) -> str | None:
        """The email of a Slack user we have seen, else ask Slack."""
        with self.db.session() as session:
            email = session.scalars(
                select(SlackUser.email).where(SlackUser.user_id == user_id)
            ).first()
        if email:
            return email
        person = self.by_user_id(user_id)
        return person.email if person else None

    def _remember(
        self, email: str, user_id: str | None, tz: str | None, name: str | None, now: datetime
    ) -> SlackPerson | None:
        row = SlackUser(
            email=email,
            user_id=user_id,
            tz=tz,
            name=name,
            found=user_id is not None,
            fetched_at=now,
        )
        try:
            with self.db.transaction() as session:
                session.merge(row)
        except IntegrityError:
            logger.debug("directory entry for a user was written concurrently")
        return _person(row)


def _display_name(user: dict[str, Any]) -> str | None:
    profile = user.get("profile") or {}
    return profile.get("real_name") or user.get("real_name") or user.get("name")


def _person(row: SlackUser) -> SlackPerson | None:
    if not row.found or not row.user_id:
        return None
    return SlackPerson(row.email, row.user_id, row.tz, row.name)
