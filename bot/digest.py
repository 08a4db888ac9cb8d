"""The weekly alignment digest: what sales accepted, rejected and why, for marketing.

Every figure is an SQL aggregate over the week's handoffs, so the digest costs
the same on a thousand leads as on a million. It is posted once per week: the
week's row in `digest_run` is the claim (a primary key, so with several
processes only one insert wins) and the message goes through the outbox in the
same transaction. A week missed while the app was down is sent on the next start.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot import clock, figures
from bot.blocks.digest import REJECTIONS, digest_blocks, digest_fallback
from bot.definition import Definition
from bot.delivery import sender
from bot.services import Services
from store import disputes as dispute_store
from store import outbox
from store.db import Database
from store.models import DigestRun, Handoff, HandoffStatus, Lead, Outbox

logger = logging.getLogger(__name__)

DIGEST = "digest"
TREND_WEEKS = 8
PERIOD_WEEKS = {"year": 52.0, "quarter": 13.0, "month": 52.0 / 12}
SPARKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    label: str  # ISO week of the window, "2026-W47"

    def before(self) -> Window:
        span = self.end - self.start
        return Window(self.start - span, self.start, f"before {self.label}")


def _iso_week(moment: datetime | date) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _week_of(start: datetime, end: datetime, zone: tzinfo) -> str:
    """The ISO week (in `zone`) holding most of [start, end): the one its midpoint is in."""
    return _iso_week((start + (end - start) / 2).astimezone(zone))


def window_for(definition: Definition, now: datetime, week: str | None = None) -> Window:
    """The 7 days before `now`, or the named ISO week in the definition's time zone."""
    if week is None:
        start = now - timedelta(days=7)
        return Window(start, now, _week_of(start, now, definition.timezone))
    try:
        monday = date.fromisocalendar(int(week[:4]), int(week.split("W")[1]), 1)
    except (ValueError, IndexError):
        raise ValueError(f"expected an ISO week like 2026-W47, got '{week}'") from None
    start = datetime.combine(monday, datetime.min.time(), tzinfo=definition.timezone)
    end = datetime.combine(
        monday + timedelta(days=7), datetime.min.time(), tzinfo=definition.timezone
    )
    return Window(start.astimezone(UTC), end.astimezone(UTC), week)


@dataclass
class ReasonLine:
    reason_id: str
    label: str
    criterion: str | None
    count: int
    examples: list[tuple[str, str, str]]  # company, source, campaign
    example_ids: list[int] = field(default_factory=list)  # their handoffs: disputable


@dataclass
class GroupLine:
    name: str
    handed_off: int
    accepted: int
    rejected: int
    top_reason: str | None

    @property
    def accept_rate(self) -> float | None:
        decided = self.accepted + self.rejected
        return self.accepted / decided if decided else None


@dataclass
class Digest:
    window: Window
    handed_off: int
    accepted: int
    rejected: int
    still_open: int
    accept_rate: float | None
    previous_accept_rate: float | None
    reasons: list[ReasonLine]
    by_source: list[GroupLine]
    by_campaign: list[GroupLine]
    median_hours: float | None
    p90_hours: float | None
    breaches: list[tuple[str, int]]
    trend: list[tuple[str, int, int]]  # week label, handed off, accepted
    target: list[str] = field(default_factory=list)
    disputes: tuple[int, int, int] = (0, 0, 0)  # disputed, reopened, upheld (bot/disputes.py)
    definition_version: int | None = None  # the version active when it was built


def _count(*where: Any) -> Any:
    return select(func.count()).select_from(Handoff).where(*where)


_TIMED = Handoff.business_seconds.is_not(None)


def _timed(session: Any, window: Window) -> int:
    """Decisions in the window that carry a business time (the percentiles' population)."""
    return int(session.scalar(_count(*figures.decided_in(window.start, window.end), _TIMED)) or 0)


def _percentile(session: Any, window: Window, fraction: float, timed: int) -> float | None:
    """A percentile of business time to decision among `timed` decisions, by ORDER BY ...
    OFFSET in SQL (a sort of the week's index entries; no values come back but one)."""
    if not timed:
        return None
    seconds = session.scalar(
        select(Handoff.business_seconds)
        .where(*figures.decided_in(window.start, window.end), _TIMED)
        .order_by(Handoff.business_seconds)
        .offset(min(timed - 1, int(fraction * timed)))
        .limit(1)
    )
    return seconds / 3600


