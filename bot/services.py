"""What the running app is made of, built once at start-up and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from slack_sdk import WebClient

from bot.crm.sources import Sources
from bot.definition import Definition
from bot.hubspot.api import HubSpotClient, Owners
from bot.salesforce.api import SalesforceClient
from bot.settings import Settings, secret
from bot.slack import Directory
from bot.versions import ActiveDefinition
from store.db import Database

if TYPE_CHECKING:
    from bot.delivery import Delivery


@dataclass
class Services:
    settings: Settings
    db: Database
    definitions: ActiveDefinition  # the active version, swapped in live by the sweep
    slack: WebClient
    directory: Directory
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))
    sources: Sources | None = None  # sources.yml: None, no CRM connector
    delivery: Delivery = field(init=False)
    hubspot: HubSpotClient | None = field(init=False, default=None)
    hubspot_owners: Owners | None = field(init=False, default=None)
    salesforce: SalesforceClient | None = field(init=False, default=None)

    @property
    def definition(self) -> Definition:
        """The definition to judge, route and decide with now (read it at each use)."""
        return self.definitions.current

    def __post_init__(self) -> None:
        from bot.delivery import Delivery

        self.delivery = Delivery(self)
        token = secret(self.settings.hubspot_token)
        if token:  # the owners API (webhook and polls), polling and write-back
            source = self.sources.hubspot if self.sources else None
            self.hubspot = HubSpotClient(
                self.http,
                self.settings.hubspot_api_url,
                token,
                **({"search_per_second": source.search_per_second} if source else {}),
            )
            self.hubspot_owners = Owners(self.hubspot)
        settings = self.settings
        if settings.salesforce_configured:  # polling and write-back
            self.salesforce = SalesforceClient(
                self.http,
                (settings.salesforce_url or "").strip(),
                (settings.salesforce_client_id or "").strip(),
                secret(settings.salesforce_client_secret),
            )

    @property
    def salesforce_write_back(self) -> dict[str, str]:
        """The Lead fields a decision is written to; empty when Salesforce is not connected."""
        source = self.sources.salesforce if self.sources else None
        if self.salesforce is None or source is None:
            return {}
        return source.write_back
