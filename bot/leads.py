"""The lead as it arrives: validation and the CSV / JSONL readers.

One validator serves `POST /leads` and `handoff import`, so both report the same
field errors in the same words.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

TOP_LEVEL_FIELDS = frozenset(("email", "name", "title", "company", "owner", "source", "campaign"))


# An address as mail systems take it: an RFC 5322 dot-atom local part of at most 64
# characters (RFC 6531 adds letters and digits of any script) and a host name of two or
# more labels, 254 characters in all. No quoted local parts or IP literals: CRMs do not
# send them. atext allows / ? # % ' in the local part, so a URL built from an address
# must still percent-encode it (bot/writeback.py). A compiled pattern rather than the
# email-validator package, which costs ~50x more per address: an import checks every
# lead's email and owner. An ASCII pattern first, as the Unicode classes are slower.
def _address_pattern(letter_digit: str, letter: str, word_char: str) -> re.Pattern[str]:
    """The address grammar over a character class: ASCII, or letters of any script."""
    atom = rf"[{word_char}!#$%&'*+/=?^`{{|}}~-]+"
    label = rf"{letter_digit}(?:(?:{letter_digit}|-){{0,61}}{letter_digit})?"
    top = rf"(?:{letter}{{2,63}}|xn--[a-z0-9-]{{1,59}})"
    return re.compile(rf"{atom}(?:\.{atom})*@(?:{label}\.)+{top}")


_ASCII_EMAIL = _address_pattern("[a-z0-9]", "[a-z]", "a-z0-9_")
_UNICODE_EMAIL = _address_pattern(r"[^\W_]", r"[^\W\d_]", r"\w")
NUL_MESSAGE = "must not contain a NUL character"


def _email(value: str | None) -> str | None:
    """Blank to None, else a lower-cased address (one callback: it runs for every lead)."""
    if not value:
        return None
    value = value.lower()
    if value.isascii():
        pattern = _ASCII_EMAIL
    else:  # one spelling per address: é, not e + a combining accent
        value, pattern = unicodedata.normalize("NFC", value), _UNICODE_EMAIL
    if len(value) > 254 or value.find("@") > 64 or pattern.fullmatch(value) is None:
        raise ValueError("expected an email address like ana@acme.com")
    return value


def _text(value: str | None) -> str | None:
    """Blank to None; no NUL (PostgreSQL cannot store one in text)."""
    if not value:
        return None
    if "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    return value


Text = Annotated[
    str | None,
    StringConstraints(strip_whitespace=True, max_length=500),
    AfterValidator(_text),
]
Email = Annotated[
    str | None,
    StringConstraints(strip_whitespace=True, max_length=320),
    AfterValidator(_email),
]
# A Rust-side check where no Python callback runs yet (ids, signal names).
_NO_NUL = r"^[^\x00]*$"


def _utc(value: datetime) -> datetime:
    """Signal times in UTC with the standard library's tzinfo: the judge compares
    each one twice, and a datetime carrying pydantic's own tzinfo compares ~10x
    slower (~0.5 us, a Python-level utcoffset() call each side)."""
    return value.astimezone(UTC)


class SignalIn(TypedDict):
    """One intent signal. A TypedDict, not a model: pydantic validates a list of
    these several times faster, and an import validates millions."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=_NO_NUL),
    ]
    at: Annotated[AwareDatetime, AfterValidator(_utc)]


MAX_ATTRIBUTE_DEPTH = 10


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL_MESSAGE
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:  # JSON's "\ud800": no database stores it
            return "must not contain a lone surrogate (not Unicode text)"
    return None