def _trend(session: Any, definition: Definition, window: Window) -> list[tuple[str, int, int]]:
    """Handed off and accepted (bot/figures.py) in the window and each of the weeks before.

    One statement of range counts, each answered by a seek on a covering index: cheaper
    than one pass bucketing every row of the eight weeks, and exact when a week in the
    definition's zone is an hour longer or shorter than seven days (DST).
    """
    weeks = []
    for weeks_back in range(TREND_WEEKS - 1, -1, -1):
        shift = timedelta(days=7 * weeks_back)
        start, end = window.start - shift, window.end - shift
        weeks.append(Window(start, end, _week_of(start, end, definition.timezone)))
    counts = session.execute(
        select(
            *(
                query.scalar_subquery()
                for week in weeks
                for query in (
                    _count(*figures.handed_off_in(week.start, week.end)),
                    _count(*figures.decided_in(week.start, week.end, (HandoffStatus.ACCEPTED,))),
                )
            )
        )
    ).one()
    return [
        (week.label, int(counts[2 * i]), int(counts[2 * i + 1])) for i, week in enumerate(weeks)
    ]


def _reasons(
    session: Any, definition: Definition, window: Window, rejections: Counter[str]
) -> list[ReasonLine]:
    """The week's rejections by reason, most given first, each with its first examples."""
    rejected_in_window = figures.decided_in(window.start, window.end, (HandoffStatus.REJECTED,))
    reasons = []
    for reason_id, count in sorted(rejections.items(), key=lambda item: (-item[1], item[0])):
        examples = session.execute(
            select(Lead.company, Lead.source, Lead.campaign, Handoff.id)
            .join(Handoff, Handoff.lead_id == Lead.id)
            .where(*rejected_in_window, Handoff.reason_id == (reason_id or None))
            .order_by(Handoff.decided_at, Handoff.id)
            .limit(3)
        ).all()
        reason = definition.reason(reason_id)
        reasons.append(
            ReasonLine(
                reason_id,
                reason.label if reason else reason_id,
                definition.criterion_label(reason.criterion) if reason else None,
                count,
                [(c or "—", s or "—", m or "—") for c, s, m, _ in examples],
                [handoff_id for *_, handoff_id in examples],
            )
        )
    return reasons


def _groups(
    definition: Definition, groups: dict[tuple[Any, ...], figures.Figures], by: int
) -> list[GroupLine]:
    """Fold figures per (source, campaign) into one line per source (`by` 0) or campaign
    (`by` 1), busiest first; the top rejection breaks ties by id."""
    folded: dict[Any, figures.Figures] = {}
    for key, counted in groups.items():
        folded.setdefault(key[by], figures.Figures()).add(counted)
    lines = []
    for name, counted in folded.items():
        top_reason = None
        if counted.rejections:
            reason_id = min(counted.rejections.items(), key=lambda item: (-item[1], item[0]))[0]
            reason = definition.reason(reason_id)
            top_reason = reason.label if reason else None
        lines.append(
            GroupLine(
                name or "(none)", counted.handed_off, counted.accepted, counted.rejected, top_reason
            )
        )
    return sorted(lines, key=lambda line: (-line.handed_off, line.name))


def build_digest(db: Database, definition: Definition, window: Window) -> Digest:
    """The digest's figures, each as bot/figures.py defines it (so `handoff report` over
    the same window agrees), and the digest's own: speed, trend, the target."""
    start, end = window.start, window.end
    before = window.before()
    with db.session() as session:
        trend = _trend(session, definition, window)
        by_source_and_campaign = figures.tally(
            session,
            start,
            end,
            ("source", "campaign"),
            parts=(figures.HANDED_OFF, figures.DECISIONS),
        )
        totals = figures.total(by_source_and_campaign.values())
        [waiting] = figures.tally(session, start, end, parts=(figures.OPEN,)).values()
        [previous] = figures.tally(
            session, before.start, before.end, parts=(figures.DECISIONS,)
        ).values()
        by_rep = figures.tally(session, start, end, ("rep",), parts=(figures.SLA,))
        timed = _timed(session, window)
        median = _percentile(session, window, 0.5, timed)
        p90 = _percentile(session, window, 0.9, timed)
        reasons = _reasons(session, definition, window, totals.rejections)
        target = _target_lines(session, definition, window, trend)
        disputes = dispute_store.counts(session, start, end)
    breaches = sorted(
        ((rep, counted.sla_breached) for (rep,), counted in by_rep.items() if counted.sla_breached),
        key=lambda line: (-line[1], line[0]),
    )
    return Digest(
        window,
        totals.handed_off,
        totals.accepted,
        totals.rejected,
        waiting.open,
        totals.accept_rate,
        previous.accept_rate,
        reasons,
        _groups(definition, by_source_and_campaign, 0),
        _groups(definition, by_source_and_campaign, 1),
        median,
        p90,
        breaches,
        trend,
        target,
        disputes,
        definition.version,
    )


