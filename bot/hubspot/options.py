"""The HubSpot-only keys of `sources.yml`'s `hubspot:` section: which property the
decision is written to and with which values, whether a reassignment moves the
contact's owner, and the portal the card's "Open in HubSpot" link points into.

    hubspot:
      portal_id: 12345678            # the Hub ID: the card links to the record
      app_url: https://app-eu1.hubspot.com   # optional, for portals in the EU data centre
      write_back:
        status: lifecyclestage       # default: HUBSPOT_STATUS_PROPERTY (hs_lead_status)
        values: {accepted: salesqualifiedlead, recycle: lead, disqualify: other}
        owner: true                  # a reassignment sets hubspot_owner_id

Without `write_back` nothing changes from before: the outcome goes to
HUBSPOT_STATUS_PROPERTY with HubSpot's lead status values (HUBSPOT_STATUS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.definition import _join, _kind, _Reader

KEYS = ("portal_id", "app_url", "write_back")
WRITE_BACK_KEYS = ("status", "values", "owner")
OUTCOMES = ("accepted", "recycle", "disqualify")  # an accept, and a rejection's two actions
LEAD_STATUS, LIFECYCLE_STAGE, OWNER = "hs_lead_status", "lifecyclestage", "hubspot_owner_id"
APP_URL = "https://app.hubspot.com"
# HubSpot's own internal values. Lead status: NEW, OPEN, IN_PROGRESS, OPEN_DEAL,
# UNQUALIFIED, ATTEMPTED_TO_CONTACT, CONNECTED, BAD_TIMING. An accepted lead is being
# worked (IN_PROGRESS: Handoff creates no deal, so not OPEN_DEAL); a recycled one goes
# back to OPEN for marketing; a disqualified one is UNQUALIFIED. These were Handoff's
# only values before `write_back` existed, and stay the default.
DEFAULT_VALUES: dict[str, dict[str, str | None]] = {
    LEAD_STATUS: {"accepted": "IN_PROGRESS", "recycle": "OPEN", "disqualify": "UNQUALIFIED"},
    # Lifecycle stages have no "rejected": recycled leads go back to lead, disqualified
    # ones to other (HubSpot's catch-all, last in its order).
    LIFECYCLE_STAGE: {"accepted": "salesqualifiedlead", "recycle": "lead", "disqualify": "other"},
}
_PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_APP_URL = re.compile(r"^https://[A-Za-z0-9.-]+(?::\d+)?$")
VALUE_LIMIT = 200


def default_values(status_property: str) -> dict[str, str | None]:
    """The values written to `status_property` when `values` names none: HubSpot's own
    for its two properties, Handoff's outcome words for a custom property."""
    return dict(DEFAULT_VALUES.get(status_property, {o: o for o in OUTCOMES}))


@dataclass(frozen=True)
class WriteBack:
    """`status` None: HUBSPOT_STATUS_PROPERTY (the default from before). A value None
    leaves the status property alone for that outcome."""

    status: str | None = None
    values: dict[str, str | None] = field(default_factory=dict)  # given ones only
    owner: bool = False

    def status_property(self, configured: str) -> str:
        return self.status or configured

    def value(self, status_property: str, outcome: str) -> str | None:
        if outcome in self.values:
            return self.values[outcome]
        return default_values(status_property).get(outcome)


@dataclass(frozen=True)
class HubSpotOptions:
    portal_id: str | None = None
    app_url: str = APP_URL
    write_back: WriteBack = field(default_factory=WriteBack)


def parse_options(r: _Reader, data: dict[str, Any], path: str = "hubspot") -> HubSpotOptions:
    """Read the keys above from the section's mapping, each problem with its path."""
    portal_id = None
    raw = data.get("portal_id")
    if raw is not None:
        text = str(raw).strip() if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
        if text.isdigit() and int(text) > 0:
            portal_id = str(int(text))
        else:
            r.problem(
                _join(path, "portal_id"),
                f"expected the portal's Hub ID (a number like 12345678), got {_kind(raw)}",
            )
    app_url = APP_URL
    raw = data.get("app_url")
    if raw is not None:
        if isinstance(raw, str) and _APP_URL.match(raw.strip().rstrip("/")):
            app_url = raw.strip().rstrip("/")
        else:
            r.problem(
                _join(path, "app_url"),
                f"expected an https URL like https://app-eu1.hubspot.com, got {_kind(raw)}",
            )
    write_back = WriteBack()
    raw = data.get("write_back")
    if raw is not None:
        write_back = _write_back(r, raw, _join(path, "write_back"))
    return HubSpotOptions(portal_id, app_url, write_back)


def _write_back(r: _Reader, node: Any, path: str) -> WriteBack:
    data = r.mapping(node, path, optional=WRITE_BACK_KEYS)
    if data is None:
        return WriteBack()
    status = None
    if data.get("status") is not None:
        raw = data["status"]
        if isinstance(raw, str) and _PROPERTY.match(raw.strip()):
            status = raw.strip()
        else:
            r.problem(
                _join(path, "status"),
                f"expected a property name ({LEAD_STATUS}, {LIFECYCLE_STAGE} or a custom "
                f"property's internal name), got {_kind(raw)}",
            )
    values: dict[str, str | None] = {}
    raw = data.get("values")
    if raw is not None:
        where = _join(path, "values")
        given = r.mapping(raw, where, optional=OUTCOMES) or {}
        for outcome in OUTCOMES:
            if outcome not in given:
                continue
            value = given[outcome]
            if value is None:
                values[outcome] = None  # leave the property as it is for this outcome
            elif isinstance(value, str) and value.strip() and len(value) <= VALUE_LIMIT:
                values[outcome] = value.strip()
            else:
                r.problem(
                    _join(where, outcome),
                    "expected the property's internal value (text), or null to leave it, "
                    f"got {_kind(value)}",
                )
    owner = False
    raw = data.get("owner")
    if raw is not None:
        if isinstance(raw, bool):
            owner = raw
        else:
            r.problem(_join(path, "owner"), f"expected true or false, got {_kind(raw)}")
    return WriteBack(status, values, owner)
