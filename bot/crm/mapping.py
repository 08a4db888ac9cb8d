"""A CRM record -> the lead JSON of bot/leads.py, through the `sources.yml` mapping.

HubSpot sends a record in one of three shapes (DESIGN.md): a v3 object
`{"id"|"objectId", "properties": {name: value}}`, a legacy contact
`{"vid", "properties": {name: {"value": v}}}`, or a flat object of properties
with `hs_object_id` (a workflow's customised body). Every value arrives as a
string: numbers, epoch milliseconds and ISO dates are read as what they are here,
then `parse_lead` applies every check a lead from `POST /leads` gets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from bot.crm.sources import CrmSource
from bot.leads import FieldError, InvalidLeads, LeadIn, parse_lead

OwnerEmail = Callable[[str], str | None]

_ID_KEYS = ("id", "objectId", "vid")
_INTEGER = re.compile(r"-?(?:0|[1-9]\d{0,17})")  # no leading zero: "0412" is a phone, not 412
_DECIMAL = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d{1,3})?")
_DIGITS = re.compile(r"-?\d{1,18}")
# Epoch milliseconds HubSpot can mean: 1970 up to the year 9999.
_MAX_MS = 253_402_300_799_999
_SHAPES = (
    'expected a HubSpot record: {"id", "properties": {...}}, {"vid", "properties": '
    '{name: {"value": ...}}} or an object of properties with hs_object_id'
)


def _shape_error(index: int | None, field: str, message: str) -> InvalidLeads:
    return InvalidLeads([FieldError(index, field, message)])


def record_id(record: Any) -> str | None:
    """The record's id as the CRM names it, when the record has one (for error reports)."""
    if not isinstance(record, dict):
        return None
    properties = record.get("properties")
    candidates = [record.get(key) for key in _ID_KEYS]
    if isinstance(properties, dict):
        candidates.append(_value(properties.get("hs_object_id")))
    else:
        candidates.append(record.get("hs_object_id"))
    for candidate in candidates:
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            return str(candidate)
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def _value(raw: Any) -> Any:
    """A legacy contact wraps each value: {"value": "Ana", "versions": [...]}."""
    return raw.get("value") if isinstance(raw, dict) else raw


def properties_of(record: Any, *, index: int | None = None) -> tuple[str, dict[str, Any]]:
    """The record's id and its properties as plain values, whatever its shape."""
    if not isinstance(record, dict):
        raise _shape_error(index, "", _SHAPES)
    properties = record.get("properties", record)
    if not isinstance(properties, dict):
        raise _shape_error(index, "properties", "expected an object of properties")
    rid = record_id(record)
    if rid is None:
        raise _shape_error(index, "id", "no record id (id, objectId, vid or hs_object_id)")
    return rid, {str(name): _value(raw) for name, raw in properties.items()}


def _scalar(value: Any) -> str | int | float | None:
    """A property value: None for empty, else a string or a number, never a container."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return value
    raise ValueError(f"expected a single value, got {type(value).__name__}")


def _text(value: str | int | float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def number_or_text(value: str | int | float) -> str | int | float:
    """'250' -> 250, '12.5' / '1e3' -> a float; anything else (like '0412') stays text."""
    if not isinstance(value, str):
        return value
    if _INTEGER.fullmatch(value):
        return int(value)
    if _DECIMAL.fullmatch(value):
        number = float(value)
        if number not in (float("inf"), float("-inf")):
            return number
    return value


def read_time(value: str | int | float) -> datetime:
    """Epoch milliseconds (HubSpot's datetime), an ISO date (midnight UTC, HubSpot's date
    property) or an ISO time; one without an offset is UTC."""
    if isinstance(value, int | float) or _DIGITS.fullmatch(str(value)):
        ms = float(value)
        if not 0 <= ms <= _MAX_MS:  # NaN too
            raise ValueError(f"epoch milliseconds out of range, got {value}")
        return datetime.fromtimestamp(int(ms) / 1000, UTC)
    text = str(value)
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(
            f"expected epoch milliseconds or an ISO 8601 date or time, got '{shown}'"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_lead_data(
    record: Any,
    source: CrmSource,
    *,
    owner_email: OwnerEmail | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    """The lead JSON for one record; InvalidLeads naming each property that cannot be read."""
    rid, properties = properties_of(record, index=index)
    errors: list[FieldError] = []

    def read(prop: str) -> Any:
        try:
            return _scalar(properties.get(prop))
        except ValueError as exc:
            errors.append(FieldError(index, f"properties.{prop}", str(exc)))
            return None

    def timed(prop: str) -> str | None:
        value = read(prop)
        if value is None:
            return None
        try:
            return read_time(value).isoformat()
        except ValueError as exc:
            errors.append(FieldError(index, f"properties.{prop}", str(exc)))
            return None

    lead: dict[str, Any] = {"id": f"{source.crm}:{rid}"}
    for field, props in source.fields.items():
        if field == "created_at":
            lead[field] = timed(props[0])
            continue
        parts = [_text(value) for value in map(read, props) if value is not None]
        text = " ".join(parts) or None
        if field == "owner" and text is not None and "@" not in text:
            # An owner id; unknown to the owners list (or no list): routing decides.
            text = owner_email(text) if owner_email else None
        lead[field] = text
    attributes = {}
    for name, prop in source.attributes.items():
        value = read(prop)
        if value is not None:
            attributes[name] = number_or_text(value)
    signals = []
    for name, prop in source.signals.items():
        at = timed(prop)
        if at is not None:
            signals.append({"name": name, "at": at})
    if errors:
        raise InvalidLeads(errors)
    lead = {key: value for key, value in lead.items() if value is not None}
    if attributes:
        lead["attributes"] = attributes
    if signals:
        lead["signals"] = signals
    return lead


def to_lead(
    record: Any,
    source: CrmSource,
    *,
    owner_email: OwnerEmail | None = None,
    index: int | None = None,
) -> LeadIn:
    """The validated lead for one record; InvalidLeads says what is wrong, by lead field
    and the property it came from."""
    data = to_lead_data(record, source, owner_email=owner_email, index=index)
    try:
        return parse_lead(data, index=index)
    except InvalidLeads as exc:
        raise InvalidLeads([_with_property(error, source) for error in exc.errors]) from None


def _with_property(error: FieldError, source: CrmSource) -> FieldError:
    """`email` -> `email (property work_email)`: the sender fixes the CRM, not the lead."""
    head, _, rest = error.field.partition(".")
    props: tuple[str, ...] | None = source.fields.get(head)
    if head == "attributes" and rest:
        prop = source.attributes.get(rest.split(".")[0].split("[")[0])
        props = (prop,) if prop else None
    if not props:
        return error
    named = "property " + ", ".join(props) if len(props) == 1 else "properties " + ", ".join(props)
    return FieldError(error.index, f"{error.field} ({named})", error.message)
