"""Links from a lead to its record in the CRM it came from ("Open in HubSpot").

A lead's external id names its CRM: `hubspot:<record id>`, `salesforce:<Id>`.
`record_url` dispatches on that prefix to one small builder per CRM; a CRM adds
its case to `BUILDERS`. The record id is data from outside: it is always one
percent-encoded path segment, so an id like `1/../x?y#z` cannot leave its place
in the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from bot.crm.sources import CrmSource, Sources
from bot.salesforce.links import salesforce_record_url

# HubSpot's object type ids, as its record URLs spell them.
HUBSPOT_OBJECT_TYPES = {"contacts": "0-1", "companies": "0-2", "deals": "0-3", "tickets": "0-5"}


def _segment(value: str) -> str:
    return quote(value, safe="")


def hubspot_url(record_id: str, source: CrmSource) -> str | None:
    """https://app.hubspot.com/contacts/<portal id>/record/0-1/<record id>; None without
    `portal_id` in sources.yml."""
    options = source.hubspot
    type_id = HUBSPOT_OBJECT_TYPES.get(source.object)
    if options is None or options.portal_id is None or type_id is None:
        return None
    portal = _segment(options.portal_id)
    return f"{options.app_url}/contacts/{portal}/record/{type_id}/{_segment(record_id)}"


def _hubspot(record_id: str, sources: Sources) -> str | None:
    return hubspot_url(record_id, sources.hubspot) if sources.hubspot else None


def _salesforce(record_id: str, sources: Sources) -> str | None:
    if sources.salesforce is None or not sources.salesforce_url:
        return None
    return salesforce_record_url(sources.salesforce_url, record_id, sources.salesforce.object)


# id prefix -> the URL of one record, and the CRM's name on the button.
BUILDERS: dict[str, Callable[[str, Sources], str | None]] = {
    "hubspot": _hubspot,
    "salesforce": _salesforce,
}
NAMES = {"hubspot": "HubSpot", "salesforce": "Salesforce"}


def record_url(lead_external_id: str, sources: Sources | None) -> str | None:
    """The lead's record in its CRM, or None (not from a CRM, or no link configured)."""
    prefix, colon, record_id = lead_external_id.partition(":")
    build = BUILDERS.get(prefix)
    if not colon or not record_id.strip() or build is None or sources is None:
        return None
    return build(record_id.strip(), sources)


def crm_name(lead_external_id: str) -> str:
    """The CRM's name for the button ("Open in HubSpot"), from the id's prefix."""
    prefix = lead_external_id.partition(":")[0]
    return NAMES.get(prefix, prefix)
