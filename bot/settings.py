"""Settings: read once from the environment at start-up and passed down.

Commands that do not talk to Slack (import, demo, report, backtest) need only
the database and the definition (a bad DATABASE_URL is named before connecting);
`handoff run` asks for the rest via `problems_for_run()`, which names every
missing or malformed variable at once.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from store.db import url_problem


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    database_url: str = "sqlite:///handoff.db"
    handoff_definition: str = "qualification.yml"
    handoff_intake_secret: SecretStr | None = None
    port: int = Field(default=3000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Optional, off by default.
    handoff_sweep_seconds: float = Field(default=15.0, gt=0)
    handoff_webhook_url: str | None = None
    handoff_webhook_secret: SecretStr | None = None
    hubspot_token: SecretStr | None = None
    hubspot_api_url: str = "https://api.hubapi.com"
    hubspot_status_property: str = "hs_lead_status"
    hubspot_reason_property: str = "handoff_rejection_reason"
    hubspot_note_property: str = "handoff_rejection_note"
    # Leads from the CRM (DESIGN.md "Leads from the CRM"): unset, `sources.yml` if present.
    handoff_sources: str | None = None
    hubspot_client_secret: SecretStr | None = None  # verifies X-HubSpot-Signature-v3
    hubspot_webhook_key: SecretStr | None = None  # or X-Handoff-Key on the webhook
    handoff_public_url: str | None = None  # the base URL HubSpot calls, to rebuild the URI
    # Salesforce: a connected app's OAuth 2.0 client credentials flow (README "Connect
    # Salesforce"). SALESFORCE_URL is the org's My Domain URL; the token endpoint is there.
    salesforce_url: str | None = None
    salesforce_client_id: str | None = None  # the consumer key
    salesforce_client_secret: SecretStr | None = None  # the consumer secret

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def secrets(self) -> list[str]:
        """Every secret value set, for the log filter that masks them."""
        values = (
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.handoff_intake_secret,
            self.handoff_webhook_secret,
            self.hubspot_token,
            self.hubspot_client_secret,
            self.hubspot_webhook_key,
            self.salesforce_client_secret,
        )
        return [secret(value) for value in values if secret(value)]

    def database_problem(self) -> str | None:
        """What is wrong with DATABASE_URL, found without connecting (every command)."""
        problem = url_problem(self.database_url)
        return f"DATABASE_URL: {problem}" if problem else None

    def problems_for_run(self) -> list[str]:
        """Everything `handoff run` needs, one line per problem."""
        problems = []
        database = self.database_problem()
        if database:
            problems.append(database)
        bot = secret(self.slack_bot_token)
        if not bot:
            problems.append(
                "SLACK_BOT_TOKEN: required; the bot token from OAuth & Permissions (xoxb-...)"
            )
        elif not bot.startswith("xoxb-"):
            problems.append("SLACK_BOT_TOKEN: expected a bot token starting with xoxb-")
        app = secret(self.slack_app_token)
        if app and not app.startswith("xapp-"):
            problems.append("SLACK_APP_TOKEN: expected an app-level token starting with xapp-")
        if not secret(self.slack_signing_secret):
            problems.append(
                "SLACK_SIGNING_SECRET: required; "
                "Basic Information > App Credentials > Signing Secret"
            )
        if not secret(self.handoff_intake_secret):
            problems.append(
                "HANDOFF_INTAKE_SECRET: required; a long random string shared with the CRM "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        if not re.match(r"^https?://", self.slack_api_url):
            problems.append("SLACK_API_URL: expected an http(s) URL like https://slack.com/api/")
        if self.handoff_public_url and not re.match(r"^https?://[^/?#]+", self.handoff_public_url):
            problems.append(
                "HANDOFF_PUBLIC_URL: expected the public base URL, like https://handoff.example.com"
            )
        if self.handoff_webhook_url and not secret(self.handoff_webhook_secret):
            problems.append("HANDOFF_WEBHOOK_SECRET: required when HANDOFF_WEBHOOK_URL is set")
        problems += self.salesforce_problems()
        return problems

    @property
    def salesforce_configured(self) -> bool:
        """All three Salesforce settings are set (polling, write-back, the check)."""
        return not self.salesforce_problems() and bool(self.salesforce_url)

    def salesforce_problems(self) -> list[str]:
        """None of the three Salesforce settings, or all three and a URL: one line each."""
        values = {
            "SALESFORCE_URL": (self.salesforce_url or "").strip(),
            "SALESFORCE_CLIENT_ID": (self.salesforce_client_id or "").strip(),
            "SALESFORCE_CLIENT_SECRET": secret(self.salesforce_client_secret),
        }
        if not any(values.values()):
            return []
        problems = [
            f"{name}: required with the other SALESFORCE_ settings (the connected app's "
            "OAuth client credentials)"
            for name, value in values.items()
            if not value
        ]
        url = values["SALESFORCE_URL"]
        if url and not re.match(r"^https?://[^/?#]+/?$", url):
            problems.append(
                "SALESFORCE_URL: expected the org's My Domain URL, "
                "like https://acme.my.salesforce.com"
            )
        return problems


def secret(value: SecretStr | None) -> str:
    """The plain value of an optional secret, "" when unset."""
    return value.get_secret_value().strip() if value else ""


def load_settings() -> Settings:
    """Read the environment; malformed values become one clear line each."""
    settings, problems = read_settings()
    if problems:
        raise SettingsError(problems)
    return settings


def read_settings() -> tuple[Settings, list[str]]:
    """The settings, and what is malformed in the environment (one line each). A
    malformed variable takes its default here, so the rest can still be checked (and
    `handoff run` names every problem in one pass)."""
    try:
        return Settings(), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    problems = [f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in errors]
    malformed = {str(err["loc"][0]) for err in errors if err["loc"]}
    defaults = {name: Settings.model_fields[name].default for name in malformed}
    return Settings(**defaults), problems


class SettingsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
