"""Where a Salesforce record opens in the browser (the card's link to the CRM)."""

from __future__ import annotations

from urllib.parse import quote


def salesforce_record_url(instance_url: str, record_id: str, sobject: str = "Lead") -> str:
    """The record's Lightning page: `{instance_url}/lightning/r/Lead/<Id>/view`.

    `instance_url` is the org's URL (SALESFORCE_URL); the id and the object name are
    encoded as one path segment each, whatever a record holds."""
    segments = ("lightning", "r", sobject, record_id, "view")
    return instance_url.rstrip("/") + "/" + "/".join(quote(s, safe="") for s in segments)