def _storable(value: Any, depth: int = 0) -> str | None:
    """Why an attribute value cannot be stored on every database, else None.

    PostgreSQL refuses NUL in text and NaN / Infinity in JSON (SQLite takes both), no
    database takes a lone surrogate, and the serializer stops at ~255 levels: refused
    here, per lead and attribute, rather than failing a whole batch at the database.
    """
    kind = type(value)
    if kind is str:
        return _text_problem(value)
    if kind is float:
        return None if math.isfinite(value) else f"must be a finite number, not {value}"
    if kind is list or kind is dict:
        if depth >= MAX_ATTRIBUTE_DEPTH:
            return f"nested too deeply (at most {MAX_ATTRIBUTE_DEPTH} levels)"
        for key in value if kind is dict else ():
            problem = _text_problem(key)
            if problem is not None:
                return f"a key {problem}"
        for item in value.values() if kind is dict else value:
            problem = _storable(item, depth + 1)
            if problem is not None:
                return problem
    return None


def _attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Checked, then in key order, so the same lead always serialises (and hashes) the same."""
    for key, value in attributes.items():
        kind = type(value)
        # The usual scalars inline: this runs for every attribute of every lead.
        if (
            key.isascii()
            and "\x00" not in key
            and (
                kind is int
                or (kind is str and value.isascii() and "\x00" not in value)
                or (kind is float and math.isfinite(value))
            )
        ):
            continue
        problem = _text_problem(key)
        if problem is not None:
            raise ValueError(f"the name {key!r} {problem}")
        problem = _storable(value)
        if problem is not None:
            # One callback for the dict (cheaper than one per value); the error's
            # context carries the key, which _field_errors adds to its path.
            raise PydanticCustomError("attribute", "{problem}", {"key": key, "problem": problem})
    return _in_key_order(attributes)


def _in_key_order(attributes: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(attributes.items()))


class LeadIn(BaseModel):
    """A lead as the CRM or marketing automation sends it (DESIGN.md "Lead")."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    id: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=_NO_NUL),
    ]
    email: Email = None
    name: Text = None
    title: Text = None
    company: Text = None
    owner: Email = None
    source: Text = None
    campaign: Text = None
    attributes: Annotated[dict[str, Any], AfterValidator(_attributes)] = Field(default_factory=dict)
    signals: list[SignalIn] = Field(default_factory=list, max_length=1000)
    # When the lead was created where it came from (a backfill keeps its history). Not
    # part of the content hash: a lead re-sent with it is still the same lead.
    created_at: Annotated[AwareDatetime, AfterValidator(_utc)] | None = Field(
        default=None, exclude=True
    )

    def field(self, name: str) -> Any:
        """A top-level field, else an attribute: how the definition names lead data."""
        if name in TOP_LEVEL_FIELDS:
            return getattr(self, name)
        return self.attributes.get(name)

    def payload_hash(self) -> str:
        """Identifies the content, so that re-sending the same lead changes nothing."""
        # The serializer itself: the same bytes as model_dump_json(), without its wrapper.
        return hashlib.sha256(self.__pydantic_serializer__.to_json(self)).hexdigest()


_one_or_many = TypeAdapter(LeadIn | list[LeadIn])
_one = TypeAdapter(LeadIn)


