"""`sources.yml`: how a CRM record becomes a lead (DESIGN.md "Leads from the CRM").

Validated with the definition's reader, so every problem comes back at once
with its path (`hubspot.fields.owner: expected a property name`). No file means
no connector: `read_sources` answers None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bot.definition import _did_you_mean, _join, _kind, _Reader, yaml_problem
from bot.hubspot.api import DEFAULT_SEARCH_RATE
from bot.hubspot.options import HubSpotOptions, parse_options

DEFAULT_PATH = "sources.yml"
CRMS = ("hubspot", "salesforce")
DEFAULT_OBJECT = {"hubspot": "contacts", "salesforce": "Lead"}
# The lead's own fields a property can fill (`id` is `hubspot:<record id>`, never mapped).
TEXT_FIELDS = ("name", "title", "company", "source", "campaign")  # a list is joined
SINGLE_FIELDS = ("email", "owner", "created_at")  # one property each: joining makes no sense
LEAD_FIELDS = ("email", "name", "title", "company", "owner", "source", "campaign", "created_at")
KEYS = ("object", "fields", "attributes", "signals", "poll_every")
# Keys of one CRM only (hubspot: portal_id, app_url and write_back are read in
# bot/hubspot/options.py; salesforce: write_back, the Lead fields a decision goes to).
EXTRA_KEYS = {
    "hubspot": ("portal_id", "app_url", "write_back", "search_per_second"),
    "salesforce": ("write_back",),
}
# Salesforce only: the Lead fields a decision is written to (README "Connect Salesforce").
WRITE_BACK_KEYS = ("status", "reason", "note")
DEFAULT_WRITE_BACK = {"status": "Handoff_Status__c", "reason": "Handoff_Reason__c"}
# HubSpot internal names (firstname, hs_lead_status).
_PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
# Salesforce API names (Email, Custom__c, ns__Field__c), or a relationship path of up to
# five of them (Owner.Email): nothing else can reach a SOQL query.
_API_NAME = r"[A-Za-z][A-Za-z0-9_]{0,79}"
_FIELD_PATH = re.compile(rf"^{_API_NAME}(?:\.{_API_NAME}){{0,4}}$")
_FIELD = re.compile(rf"^{_API_NAME}$")
_SIGNAL = re.compile(r"^[a-z][a-z0-9_]*$")
_DURATION = re.compile(r"^(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?$")
MIN_POLL_SECONDS = 5.0


class SourcesError(ValueError):
    """sources.yml does not validate; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class CrmSource:
    """One CRM's mapping. `fields` maps a lead field to its properties (several are
    joined with spaces); `attributes` and `signals` map a name to one property."""

    crm: str
    object: str
    fields: dict[str, tuple[str, ...]]
    attributes: dict[str, str]
    signals: dict[str, str]
    poll_every: float | None = None  # seconds; None: push only
    hubspot: HubSpotOptions | None = None  # write-back and the record link (hubspot: only)
    search_per_second: float = DEFAULT_SEARCH_RATE  # a poll's pace (HubSpot's search limit)
    # Salesforce: "status"/"reason"/"note" -> the Lead field written; empty: no write-back.
    write_back: dict[str, str] = field(default_factory=dict)

    @property
    def properties(self) -> tuple[str, ...]:
        """Every property the mapping reads, once each (what a poll asks the CRM for)."""
        names = [name for group in self.fields.values() for name in group]
        names += [*self.attributes.values(), *self.signals.values()]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Sources:
    hubspot: CrmSource | None = None
    salesforce: CrmSource | None = None
    # SALESFORCE_URL (a setting, not a sources.yml key): where a Lead's link opens.
    salesforce_url: str | None = None
    source: str = DEFAULT_PATH


def with_salesforce_url(sources: Sources | None, url: str | None) -> Sources | None:
    """`sources` knowing SALESFORCE_URL, the org a Lead's link opens in."""
    if sources is None or not url or not url.strip():
        return sources
    return replace(sources, salesforce_url=url.strip())


