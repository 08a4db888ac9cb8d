"""What the running app is made of, built once at start-up and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from slack_sdk import WebClient

from bot.definition import Definition
from bot.settings import Settings
from bot.slack import Directory
from store.db import Database

if TYPE_CHECKING:
    from bot.delivery import Delivery


@dataclass
class Services:
    settings: Settings
    db: Database
    definition: Definition
    slack: WebClient
    directory: Directory
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0))
    delivery: Delivery = field(init=False)

    def __post_init__(self) -> None:
        from bot.delivery import Delivery

        self.delivery = Delivery(self)
