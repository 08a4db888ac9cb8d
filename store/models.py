"""The tables. Every timestamp is stored timezone-aware in UTC.

Statuses are plain strings (constants below) rather than database enums so that
SQLite and PostgreSQL hold the same schema and a new status needs no migration.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pydantic_core
from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint, text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from store.types import UTCDateTime

# 2: indexes for the digest (covering ones on handoff, lead.created_at)
# 3: governance, CRM links and the loop's teeth: new tables and nullable columns
SCHEMA_VERSION = 3


class _BulkUTCDateTime(UTCDateTime):
    """UTCDateTime whose bind processor remembers the last value it converted.

    A bulk insert binds the same `now` to every row (created_at, updated_at,
    judged_at); converting it once per statement instead of once per row matters
    on an import of a million rows.
    """

    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        process = super().bind_processor(dialect)
        if process is None:
            return None
        last: tuple[Any, Any] = (object(), None)  # one tuple: replaced atomically across threads

        def cached(value: Any) -> Any:
            nonlocal last
            seen, converted = last
            if value is seen:
                return converted
            converted = process(value)
            last = (value, converted)
            return converted

        return cached


def _json_bytes(value: Any) -> bytes:
    try:
        return pydantic_core.to_json(value)
    except pydantic_core.PydanticSerializationError:  # a lone surrogate, say
        return json.dumps(value).encode()


def _json_text(value: Any) -> str:
    try:
        return pydantic_core.to_json(value).decode()
    except pydantic_core.PydanticSerializationError:
        return json.dumps(value)


class _FastJSON(TypeDecorator[Any]):
    """JSON serialised by pydantic-core (Rust) instead of `json.dumps`: 3x faster.

    An import writes four JSON values a row, the verdict detail about 1 KB of
    them. The text is compact JSON that any JSON reader parses as before; the
    column type in the schema is plain JSON.
    """

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return _json_text
        if dialect.driver == "psycopg":
            from psycopg.types.json import Json

            return lambda value: Json(value, _json_bytes)
        return super().bind_processor(dialect)


def _utc_column(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(_BulkUTCDateTime(), nullable=nullable, index=index),
    )


def _json_column(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(_FastJSON(), nullable=False))


class LeadStatus:
    NURTURE = "nurture"
    MISSING_CONTEXT = "missing_context"
    # Recycled, then qualified again on new intent before its reason's cooldown ended.
    COOLING_DOWN = "cooling_down"
    HANDED_OFF = "handed_off"
    ACCEPTED = "accepted"
    DISQUALIFIED = "disqualified"


class HandoffStatus:
    OPEN = "open"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REASSIGNED = "reassigned"


class Lead(SQLModel, table=True):
    __tablename__ = "lead"
    __table_args__ = (
        Index("ix_lead_source_campaign", "source", "campaign"),
        # Routing's account match: who already works this company or email domain.
        Index("ix_lead_company_key", "company_key"),
        Index("ix_lead_email_domain", "email_domain"),
    )

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=255, unique=True)
    email: str | None = None
    name: str | None = None
    title: str | None = None
    company: str | None = None
    owner: str | None = None
    source: str | None = None
    campaign: str | None = None
    attributes: dict[str, Any] = _json_column()
    signals: list[dict[str, Any]] = _json_column(list)
    payload_hash: str = Field(max_length=64)
    status: str = Field(default=LeadStatus.NURTURE, index=True, max_length=32)
    qualified: bool = False
    ready: bool = False  # qualified and carrying every required field: what hands off
    hot: bool = False
    score: int = 0
    created_at: datetime = _utc_column(nullable=False, index=True)  # the digest's lead counts
    updated_at: datetime = _utc_column(nullable=False, index=True)
    # Set by a recycle: only signals after `recycled_at` can qualify the lead again, and
    # it is not handed off before `returns_after` (the reason's cooldown).
    recycled_at: datetime | None = _utc_column()
    returns_after: datetime | None = _utc_column()
    company_key: str | None = None  # company, trimmed and case-folded
    email_domain: str | None = None  # the email's domain, unless free mail (gmail.com)


class Verdict(SQLModel, table=True):
    """Every judgement, kept with the definition it was made under."""

    __tablename__ = "verdict"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    definition_version: int
    definition_fingerprint: str = Field(max_length=16)
    judged_at: datetime = _utc_column(nullable=False)
    qualified: bool
    hot: bool
    score: int
    fit_passed: bool
    missing: list[str] = _json_column(list)
    detail: dict[str, Any] = _json_column()


class Handoff(SQLModel, table=True):
    __tablename__ = "handoff"
    __table_args__ = (
        # At most one open handoff per lead, enforced by the database so that
        # concurrent intake of the same lead cannot hand it off twice.
        Index(
            "ux_handoff_one_open_per_lead",
            "lead_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_handoff_status_owner", "status", "owner_email"),
        # Covering indexes for the digest and report: a week's counts, reasons and
        # percentiles read index entries only. Status leads the decided one because
        # SQLite's planner (no ANALYZE statistics) takes a status equality over a
        # decided_at range and would otherwise pick ix_handoff_status_owner.
        Index(
            "ix_handoff_decided",
            "status",
            "decided_at",
            "business_seconds",
            "reason_id",
            "lead_id",
        ),
        Index(
            "ix_handoff_assigned",
            "assigned_at",
            "previous_id",
            "status",
            "reason_id",
            "breached",
            "lead_id",
        ),
        # Daily caps: a rule's handoffs since the start of today, counted per rep.
        Index("ix_handoff_route_key", "route_key", "assigned_at", "owner_email"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    owner_email: str = Field(max_length=320)
    owner_user_id: str | None = Field(default=None, max_length=32)
    routed_by: str = ""
    assigned_at: datetime = _utc_column(nullable=False, index=True)
    due_at: datetime = _utc_column(nullable=False, index=True)
    status: str = Field(default=HandoffStatus.OPEN, max_length=16)
    channel: str | None = Field(default=None, max_length=32)
    ts: str | None = Field(default=None, max_length=32)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = _utc_column(index=True)
    reason_id: str | None = Field(default=None, max_length=64)
    note: str | None = None
    action: str | None = Field(default=None, max_length=16)
    commercial: list[str] = _json_column(list)
    business_seconds: int | None = None
    wall_seconds: int | None = None
    breached: bool | None = None
    late_seconds: int | None = None
    previous_id: int | None = Field(default=None, foreign_key="handoff.id")
    # The definition version the lead was handed off under (None: before governance).
    definition_version: int | None = None
    # The routing rule ("routing[1]") whose pool the owner came from: its daily cap
    # counts this handoff, and a breach moves the lead on within that pool.
    route_key: str | None = Field(default=None, max_length=64)


class OutboxStatus:
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Outbox(SQLModel, table=True):
    """Work for the outside world (Slack, webhooks, CRM), written in the same
    transaction as the change that causes it and sent by a worker."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    payload: dict[str, Any] = _json_column()
    handoff_id: int | None = Field(default=None, foreign_key="handoff.id", index=True)
    dedupe_key: str = Field(max_length=200, unique=True)
    status: str = Field(default=OutboxStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _utc_column(nullable=False)
    lease_until: datetime | None = _utc_column()
    last_error: str | None = None
    result: dict[str, Any] = _json_column()
    created_at: datetime = _utc_column(nullable=False)
    sent_at: datetime | None = _utc_column()


class TimerStatus:
    PENDING = "pending"
    FIRED = "fired"
    CANCELLED = "cancelled"


class SlaTimer(SQLModel, table=True):
    """One reminder or escalation of one handoff, due at a stored time."""

    __tablename__ = "sla_timer"
    __table_args__ = (
        Index("ix_sla_timer_due", "status", "due_at"),
        UniqueConstraint("handoff_id", "kind", "fraction"),
    )

    id: int | None = Field(default=None, primary_key=True)
    handoff_id: int = Field(foreign_key="handoff.id", index=True)
    kind: str = Field(max_length=16)  # remind | escalate
    fraction: float
    due_at: datetime = _utc_column(nullable=False)
    status: str = Field(default=TimerStatus.PENDING, max_length=16)
    fired_at: datetime | None = _utc_column()
    late: bool = False


class Snooze(SQLModel, table=True):
    """A pause of one handoff's response clock, until `until`; the timers and the due
    time moved by `paused_seconds` of business time. One at a time per handoff."""

    __tablename__ = "snooze"

    id: int | None = Field(default=None, primary_key=True)
    handoff_id: int = Field(foreign_key="handoff.id", index=True)
    by: str = Field(max_length=64)  # the Slack user who snoozed
    at: datetime = _utc_column(nullable=False)
    until: datetime = _utc_column(nullable=False)
    why: str
    paused_seconds: int


class DisputeStatus:
    OPEN = "open"
    UPHELD = "upheld"
    REOPENED = "reopened"


class Dispute(SQLModel, table=True):
    """Marketing's challenge of one rejection, decided by the rep's manager. The unique
    handoff id makes it one dispute per rejection."""

    __tablename__ = "dispute"

    id: int | None = Field(default=None, primary_key=True)
    handoff_id: int = Field(foreign_key="handoff.id", unique=True)  # the rejected handoff
    lead_id: int = Field(foreign_key="lead.id", index=True)
    by: str = Field(max_length=64)  # the marketing owner's Slack user id
    note: str
    at: datetime = _utc_column(nullable=False, index=True)
    manager_email: str = Field(max_length=320)  # who decides
    status: str = Field(default=DisputeStatus.OPEN, max_length=16)
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = _utc_column(index=True)
    new_handoff_id: int | None = Field(default=None, foreign_key="handoff.id")
    channel: str | None = Field(default=None, max_length=32)  # the manager's DM
    ts: str | None = Field(default=None, max_length=32)


class Audit(SQLModel, table=True):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _utc_column(nullable=False, index=True)
    actor: str = Field(max_length=320)
    action: str = Field(max_length=64)
    lead_id: int | None = Field(default=None, foreign_key="lead.id", index=True)
    handoff_id: int | None = Field(default=None, foreign_key="handoff.id")
    detail: dict[str, Any] = _json_column()


class RoutingState(SQLModel, table=True):
    """Round-robin position per pool, so rotation is fair across restarts."""

    __tablename__ = "routing_state"

    key: str = Field(primary_key=True, max_length=64)
    position: int = 0


class SlackUser(SQLModel, table=True):
    """Cache of users.lookupByEmail / users.info answers."""

    __tablename__ = "slack_user"

    email: str = Field(primary_key=True, max_length=320)
    user_id: str | None = Field(default=None, max_length=32, index=True)
    tz: str | None = Field(default=None, max_length=64)
    name: str | None = None
    found: bool = True
    fetched_at: datetime = _utc_column(nullable=False)


class RepStatus(SQLModel, table=True):
    __tablename__ = "rep_status"

    email: str = Field(primary_key=True, max_length=320)
    away: bool = False
    updated_at: datetime = _utc_column(nullable=False)
    away_until: datetime | None = _utc_column()  # away ends by itself then (None: until back)


class DigestRun(SQLModel, table=True):
    """One row per ISO week: the primary key makes the weekly digest once-only."""

    __tablename__ = "digest_run"

    week: str = Field(primary_key=True, max_length=10)
    claimed_at: datetime = _utc_column(nullable=False)
    posted_at: datetime | None = _utc_column()


class ReviewRun(SQLModel, table=True):
    """One row per review due date: the primary key makes the owners' reminder once-only."""

    __tablename__ = "review_run"

    due: str = Field(primary_key=True, max_length=10)  # ISO date, "2027-01-30"
    claimed_at: datetime = _utc_column(nullable=False)


class CrmCursor(SQLModel, table=True):
    """How far polling a CRM got: records changed at or after `cursor_ms` are still to
    read, except those in `seen_ids` (changed at exactly `cursor_ms`, already handed to
    intake), so a re-poll of an unchanged record hands nothing over again. The lease
    lets one process poll at a time (the CRM's rate limit is the portal's, shared)."""

    __tablename__ = "crm_cursor"

    source: str = Field(primary_key=True, max_length=32)  # "hubspot"
    cursor_ms: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    seen_ids: list[str] = _json_column(list)
    updated_at: datetime = _utc_column(nullable=False)
    lease_owner: str | None = Field(default=None, max_length=32)
    lease_until: datetime | None = _utc_column()


class DefinitionState:
    """A stored definition's state. A proposal ends approved (then `active`, later
    `superseded` by the next), `declined`, or `withdrawn` (a newer proposal took its place)."""

    ACTIVE = "active"
    SUPERSEDED = "superseded"
    PROPOSED = "proposed"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


class DefinitionVersion(SQLModel, table=True):
    """Every definition Handoff has been asked to judge with: the active one, the ones it
    replaced, and proposals. `id` is the proposal's number; `number` the version number,
    given when it becomes active (the first: the file's own `version`)."""

    __tablename__ = "definition_version"
    __table_args__ = (
        # One active version, whatever the number of processes approving at once.
        Index(
            "ux_definition_one_active",
            "state",
            unique=True,
            sqlite_where=text("state = 'active'"),
            postgresql_where=text("state = 'active'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: int | None = Field(default=None, unique=True)
    fingerprint: str = Field(max_length=16, index=True)  # Definition.fingerprint: the content
    yaml_text: str
    state: str = Field(max_length=16, index=True)
    created_at: datetime = _utc_column(nullable=False)
    proposed_by: str = Field(max_length=320)
    note: str | None = None
    # How it became active: bootstrap (the file, on an empty database), approved, forced.
    activated_how: str | None = Field(default=None, max_length=16)
    activated_at: datetime | None = _utc_column()
    activated_by: str | None = None  # who approved (both owners) or forced it
    why: str | None = None  # forced: the reason given
    marketing_approved_by: str | None = Field(default=None, max_length=64)
    marketing_approved_at: datetime | None = _utc_column()
    sales_approved_by: str | None = Field(default=None, max_length=64)
    sales_approved_at: datetime | None = _utc_column()
    ended_by: str | None = Field(default=None, max_length=64)  # who declined
    ended_at: datetime | None = _utc_column()
    end_note: str | None = None  # the decline's note, or "superseded by #N"
    backtest: dict[str, Any] = _json_column()  # the summary the owners were shown


class ProposalMessage(SQLModel, table=True):
    """Where each owner's DM about a proposal went, so it can be updated in place."""

    __tablename__ = "proposal_message"

    proposal_id: int = Field(foreign_key="definition_version.id", primary_key=True)
    role: str = Field(max_length=16, primary_key=True)  # marketing | sales
    email: str = Field(max_length=320)
    channel: str | None = Field(default=None, max_length=32)
    ts: str | None = Field(default=None, max_length=32)


class SchemaInfo(SQLModel, table=True):
    __tablename__ = "schema_info"

    id: int = Field(default=1, primary_key=True)
    version: int


class Heartbeat(SQLModel, table=True):
    """One row the health check rewrites: proof that a commit still reaches the disk."""

    __tablename__ = "heartbeat"

    id: int = Field(default=1, primary_key=True)
    beat: int = 0