def parse_duration_seconds(text: str) -> float:
    """'30s', '5m', '1h', '1m30s' -> seconds; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got '{text}'")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _property(r: _Reader, node: Any, path: str, crm: str = "hubspot") -> str | None:
    if crm == "salesforce":
        return _api_name(r, node, path, relationship=True)
    if isinstance(node, str) and _PROPERTY.match(node.strip()):
        return node.strip()
    r.problem(path, f"expected a property name (letters, digits and _), got {_kind(node)}")
    return None


def _api_name(r: _Reader, node: Any, path: str, *, relationship: bool) -> str | None:
    """A Salesforce field API name (`Email`, `Demo_Requested__c`), or with `relationship`
    a path through lookups (`Owner.Email`)."""
    pattern = _FIELD_PATH if relationship else _FIELD
    if isinstance(node, str):
        name = node.strip()
        if pattern.match(name) and not any(p.endswith("_") for p in name.split(".")):
            return name
    what = "a field API name like Email or Custom__c"
    if relationship:
        what += " (or a relationship path like Owner.Email)"
    r.problem(path, f"expected {what}, got {_kind(node)}")
    return None


def _fields(r: _Reader, crm: str, node: Any) -> dict[str, tuple[str, ...]]:
    path = _join(crm, "fields")
    data = r.mapping(node, path, optional=(*LEAD_FIELDS, "id")) if node is not None else {}
    out: dict[str, tuple[str, ...]] = {}
    for name, value in (data or {}).items():
        if name == "id":
            r.problem(_join(path, "id"), f"not mappable: the lead id is {crm}:<record id>")
            continue
        if name not in LEAD_FIELDS:
            continue  # reported by mapping() as an unknown key
        where = _join(path, name)
        if isinstance(value, list) and name not in SINGLE_FIELDS:
            if not value:
                r.problem(where, "expected at least one property name")
            names = [_property(r, item, _join(where, i), crm) for i, item in enumerate(value)]
            if value and all(names):
                out[name] = tuple(n for n in names if n)
        elif isinstance(value, list):
            r.problem(where, f"expected one property name, got a list ({name} is not joined)")
        else:
            prop = _property(r, value, where, crm)
            if prop and crm == "salesforce" and name == "owner" and "." not in prop:
                # Salesforce has no owners list to resolve an id with (HubSpot does).
                r.problem(where, f"expected the owner's email, like Owner.Email, got {prop}")
            elif prop:
                out[name] = (prop,)
    return out


def _named(
    r: _Reader, node: Any, path: str, *, signal: bool, crm: str = "hubspot"
) -> dict[str, str]:
    if node is None:
        return {}
    if not isinstance(node, dict):
        r.problem(path, f"expected a mapping, got {_kind(node)}")
        return {}
    out: dict[str, str] = {}
    for name, value in node.items():
        where = _join(path, str(name))
        if not isinstance(name, str) or not name.strip():
            r.problem(where, "expected a name")
            continue
        if signal and not _SIGNAL.match(name):
            r.problem(where, "expected a signal id of lower-case letters, digits and _")
            continue
        prop = _property(r, value, where, crm)
        if prop:
            out[name] = prop
    return out


def _write_back(r: _Reader, node: Any, path: str) -> dict[str, str]:
    """`write_back:` absent: Handoff's default fields; `false`: none; else a mapping."""
    if node is None:
        return dict(DEFAULT_WRITE_BACK)
    if node is False:
        return {}
    data = r.mapping(node, path, optional=WRITE_BACK_KEYS)
    out: dict[str, str] = {}
    for key, value in (data or {}).items():
        if key in WRITE_BACK_KEYS:
            name = _api_name(r, value, _join(path, key), relationship=False)
            if name:
                out[key] = name
    return out


