"""Review reminders: every `review_every_days`, both owners of the definition hear that it
is due for review, with what happened since the last one.

Due dates count from `reviewed_on` (else from the day the first lead arrived) in the
definition's time zone. A due date is claimed by its row in `review_run` (a primary
key, so with several processes one insert wins) and the owners' DMs are queued in the
outbox in the same transaction. The scheduler checks at start and every hour, so a
date that passed while the app was down is sent on the next start (the latest only).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot import clock, figures
from bot.blocks.review import review_blocks, review_text
from bot.calibrate import SHOWN, calibrate
from bot.cards import post_to_user
from bot.definition import Definition
from bot.delivery import sender
from bot.digest import Window, build_digest
from bot.send_failures import Permanent
from bot.services import Services
from bot.versions import file_text
from store import outbox
from store.db import Database
from store.models import Handoff, HandoffStatus, Lead, Outbox, ReviewRun

logger = logging.getLogger(__name__)

REVIEW = "review_reminder"
EXAMPLES = 3  # rejected leads shown per criterion


@dataclass(frozen=True)
class CriterionRejections:
    """Rejections whose reasons point at one criterion (None: at no criterion)."""

    criterion: str | None  # the criterion's label
    count: int
    reasons: tuple[tuple[str, int], ...]  # (reason label, count), most first
    examples: tuple[tuple[str | None, str | None], ...] = ()  # (name, company), first rejected


@dataclass(frozen=True)
class Review:
    """What the owners are told: the definition is due, and the evidence since `since`."""

    version: int
    due: date
    since: date
    recorded: bool  # `since` is the recorded `reviewed_on`, not the first lead's day
    every_days: int
    handed_off: int
    accepted: int
    rejected: int
    accept_rate: float | None
    by_criterion: tuple[CriterionRejections, ...]
    previous_accept_rate: float | None = None  # the period of the same length before
    # calibration: (change, its trade), best first; None when the definition's text is not
    # at hand to edit (a definition built in memory)
    suggestions: tuple[tuple[str, str], ...] | None = None
    minimum: int = 0  # rejections a suggestion needs behind it
    on_demand: bool = False  # asked for now, not a due date


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def last_review(db: Database, definition: Definition) -> date | None:
    """`reviewed_on`, else the day the first lead arrived (None before any lead)."""
    if definition.reviewed_on is not None:
        return definition.reviewed_on
    with db.session() as session:
        first = session.scalar(select(func.min(Lead.created_at)))
    return first.astimezone(definition.timezone).date() if first else None


def due_date(definition: Definition, since: date, now: datetime) -> date | None:
    """The latest review date on or before today (in the definition's zone), if any."""
    today = now.astimezone(definition.timezone).date()
    periods = (today - since).days // definition.review_every_days
    if periods < 1:
        return None
    return since + timedelta(days=periods * definition.review_every_days)


def _examples(
    session: Any, reason_ids: Sequence[str], start: datetime, end: datetime
) -> tuple[tuple[str | None, str | None], ...]:
    """The first leads rejected for these reasons in the period: (name, company)."""
    rows = session.execute(
        select(Lead.name, Lead.company)
        .join(Handoff, Handoff.lead_id == Lead.id)
        .where(
            *figures.decided_in(start, end, (HandoffStatus.REJECTED,)),
            Handoff.reason_id.in_(reason_ids),
        )
        .order_by(Handoff.decided_at, Handoff.id)
        .limit(EXAMPLES)
    )
    return tuple((name, company) for name, company in rows)


def gather(
    db: Database,
    definition: Definition,
    since: date,
    due: date,
    now: datetime,
    *,
    on_demand: bool = False,
    text: str | None = None,
) -> Review:
    """The evidence since the last review, counted as the digest counts it, with examples
    of the rejections and the calibration's best suggestions for the same period.
    `text`: the definition's YAML, which a suggestion edits (default: its file)."""
    zone = definition.timezone
    start = _start_of(since, zone)
    digest = build_digest(db, definition, Window(start, now, f"since {since}"))
    grouped: dict[str | None, list[tuple[str, int]]] = defaultdict(list)
    reason_ids: dict[str | None, list[str]] = defaultdict(list)
    for line in digest.reasons:
        grouped[line.criterion].append((line.label, line.count))
        reason_ids[line.criterion].append(line.reason_id)
    with db.session() as session:
        by_criterion = sorted(
            (
                CriterionRejections(
                    criterion,
                    sum(count for _, count in reasons),
                    tuple(reasons),
                    _examples(session, reason_ids[criterion], start, now),
                )
                for criterion, reasons in grouped.items()
            ),
            key=lambda group: (-group.count, group.criterion is None, group.criterion or ""),
        )
    suggestions: tuple[tuple[str, str], ...] | None = None
    minimum = 0
    text = text if text is not None else file_text(definition)
    if text is not None:
        calibration = calibrate(db, definition, text, start=start, end=now)
        minimum = calibration.minimum
        suggestions = tuple((s.change, s.summary) for s in calibration.suggestions[:SHOWN])
    return Review(
        version=definition.version,
        due=due,
        since=since,
        recorded=definition.reviewed_on is not None,
        every_days=definition.review_every_days,
        handed_off=digest.handed_off,
        accepted=digest.accepted,
        rejected=digest.rejected,
        accept_rate=digest.accept_rate,
        by_criterion=tuple(by_criterion),
        previous_accept_rate=digest.previous_accept_rate,
        suggestions=suggestions,
        minimum=minimum,
        on_demand=on_demand,
    )


def run_due(services: Services, *, now: datetime | None = None) -> bool:
    """The scheduler's job: queue the owners' reminder for the latest due date, once.

    Nothing before Handoff stored its first lead ahead of that date: a fresh install
    has no evidence to show, and its owners have just written the definition."""
    now = now or clock.now()
    definition = services.definition
    since = last_review(services.db, definition)
    due = due_date(definition, since, now) if since else None
    if since is None or due is None:
        return False
    with services.db.session() as session:
        if session.get(ReviewRun, due.isoformat()) is not None:
            return False
        in_use = session.scalar(
            select(Lead.id).where(Lead.created_at < _start_of(due, definition.timezone)).limit(1)
        )
    if in_use is None:
        return False
    review = gather(services.db, definition, since, due, now, text=services.definitions.text())
    return post_review(services, review, now=now)


def _queue(services: Services, session: Any, review: Review, *, key: str, now: datetime) -> None:
    owners = services.definition.owners
    recipients = {owners.marketing: "marketing", owners.sales: "sales"}  # one DM if one person
    text, blocks = review_text(review), review_blocks(review)
    for email, role in recipients.items():
        outbox.enqueue(
            session,
            kind=REVIEW,
            dedupe_key=f"review:{key}:{role}",
            now=now,
            payload={"email": email, "text": text, "blocks": blocks},
        )


def post_review(services: Services, review: Review, *, now: datetime) -> bool:
    """Claim the due date and queue a DM to each owner; False when already claimed."""
    try:
        with services.db.transaction() as session:
            session.add(ReviewRun(due=review.due.isoformat(), claimed_at=now))
            session.flush()
            _queue(services, session, review, key=review.due.isoformat(), now=now)
    except IntegrityError:
        return False
    logger.info("definition review due %s: reminders queued for both owners", review.due)
    services.delivery.wake()
    return True


def send_review_now(services: Services, *, now: datetime | None = None) -> Review | None:
    """On demand (`handoff definition review`): queue both owners the evidence since the
    last review, now, whether or not a review is due; the schedule is left as it is.
    None when no lead has arrived yet (there is no evidence to show)."""
    now = now or clock.now()
    definition = services.definition
    since = last_review(services.db, definition)
    if since is None:
        return None
    today = now.astimezone(definition.timezone).date()
    review = gather(
        services.db, definition, since, today, now, on_demand=True, text=services.definitions.text()
    )
    with services.db.transaction() as session:
        _queue(services, session, review, key=f"now:{now.isoformat()}", now=now)
    logger.info("definition review asked for: evidence queued for both owners")
    services.delivery.wake()
    return review


@sender(REVIEW)
def send_review(services: Services, item: Outbox) -> dict[str, Any]:
    email = item.payload["email"]
    person = services.directory.by_email(email)
    if person is None:
        raise Permanent(f"definition owner {email} not found in Slack")
    return post_to_user(
        services, person.user_id, text=item.payload["text"], blocks=item.payload["blocks"]
    )
