"""`handoff report`: the period's figures (bot/figures.py), whole or grouped, as a table,
CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.figures import LEAD_GROUPS, LEADS, PARTS, Figures, tally
from store import leads as lead_store
from store.db import Database
from store.models import LeadStatus

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
RATES = ("accept_rate", "sla_compliance")


LEAD_FIGURES = ("nurture", "missing_context")  # leads sales never had: no rep, no reason


@dataclass
class ReportRow:
    group: str
    figures: Figures
    leads: bool = True  # False: grouped by rep or reason, which lead figures have not

    def values(self) -> dict[str, Any]:
        """Every column; a rate is a fraction, None when there is nothing to divide, and a
        lead figure None where the grouping does not apply to it."""
        values = {column: getattr(self.figures, column) for column in COLUMNS[1:]}
        if not self.leads:
            values |= dict.fromkeys(LEAD_FIGURES)
        return {"group": self.group} | values


def build_report(db: Database, start: datetime, end: datetime, by: str | None) -> list[ReportRow]:
    leads = by is None or by in LEAD_GROUPS
    parts = PARTS if leads else tuple(part for part in PARTS if part != LEADS)
    with db.session() as session:
        groups = tally(session, start, end, (by,) if by else (), parts=parts)
    rows = [
        ReportRow("all" if not key else "(none)" if key[0] is None else key[0], figures, leads)
        for key, figures in groups.items()
    ]
    return sorted(rows, key=lambda row: (-row.figures.handed_off, row.group))


def _formatted(row: ReportRow, no_data: str | None) -> dict[str, Any]:
    """Rates as percentages; `no_data` for a rate without data or a figure that does not
    apply."""
    values = row.values()
    for column, value in values.items():
        if value is None:
            values[column] = no_data
        elif column in RATES:
            values[column] = f"{value:.0%}"
    return values


# OWASP "CSV Injection": a spreadsheet runs a cell that starts with one of these as a
# formula, also after leading whitespace, which it may trim.
_FORMULA_START = ("=", "+", "-", "@")
_CONTROL_START = ("\t", "\r", "\n", "\0")


def spreadsheet_cell(value: Any) -> Any:
    """The value, with a leading `'` when a spreadsheet would run it as a formula."""
    if isinstance(value, str) and (
        value.startswith(_CONTROL_START) or value.lstrip().startswith(_FORMULA_START)
    ):
        return "'" + value
    return value


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """CSV for a spreadsheet: every cell made inert by `spreadsheet_cell`. Every CSV
    Handoff writes goes through here."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([spreadsheet_cell(column) for column in columns])
    for row in rows:
        writer.writerow([spreadsheet_cell(row[column]) for column in columns])
    return out.getvalue().rstrip("\n")


def render(rows: list[ReportRow], fmt: str) -> str:
    """A rate without data (or a figure the grouping does not apply to) is null in JSON,
    empty in CSV and "—" in the table; a rate is a percentage string."""
    if fmt == "json":
        return json.dumps([_formatted(row, None) for row in rows], indent=2)
    if fmt == "csv":
        return csv_text(COLUMNS, (_formatted(row, "") for row in rows))
    table = [_formatted(row, "—") for row in rows]
    widths = [max([len(c), *(len(str(r[c])) for r in table)]) for c in COLUMNS]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    for values in table:
        lines.append(
            "  ".join(str(values[c]).ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
        )
    return "\n".join(line.rstrip() for line in lines)


def cooling_down_lines(db: Database, now: datetime) -> list[str]:
    """The recycled leads that may not come back yet, and when they may (the table's
    footer; CSV and JSON keep their one-row-per-group shape)."""
    with db.session() as session:
        leads = lead_store.cooling_down(session, now)
    if not leads:
        return []
    lines = ["", f"Recycled, cooling down ({len(leads)}{'+' if len(leads) == 50 else ''}):"]
    for lead in leads:
        assert lead.returns_after is not None
        waiting = ", qualified again and waiting" if lead.status == LeadStatus.COOLING_DOWN else ""
        lines.append(
            f"  {lead.external_id}  {lead.company or '—'}  may return after "
            f"{lead.returns_after.strftime('%Y-%m-%d %H:%M UTC')}{waiting}"
        )
    return lines
