"""`handoff salesforce check`: do the connected app's credentials give a token, and
do the fields Handoff reads and writes exist on the object? Nothing is created:
Salesforce fields are added in Setup (README "Connect Salesforce")."""

from __future__ import annotations

from collections.abc import Mapping

from bot.hubspot.check import Check
from bot.salesforce.api import (
    SalesforceClient,
    SalesforceError,
    SalesforceRefused,
    SalesforceUnavailable,
)


def _failed(subject: str, exc: SalesforceError) -> Check:
    if isinstance(exc, SalesforceRefused):
        status = "refused"
    elif isinstance(exc, SalesforceUnavailable):
        status = "unavailable"
    else:
        status = "error"
    return Check(False, status, subject, str(exc))


def check_salesforce(
    client: SalesforceClient,
    sobject: str,
    *,
    mapped: list[str],
    write_back: Mapping[str, str],
) -> list[Check]:
    """One check per line: the token, the object, each mapped field (a relationship
    path by its first step: `Owner.Email` needs the Owner relationship), then each
    write-back field (name -> the write_back key), which must also be editable."""
    try:
        instance = client.token_check()
    except SalesforceError as exc:
        return [_failed("token", exc)]
    checks = [Check(True, "ok", "token", f"issued for {instance}")]
    try:
        fields = client.describe(sobject)
    except SalesforceError as exc:
        return [*checks, _failed(f"object {sobject}", exc)]
    checks.append(Check(True, "ok", f"object {sobject}", f"{len(fields)} fields readable"))
    relationships = {
        str(f["relationshipName"]): f for f in fields.values() if f.get("relationshipName")
    }
    for name in dict.fromkeys(mapped):
        subject = f"field {name}"
        if "." in name:
            first = name.split(".")[0]
            if first in relationships:
                targets = ", ".join(relationships[first].get("referenceTo") or []) or "?"
                checks.append(
                    Check(True, "ok", subject, f"mapped in sources.yml; relationship to {targets}")
                )
            else:
                checks.append(
                    Check(False, "missing", subject, f"no relationship {first} on {sobject}")
                )
        elif name in fields:
            checks.append(Check(True, "ok", subject, "mapped in sources.yml"))
        else:
            checks.append(
                Check(
                    False,
                    "missing",
                    subject,
                    f"mapped in sources.yml; not a field of {sobject} visible to the "
                    "run-as user (check the API name and field-level security)",
                )
            )
    for key, name in write_back.items():
        subject = f"field {name}"
        why = f"written back (write_back.{key})"
        found = fields.get(name)
        if found is None:
            checks.append(
                Check(
                    False,
                    "missing",
                    subject,
                    f"{why}; create it in Setup > Object Manager > {sobject} > Fields "
                    "& Relationships, or change write_back in sources.yml",
                )
            )
        elif not found.get("updateable"):
            checks.append(
                Check(False, "read-only", subject, f"{why}; the run-as user cannot edit it")
            )
        else:
            checks.append(Check(True, "ok", subject, why))
    return checks