def _target_lines(
    session: Any, definition: Definition, window: Window, trend: list[tuple[str, int, int]]
) -> list[str]:
    """Work the revenue target backwards through the measured conversion rates."""
    target = definition.target
    if target is None:
        return []
    since = window.end - timedelta(days=7 * TREND_WEEKS)
    leads = (
        session.scalar(
            select(func.count())
            .select_from(Lead)
            .where(Lead.created_at >= since, Lead.created_at < window.end)
        )
        or 0
    )
    accepted = sum(accepted for _, _, accepted in trend)
    wins = target.revenue / target.deal_value
    accepted_needed = wins / target.win_rate
    lines = [
        f"{target.revenue:,.0f} / {target.deal_value:,.0f} = {wins:,.0f} wins a "
        f"{target.period}; at a {target.win_rate:.0%} win rate that is "
        f"{accepted_needed:,.0f} accepted leads"
    ]
    if not leads or not accepted:
        lines.append("Not enough history yet to measure how many leads become accepted leads.")
        return lines
    lead_rate = accepted / leads
    leads_needed = accepted_needed / lead_rate
    per_week = leads_needed / PERIOD_WEEKS[target.period]
    this_week = (
        session.scalar(
            select(func.count())
            .select_from(Lead)
            .where(Lead.created_at >= window.start, Lead.created_at < window.end)
        )
        or 0
    )
    lines.append(
        f"at the measured {lead_rate:.1%} of leads accepted (last {TREND_WEEKS} weeks) "
        f"that is about {leads_needed:,.0f} leads, {per_week:,.0f} a week"
    )
    lines.append(f"this week: {this_week:,} leads, {this_week / per_week:.0%} of that pace")
    return lines


# --- rendering ------------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


def sparkline(values: list[int]) -> str:
    top = max(values) if values else 0
    if not top:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, round(v / top * (len(SPARKS) - 1)))] for v in values)


def digest_sections(digest: Digest, *, examples: bool = True) -> list[tuple[str, str]]:
    """(title, body) pairs: the terminal prints them, the Slack message renders them
    (without the rejection examples, which it shows with their Dispute buttons)."""
    change = ""
    if digest.accept_rate is not None and digest.previous_accept_rate is not None:
        points = (digest.accept_rate - digest.previous_accept_rate) * 100
        change = f" ({points:+.0f} pts on the week before, {_pct(digest.previous_accept_rate)})"
    sections = [
        (
            f"Handoff alignment digest, {digest.window.label}",
            f"Handed off {digest.handed_off} · accepted {digest.accepted} · rejected "
            f"{digest.rejected} · still open {digest.still_open}\n"
            f"Accept rate {_pct(digest.accept_rate)}{change}"
            + _dispute_line(digest)
            + (
                f"\nDefinition version {digest.definition_version}"
                if digest.definition_version is not None
                else ""
            ),
        )
    ]
    if digest.reasons:
        lines = []
        for rank, reason in enumerate(digest.reasons, 1):
            points = f" → {reason.criterion}" if reason.criterion else ""
            lines.append(f"{rank}. {reason.label} ({reason.count}){points}")
            if examples:
                lines += [f"     e.g. {c} · {s} · {m}" for c, s, m in reason.examples]
        sections.append((REJECTIONS, "\n".join(lines)))
    for title, groups in (("By source", digest.by_source), ("By campaign", digest.by_campaign)):
        if groups:
            sections.append(
                (
                    title,
                    "\n".join(
                        f"{g.name}: {g.handed_off} handed off, {_pct(g.accept_rate)} accepted"
                        + (f", top rejection: {g.top_reason}" if g.top_reason else "")
                        for g in groups[:15]
                    ),
                )
            )
    speed = "no decisions this week"
    if digest.median_hours is not None:
        speed = (
            f"median {digest.median_hours:.1f} business hours to a decision, "
            f"p90 {digest.p90_hours:.1f}"
        )
    breaches = ", ".join(f"{owner} {count}" for owner, count in digest.breaches) or "none"
    sections.append(("Speed to lead", f"{speed}\nSLA breaches: {breaches}"))
    handed = [h for _, h, _ in digest.trend]
    accepted = [a for _, _, a in digest.trend]
    sections.append(
        (
            f"Last {TREND_WEEKS} weeks",
            f"handed off {sparkline(handed)} "
            f"{handed[-1] if handed else 0}\naccepted   {sparkline(accepted)} "
            f"{accepted[-1] if accepted else 0}",
        )
    )
    if digest.target:
        sections.append(("What the target needs", "\n".join(digest.target)))
    return sections