@dataclass(frozen=True)
class FieldError:
    index: int | None  # position in a list body; None for a single lead
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidLeads(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


_FRIENDLY = {
    "missing": "required",
    "extra_forbidden": "unknown field",
    "string_type": "expected a string",
    "dict_type": "expected an object",
    "list_type": "expected a list",
    "timezone_aware": "expected an ISO 8601 time with a time zone, like 2026-11-20T10:00:00Z",
    "datetime_from_date_parsing": "expected an ISO 8601 time, like 2026-11-20T10:00:00Z",
    "datetime_parsing": "expected an ISO 8601 time, like 2026-11-20T10:00:00Z",
    "datetime_type": "expected an ISO 8601 time, like 2026-11-20T10:00:00Z",
    "string_too_short": "must not be empty",
    "model_type": "expected an object",
    "model_attributes_type": "expected an object",
    "string_pattern_mismatch": NUL_MESSAGE,  # the only pattern: _NO_NUL
}


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _field_errors(
    exc: ValidationError, *, is_list: bool, index: int | None = None
) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        # Union validation prefixes the branch name; drop it.
        if loc and loc[0] in ("LeadIn", "list[LeadIn]"):
            if (loc[0] == "list[LeadIn]") != is_list:
                continue
            loc = loc[1:]
        where = index
        if is_list and loc and isinstance(loc[0], int):
            where, loc = loc[0], loc[1:]
        message = _FRIENDLY.get(err["type"])
        if message is None:
            message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "attribute":
            loc = (*loc, err["ctx"]["key"])
        errors.append(FieldError(where, _path(loc), message))
    return errors


MAX_LEADS_PER_REQUEST = 1000


def _json(text: str | bytes) -> Any:
    """json.loads, every way it can fail a ValueError worded for the sender."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        raise ValueError(f"{exc.msg} at {where}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError:  # Python's limit on int() of a long digit string
        raise ValueError(f"a number has more than {sys.get_int_max_str_digits()} digits") from None


def parse_body(raw: bytes) -> list[LeadIn]:
    """Parse a `POST /leads` body: one lead or a list of up to 1000."""
    try:
        data = _json(raw)
    except ValueError as exc:
        raise InvalidLeads([FieldError(None, "", f"body is not valid JSON: {exc}")]) from None
    is_list = isinstance(data, list)
    if is_list and len(data) > MAX_LEADS_PER_REQUEST:
        raise InvalidLeads(
            [
                FieldError(
                    None, "", f"at most {MAX_LEADS_PER_REQUEST} leads a request, got {len(data)}"
                )
            ]
        )
    if is_list and not data:
        raise InvalidLeads([FieldError(None, "", "expected at least one lead")])
    if not is_list and not isinstance(data, dict):
        raise InvalidLeads([FieldError(None, "", "expected a lead object or a list of leads")])
    try:
        parsed = _one_or_many.validate_python(data)
    except ValidationError as exc:
        raise InvalidLeads(_field_errors(exc, is_list=is_list)) from None
    return parsed if isinstance(parsed, list) else [parsed]


def parse_lead(data: Any, *, index: int | None = None) -> LeadIn:
    try:
        return _one.validate_python(data)
    except ValidationError as exc:
        raise InvalidLeads(_field_errors(exc, is_list=False, index=index)) from None


# --- files -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of an import file: a valid lead, or why it is not one."""

    line: int
    lead: LeadIn | None
    error: str | None = None


_NUMBER_START = frozenset("+-.0123456789 \t")


def _number_or_text(value: str) -> Any:
    if value[0] not in _NUMBER_START:  # most text: skip two failed conversions
        return value
    if "." not in value:  # int() never takes a point: skip its exception for decimals
        try:
            return int(value)
        except ValueError:
            pass
    try:
        return float(value)
    except ValueError:
        return value


def parse_signal_cell(cell: str) -> list[dict[str, str]]:
    """`pricing_page@2026-11-20T10:00:00Z;demo_request@...` -> signal dicts."""
    signals = []
    for item in filter(None, (part.strip() for part in cell.split(";"))):
        name, sep, at = item.partition("@")
        if not sep:
            raise ValueError(f"signal '{item}' should look like name@2026-11-20T10:00:00Z")
        signals.append({"name": name.strip(), "at": at.strip()})
    return signals


class FileProblem(ValueError):
    """The file as a whole cannot be imported; nothing past its header was read."""


_COLUMNS = sorted(TOP_LEVEL_FIELDS | {"id", "created_at"})
_COLUMN_HELP = f"columns are {', '.join(_COLUMNS)}, signals and attributes.<name>"


class CsvLayout:
    """An import file's header, read once: which column feeds which lead field.

    Rows then map by position, which is several times cheaper than a dict per row.
    A header that names no lead field is refused here, once, rather than on every row.
    """

    def __init__(self, header: list[str]) -> None:
        self.width = len(header)
        self.fields: list[tuple[int, str]] = []
        self.attributes: list[tuple[int, str]] = []
        self.signals: int | None = None
        unknown: list[str] = []
        seen: set[str] = set()
        for index, column in enumerate(header):
            if column in seen:
                raise FileProblem(f"the header names column {column!r} twice")
            seen.add(column)
            name = column.removeprefix("attributes.")
            if name != column and name and "\x00" not in name:
                self.attributes.append((index, name))
            elif column == "signals":
                self.signals = index
            elif column in TOP_LEVEL_FIELDS or column in ("id", "created_at"):
                self.fields.append((index, column))
            else:
                unknown.append(repr(column))
        if unknown:
            raise FileProblem(
                f"unknown column(s) in the header: {', '.join(unknown)}; {_COLUMN_HELP}"
            )
        if "id" not in seen:
            raise FileProblem(f"the header has no id column; {_COLUMN_HELP}")

    def record(self, values: list[str]) -> dict[str, Any]:
        """One row as a lead record; ValueError when the row cannot be one."""
        width = len(values)
        if width > self.width:
            raise ValueError("more values than columns")
        record: dict[str, Any] = {
            column: values[index]
            for index, column in self.fields
            if index < width and values[index]
        }
        attributes = {
            name: _number_or_text(values[index])
            for index, name in self.attributes
            if index < width and values[index]
        }
        if attributes:
            record["attributes"] = attributes
        signals = self.signals
        if signals is not None and signals < width and values[signals]:
            record["signals"] = parse_signal_cell(values[signals])
        return record


def _validated(line: int, record: Any) -> Row:
    try:
        return Row(line, parse_lead(record))
    except InvalidLeads as exc:
        return Row(line, None, str(exc))


@contextmanager
def open_rows(path: Path) -> Iterator[Iterator[Row]]:
    """Open a CSV or JSONL file to stream it a row at a time (never the whole file).

    Raises FileProblem for a CSV header that is not one of lead fields, OSError /
    UnicodeDecodeError when the file cannot be read at all.
    """
    is_csv = path.suffix.lower() == ".csv"
    # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark; other files need none.
    with path.open(newline="" if is_csv else None, encoding="utf-8-sig") as handle:
        if is_csv:
            reader = csv.reader(handle)
            try:
                header = next(reader, None)
            except csv.Error as exc:
                raise FileProblem(f"the header is not valid CSV: {exc}") from None
            if header is None:
                raise FileProblem("the file is empty; the first row names the columns")
            yield _csv_rows(reader, CsvLayout([column.strip() for column in header]))
        else:
            yield _jsonl_rows(handle)


def _csv_rows(reader: Any, layout: CsvLayout) -> Iterator[Row]:
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a cell over the field size limit: that row only
            yield Row(reader.line_num, None, f"not valid CSV: {exc}")
            continue
        if not values:
            continue
        line = reader.line_num
        try:
            data = layout.record(values)
        except ValueError as exc:
            yield Row(line, None, str(exc))
            continue
        yield _validated(line, data)


def _jsonl_rows(handle: Any) -> Iterator[Row]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            data = _json(text)
        except ValueError as exc:
            yield Row(line, None, f"not valid JSON: {exc}")
            continue
        yield _validated(line, data)


class _StoredSignal(TypedDict):
    name: str
    at: Annotated[AwareDatetime, AfterValidator(_utc)]


class _StoredLead(LeadIn):
    """A lead as stored, taken as it was accepted: an older Handoff checked less (any
    address with an @, NUL and NaN on SQLite), and refusing such a lead now would stop
    its card's rerouting and every backtest."""

    id: str
    email: str | None = None
    name: str | None = None
    title: str | None = None
    company: str | None = None
    owner: str | None = None
    source: str | None = None
    campaign: str | None = None
    attributes: Annotated[dict[str, Any], AfterValidator(_in_key_order)] = Field(
        default_factory=dict
    )
    signals: list[_StoredSignal] = Field(default_factory=list)  # type: ignore[assignment]


_stored = TypeAdapter(_StoredLead)


def lead_from_stored(values: dict[str, Any]) -> LeadIn:
    """Rebuild the input model from a stored row (for backtests and re-judging)."""
    return _stored.validate_python(values)
