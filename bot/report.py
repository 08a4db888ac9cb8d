"""`handoff report`: the one set of numbers marketing, sales and operations quote.

Grouped SQL aggregates over handoffs assigned in the period (and, for lead
outcomes that never reached sales, over leads created in it).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from store.db import Database
from store.models import Handoff, HandoffStatus, Lead, LeadStatus

GROUPS = ("source", "campaign", "rep", "reason")
COLUMNS = (
    "group",
    "handed_off",
    "accepted",
    "rejected",
    "open",
    "accept_rate",
    "nurture",
    "missing_context",
    "sla_met",
    "sla_breached",
    "sla_compliance",
)


@dataclass
class ReportRow:
    group: str
    handed_off: int = 0
    accepted: int = 0
    rejected: int = 0
    open: int = 0
    nurture: int = 0
    missing_context: int = 0
    sla_met: int = 0
    sla_breached: int = 0

    @property
    def accept_rate(self) -> str:
        decided = self.accepted + self.rejected
        return f"{self.accepted / decided:.0%}" if decided else "—"

    @property
    def sla_compliance(self) -> str:
        measured = self.sla_met + self.sla_breached
        return f"{self.sla_met / measured:.0%}" if measured else "—"

    def values(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "accept_rate": self.accept_rate,
            "sla_compliance": self.sla_compliance,
        }


def _key(by: str | None) -> Any:
    return {
        "source": Lead.source,
        "campaign": Lead.campaign,
        "rep": Handoff.owner_email,
        "reason": Handoff.reason_id,
    }.get(by or "")


def build_report(db: Database, start: datetime, end: datetime, by: str | None) -> list[ReportRow]:
    key = _key(by)
    group_column = key if key is not None else func.min("all")
    rows: dict[str, ReportRow] = {}
    handoffs = (
        select(
            group_column,
            func.count(),
            func.count().filter(Handoff.status == HandoffStatus.ACCEPTED),
            func.count().filter(Handoff.status == HandoffStatus.REJECTED),
            func.count().filter(Handoff.status == HandoffStatus.OPEN),
            func.count().filter(Handoff.breached.is_(False)),
            func.count().filter(Handoff.breached.is_(True)),
        )
        .join(Lead, Lead.id == Handoff.lead_id)
        .where(
            Handoff.assigned_at >= start,
            Handoff.assigned_at < end,
            Handoff.status != HandoffStatus.REASSIGNED,
        )
    )
    if key is not None:
        handoffs = handoffs.group_by(key)
    with db.session() as session:
        for name, handed, accepted, rejected, still_open, met, breached in session.execute(
            handoffs
        ):
            rows[name or "(none)"] = ReportRow(
                name or "(none)", handed, accepted, rejected, still_open, 0, 0, met, breached
            )
        if by in (None, "source", "campaign"):
            leads = select(
                key if key is not None else func.min("all"), Lead.status, func.count()
            ).where(
                Lead.created_at >= start,
                Lead.created_at < end,
                Lead.status.in_([LeadStatus.NURTURE, LeadStatus.MISSING_CONTEXT]),
            )
            leads = (
                leads.group_by(key, Lead.status) if key is not None else leads.group_by(Lead.status)
            )
            for name, status, count in session.execute(leads):
                row = rows.setdefault(name or "(none)", ReportRow(name or "(none)"))
                setattr(row, status, count)
    if key is None and not rows:
        rows["all"] = ReportRow("all")
    return sorted(rows.values(), key=lambda r: (-r.handed_off, r.group))


def render(rows: list[ReportRow], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([row.values() for row in rows], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.values()[c] for c in COLUMNS})
        return out.getvalue().rstrip("\n")
    widths = [max(len(c), *(len(str(r.values()[c])) for r in rows)) for c in COLUMNS]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    for row in rows:
        values = row.values()
        lines.append(
            "  ".join(str(values[c]).ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
        )
    return "\n".join(line.rstrip() for line in lines)
