"""`handoff hubspot check`: does the private app's token work, and do the properties
Handoff reads and writes exist? With `fix`, Handoff's own properties are created (in
a "handoff" group); HubSpot's own, and anyone else's, never are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.hubspot.api import HubSpotClient, HubSpotError, HubSpotRefused, HubSpotUnavailable

GROUP, GROUP_LABEL = "handoff", "Handoff"
# The properties Handoff owns (its write-back defaults): name -> (label, description).
OWN_PROPERTIES = {
    "handoff_rejection_reason": (
        "Handoff rejection reason",
        "Why sales sent the lead back in Handoff (the reason's label).",
    ),
    "handoff_rejection_note": (
        "Handoff rejection note",
        "The rep's note when sending the lead back in Handoff.",
    ),
}


@dataclass(frozen=True)
class Check:
    ok: bool
    status: str  # ok, created, missing, refused, unavailable, error
    subject: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.status:<12}{self.subject}" + (f": {self.detail}" if self.detail else "")


def _failed(subject: str, exc: HubSpotError) -> Check:
    if isinstance(exc, HubSpotRefused):
        status = "refused"
    elif isinstance(exc, HubSpotUnavailable):
        status = "unavailable"
    else:
        status = "error"
    return Check(False, status, subject, str(exc))


def check_hubspot(
    client: HubSpotClient,
    *,
    wanted: Mapping[str, str],
    fix: bool = False,
    values: Mapping[str, Mapping[str, str | None]] | None = None,
    portal_id: str | None = None,
    link: bool = False,
) -> list[Check]:
    """One check per line: the token, then each property in `wanted` (name -> why it
    is needed, e.g. "mapped in sources.yml" or "written back (HUBSPOT_NOTE_PROPERTY)"),
    then the values written to a property with options (`values`: property -> outcome
    -> value, checked against the options HubSpot offers), then the portal the card
    links into (`portal_id` from sources.yml; with `link` and none set, a hint)."""
    try:
        owners = client.owners()
    except HubSpotError as exc:
        return [_failed("token", exc)]
    checks = [Check(True, "ok", "token", f"accepted; {len(owners)} owner(s) readable")]
    try:
        existing = client.properties()
    except HubSpotError as exc:
        return [*checks, _failed("contact properties", exc)]
    creator = _Creator(client)
    for name, why in wanted.items():
        subject = f"property {name}"
        if name in existing:
            checks.append(Check(True, "ok", subject, why))
        elif name in OWN_PROPERTIES and fix:
            checks.append(creator.create(name, why))
        elif name in OWN_PROPERTIES:
            checks.append(
                Check(False, "missing", subject, f"{why}; `handoff hubspot check --fix` creates it")
            )
        else:
            checks.append(
                Check(
                    False,
                    "missing",
                    subject,
                    f"{why}; not one of Handoff's own, so create it in HubSpot "
                    "(Settings > Properties) or fix the name",
                )
            )
    for name, by_outcome in (values or {}).items():
        if name in existing:
            checks += _values(name, existing[name], by_outcome)
    if portal_id is not None or link:
        checks.append(_portal(client, portal_id))
    return checks


def _values(
    name: str, prop: Mapping[str, Any], by_outcome: Mapping[str, str | None]
) -> list[Check]:
    """Each value Handoff writes to an enumeration property is one of its options."""
    options = prop.get("options")
    if not isinstance(options, list) or not options:
        return []  # free text: any value goes
    offered = [str(o.get("value")) for o in options if isinstance(o, dict) and not o.get("hidden")]
    checks = []
    for outcome, value in by_outcome.items():
        if value is None:
            continue
        subject = f"value {name}={value}"
        why = f"written on {outcome} (write_back.values.{outcome})"
        if value in offered:
            checks.append(Check(True, "ok", subject, why))
        else:
            detail = f"{why}; not one of the property's options: {', '.join(offered)}"
            checks.append(Check(False, "invalid", subject, detail))
    return checks


def _portal(client: HubSpotClient, configured: str | None) -> Check:
    """The portal the token belongs to, against sources.yml's `portal_id`."""
    try:
        actual = client.portal_id()
    except HubSpotError as exc:
        if configured is None:
            return Check(True, "note", "portal_id", f"cannot read the account details: {exc}")
        return _failed("portal_id", exc)
    if configured is None:
        return Check(
            True,
            "note",
            "portal_id",
            f"not set; add `portal_id: {actual}` under hubspot: in sources.yml "
            "for the card's Open in HubSpot link",
        )
    if configured != actual:
        return Check(
            False,
            "invalid",
            "portal_id",
            f"sources.yml says {configured} but the token belongs to portal {actual}: "
            "the card would link into the wrong portal",
        )
    return Check(True, "ok", "portal_id", f"{actual}: the card links into this portal")


class _Creator:
    """Creates Handoff's own properties, and their group the first time it is needed."""

    def __init__(self, client: HubSpotClient) -> None:
        self.client = client
        self.group_ready = False

    def create(self, name: str, why: str) -> Check:
        label, description = OWN_PROPERTIES[name]
        subject = f"property {name}"
        try:
            if not self.group_ready:
                if GROUP not in self.client.property_groups():
                    self.client.create_property_group(GROUP, GROUP_LABEL)
                self.group_ready = True
            self.client.create_property(name, label, group=GROUP, description=description)
        except HubSpotError as exc:
            return _failed(subject, exc)
        return Check(True, "created", subject, f"{why}; in the {GROUP!r} group")


def wanted_properties(
    *, named: Sequence[str], mapped: Sequence[str], writeback: Mapping[str, str]
) -> dict[str, str]:
    """Each property to check once, with why (the first reason given wins)."""
    wanted: dict[str, str] = {}
    for name in named:
        wanted.setdefault(name, "named on the command line")
    for name in mapped:
        wanted.setdefault(name, "mapped in sources.yml")
    for name, setting in writeback.items():
        wanted.setdefault(name, f"written back ({setting})")
    return wanted
