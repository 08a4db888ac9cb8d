"""`handoff hubspot check`: does the private app's token work, and do the properties
Handoff reads and writes exist? With `fix`, Handoff's own properties are created (in
a "handoff" group); HubSpot's own, and anyone else's, never are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
) -> list[Check]:
    """One check per line: the token, then each property in `wanted` (name -> why it
    is needed, e.g. "mapped in sources.yml" or "written back (HUBSPOT_NOTE_PROPERTY)")."""
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
    return checks


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
