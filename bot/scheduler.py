"""APScheduler ticks the background sweeps; the timers themselves live in the database.

In-memory job store and fixed job ids: each process has its own scheduler and
none relies on another's (APScheduler's docs: never share a job store). What a
tick does is claimed row by row in the database, so several processes are safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot import clock, digest, reminders, review
from bot.crm.webhook import ingest_records
from bot.definition import Definition
from bot.hubspot.poll import poll_job
from bot.intake import Intake
from bot.salesforce import poll as salesforce
from bot.services import Services

logger = logging.getLogger(__name__)

SLA_SWEEP_JOB = "sla-sweep"
DIGEST_JOB = "weekly-digest"
DIGEST_CATCH_UP_JOB = "weekly-digest-catch-up"
HUBSPOT_POLL_JOB = "hubspot-poll"
SALESFORCE_POLL_JOB = "salesforce-poll"
REVIEW_JOB = "definition-review"
REVIEW_CHECK_HOURS = 1


def digest_trigger(services: Services) -> CronTrigger:
    """The digest's weekly slot, in the definition's own time zone (DST included)."""
    schedule = services.definition.digest.schedule
    return CronTrigger(
        day_of_week=schedule.weekday,
        hour=schedule.hour,
        minute=schedule.minute,
        timezone=services.definition.timezone,
    )


def sweep(services: Services) -> int:
    """The sweep job: first follow the active definition (another process may have
    activated a new version), then fire the SLA timers that fell due."""
    try:
        services.definitions.refresh()
    except Exception:  # the database being down must not stop the timers' own retries
        logger.exception("could not check the active definition version")
    return reminders.sweep(services)


def _reschedule_digest(
    scheduler: BackgroundScheduler, services: Services, old: Definition, new: Definition
) -> None:
    """A new version that moves the digest's slot or time zone moves the cron job."""
    if old.digest.schedule == new.digest.schedule and old.timezone == new.timezone:
        return
    if scheduler.get_job(DIGEST_JOB) is not None:
        scheduler.reschedule_job(DIGEST_JOB, trigger=digest_trigger(services))
        logger.info("weekly digest rescheduled for definition version %s", new.version)


def build_scheduler(services: Services) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        timezone="UTC",
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    now = clock.now()
    # First sweep at start: what fell due while the process was down goes out now.
    scheduler.add_job(
        sweep,
        IntervalTrigger(seconds=services.settings.handoff_sweep_seconds),
        id=SLA_SWEEP_JOB,
        args=[services],
        next_run_time=now,
        replace_existing=True,
    )
    scheduler.add_job(
        digest.run_scheduled,
        digest_trigger(services),
        id=DIGEST_JOB,
        args=[services],
        replace_existing=True,
    )
    services.definitions.on_switch(partial(_reschedule_digest, scheduler, services))
    scheduler.add_job(
        digest.catch_up,
        id=DIGEST_CATCH_UP_JOB,
        args=[services],
        next_run_time=now,
        replace_existing=True,
    )
    # At start too: a review date passed while the process was down goes out now.
    scheduler.add_job(
        review.run_due,
        IntervalTrigger(hours=REVIEW_CHECK_HOURS),
        id=REVIEW_JOB,
        args=[services],
        next_run_time=now,
        replace_existing=True,
    )
    poll = hubspot_poll(services)
    if poll is not None:
        seconds, job = poll
        scheduler.add_job(
            job, IntervalTrigger(seconds=seconds), id=HUBSPOT_POLL_JOB, next_run_time=now
        )
    poll = salesforce_poll(services)
    if poll is not None:
        seconds, job = poll
        scheduler.add_job(
            job, IntervalTrigger(seconds=seconds), id=SALESFORCE_POLL_JOB, next_run_time=now
        )
    return scheduler


def hubspot_poll(services: Services) -> tuple[float, Callable[[], Any]] | None:
    """sources.yml's `hubspot.poll_every`, and the job that polls: each page of changed
    contacts is mapped and ingested like a webhook's body (the cursor moves after it)."""
    source = services.sources.hubspot if services.sources else None
    if source is None or not source.poll_every:
        return None
    if services.hubspot is None:
        logger.error("sources.yml polls HubSpot but HUBSPOT_TOKEN is not set: not polling")
        return None
    intake = Intake(services.db, services.definitions, delivery=services.delivery)

    def ingest(records: list[dict[str, Any]]) -> None:
        ingest_records(services, intake, source, records)

    client = services.hubspot
    return source.poll_every, partial(poll_job, client, services.db, ingest, source.properties)


def salesforce_poll(services: Services) -> tuple[float, Callable[[], Any]] | None:
    """sources.yml's `salesforce.poll_every`, and the job that polls (as for HubSpot)."""
    source = services.sources.salesforce if services.sources else None
    if source is None or not source.poll_every:
        return None
    if services.salesforce is None:
        logger.error(
            "sources.yml polls Salesforce but SALESFORCE_URL, SALESFORCE_CLIENT_ID and "
            "SALESFORCE_CLIENT_SECRET are not all set: not polling"
        )
        return None
    intake = Intake(services.db, services.definitions, delivery=services.delivery)

    def ingest(records: list[dict[str, Any]]) -> None:
        ingest_records(services, intake, source, records)

    client = services.salesforce
    return source.poll_every, partial(salesforce.poll_job, client, services.db, ingest, source)