def _crm(r: _Reader, crm: str, node: Any, signal_ids: frozenset[str] | None) -> CrmSource | None:
    before = len(r.problems)
    data = r.mapping(node, crm, optional=(*KEYS, *EXTRA_KEYS.get(crm, ())))
    if data is None:
        return None
    options = parse_options(r, data, crm) if crm == "hubspot" else None
    obj = DEFAULT_OBJECT[crm]
    if data.get("object") is not None:
        where = _join(crm, "object")
        if crm == "salesforce":
            obj = _api_name(r, data["object"], where, relationship=False) or obj
        else:
            obj = _property(r, data["object"], where) or obj
    fields = _fields(r, crm, data.get("fields"))
    attributes = _named(r, data.get("attributes"), _join(crm, "attributes"), signal=False, crm=crm)
    signals = _named(r, data.get("signals"), _join(crm, "signals"), signal=True, crm=crm)
    write_back = {}
    if crm == "salesforce":
        write_back = _write_back(r, data.get("write_back"), _join(crm, "write_back"))
    if signal_ids is not None:
        for name in signals:
            if name not in signal_ids:
                r.problem(
                    _join(_join(crm, "signals"), name),
                    "not a signal of the definition's intent.signals"
                    + _did_you_mean(name, signal_ids),
                )
    poll_every = None
    raw = data.get("poll_every")
    if raw is not None:
        where = _join(crm, "poll_every")
        if not isinstance(raw, str):
            r.problem(where, f'expected a duration like "30s" or "5m", got {_kind(raw)}')
        else:
            try:
                poll_every = parse_duration_seconds(raw)
            except ValueError as exc:
                r.problem(where, str(exc))
            else:
                if poll_every < MIN_POLL_SECONDS:
                    r.problem(where, f"expected at least {MIN_POLL_SECONDS:g}s, got '{raw}'")
                    poll_every = None
    if not fields and not attributes and not signals and len(r.problems) == before:
        r.problem(crm, "maps nothing: expected fields, attributes or signals")
    rate = DEFAULT_SEARCH_RATE
    if crm == "hubspot":
        rate = _search_rate(r, _join(crm, "search_per_second"), data.get("search_per_second"))
    return CrmSource(
        crm,
        obj,
        fields,
        attributes,
        signals,
        poll_every,
        hubspot=options,
        search_per_second=rate,
        write_back=write_back,
    )


def _search_rate(r: _Reader, where: str, raw: Any) -> float:
    if raw is None:
        return DEFAULT_SEARCH_RATE
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 100:
        r.problem(where, f"expected a number of requests a second, 0 to 100, got {raw!r}")
        return DEFAULT_SEARCH_RATE
    return float(raw)


def parse_sources(
    data: Any, *, source: str = DEFAULT_PATH, signal_ids: frozenset[str] | None = None
) -> Sources:
    """Validate parsed YAML, or raise SourcesError listing every problem.

    Given the definition's signal ids, a mapped signal it does not know is a problem
    too (the judge would ignore it)."""
    r = _Reader()
    top = r.mapping(data, "", optional=CRMS)
    if top is None:
        raise SourcesError(r.problems)
    if not any(top.get(crm) is not None for crm in CRMS):
        r.problem("", "expected a hubspot: or salesforce: section")
    crms = {crm: _crm(r, crm, top[crm], signal_ids) for crm in CRMS if top.get(crm) is not None}
    if r.problems:
        raise SourcesError(r.problems)
    return Sources(hubspot=crms.get("hubspot"), salesforce=crms.get("salesforce"), source=source)


def load_sources(path: str | Path, *, signal_ids: frozenset[str] | None = None) -> Sources:
    """Read and validate a sources file. OSError if it cannot be read at all."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SourcesError([yaml_problem(exc)]) from None
    return parse_sources(data, source=str(path), signal_ids=signal_ids)


def sources_path(configured: str | None) -> tuple[Path, bool]:
    """The file to read, and whether it was named explicitly (then it must exist)."""
    return Path(configured or DEFAULT_PATH), bool(configured)


def read_sources(
    configured: str | None, *, signal_ids: frozenset[str] | None = None
) -> Sources | None:
    """The sources, or None when there is no file (no connector).

    Raises SourcesError when the file does not validate, or when HANDOFF_SOURCES
    names a file that does not exist (a typo there would silently turn CRM intake off)."""
    path, explicit = sources_path(configured)
    if not path.exists():
        if explicit:
            raise SourcesError([f"HANDOFF_SOURCES: {path} does not exist"])
        return None
    try:
        return load_sources(path, signal_ids=signal_ids)
    except OSError as exc:
        raise SourcesError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