def _dispute_line(digest: Digest) -> str:
    disputed, reopened, upheld = digest.disputes
    if not (disputed or reopened or upheld):
        return ""
    return f"\nDisputed: {disputed}, reopened: {reopened}, upheld: {upheld}"


def dispute_examples(digest: Digest) -> list[tuple[str, int]]:
    """Each rejection example as (text, handoff id), for its Dispute button."""
    return [
        (f"{company} · {source} · {campaign} — {reason.label}", handoff_id)
        for reason in digest.reasons
        for (company, source, campaign), handoff_id in zip(
            reason.examples, reason.example_ids, strict=False
        )
    ]


def digest_message(digest: Digest) -> tuple[Any, list[Any]]:
    """The Slack message (fallback text, blocks) of a digest: the sections, and each
    rejection example with a Dispute button for marketing."""
    blocks = digest_blocks(digest_sections(digest, examples=False), dispute_examples(digest))
    return digest_fallback(digest_sections(digest)), blocks


def digest_text(digest: Digest) -> str:
    """The digest as plain text, for the terminal (Slack gets `digest_fallback`)."""
    return "\n\n".join(f"{title}\n{body}" for title, body in digest_sections(digest))


# --- posting once a week --------------------------------------------------------------------


def post_week(services: Services, window: Window, *, now: datetime) -> bool:
    """Claim the week and queue its digest; False when another process already has."""
    digest = build_digest(services.db, services.definition, window)
    text, blocks = digest_message(digest)
    try:
        with services.db.transaction() as session:
            session.add(DigestRun(week=window.label, claimed_at=now))
            session.flush()
            outbox.enqueue(
                session,
                kind=DIGEST,
                dedupe_key=f"digest:{window.label}",
                now=now,
                payload={
                    "week": window.label,
                    "text": text,
                    "blocks": blocks,
                },
            )
    except IntegrityError:
        return False
    services.delivery.wake()
    return True


def run_scheduled(services: Services, *, now: datetime | None = None) -> bool:
    """The cron job: the 7 days before this slot."""
    now = now or clock.now()
    slot = services.definition.digest.schedule.last_before(now, services.definition.timezone)
    return post_week(services, window_for(services.definition, slot), now=now)


def catch_up(services: Services, *, now: datetime | None = None) -> bool:
    """On start: post the latest slot's digest if no process posted it (and Handoff was
    already handing off leads then; a fresh install does not post an empty week)."""
    now = now or clock.now()
    slot = services.definition.digest.schedule.last_before(now, services.definition.timezone)
    with services.db.session() as session:
        running_before = session.scalar(
            select(Handoff.id).where(Handoff.assigned_at < slot).limit(1)
        )
    return running_before is not None and run_scheduled(services, now=now)


@sender(DIGEST)
def send_digest(services: Services, item: Outbox) -> dict[str, Any]:
    response = services.slack.chat_postMessage(
        channel=services.definition.digest.channel,
        text=item.payload["text"],
        blocks=item.payload["blocks"],
    )
    with services.db.transaction() as session:
        run = session.get(DigestRun, item.payload["week"])
        if run is not None:
            run.posted_at = clock.now()
    return {"channel": response["channel"], "ts": response["ts"]}
