"""Prometheus metrics: what an operator alerts on, served at `GET /metrics`.

The counters and histograms are module-level (one set per process, as the
client library intends) but registered in no global registry: each server
builds its own `CollectorRegistry` with them plus the outbox gauges read from
its own database at scrape time. So two apps in one process (the tests) never
clash, and each `handoff run` process serves its own figures.

Label values are bounded: outcomes, decisions and Slack method names are fixed
sets, reasons come from the definition; never a lead id or an email.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot import clock
from store import outbox
from store.db import Database

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LEADS = Counter("handoff_leads", "Leads received, by intake outcome.", ["outcome"], registry=None)
HANDOFFS = Counter("handoff_handoffs", "Handoffs opened (leads sent to a rep).", registry=None)
DECISIONS = Counter(
    "handoff_decisions", "Decisions on handoffs, by decision.", ["decision"], registry=None
)
REJECTIONS = Counter(
    "handoff_rejections", "Rejections, by the definition's reason id.", ["reason"], registry=None
)
SLA_REMINDERS = Counter("handoff_sla_reminders", "SLA reminders sent to reps.", registry=None)
SLA_ESCALATIONS = Counter(
    "handoff_sla_escalations", "SLA escalations sent to managers.", registry=None
)
SLA_BREACHES = Counter(
    "handoff_sla_breaches",
    "Handoffs that went past their response deadline undecided (counted as it passes).",
    registry=None,
)
SLACK_CALLS = Counter(
    "handoff_slack_calls",
    "Slack Web API calls, by method and result (ok, an error code, http_429, network).",
    ["method", "result"],
    registry=None,
)
SLACK_RATE_LIMITED = Counter(
    "handoff_slack_rate_limited",
    "HTTP 429 answers from Slack, by method: each one, also those a retry got past.",
    ["method"],
    registry=None,
)
LEAD_TO_DM = Histogram(
    "handoff_lead_to_dm_seconds",
    "From a lead's arrival to its card being posted in Slack.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=None,
)
CRM_RECORDS = Counter(
    "handoff_crm_records",
    "Records taken from a CRM, by source and outcome.",
    ["source", "outcome"],
    registry=None,
)
INTAKE_SECONDS = Histogram(
    "handoff_intake_request_seconds",
    "Time to answer POST /leads, by HTTP status.",
    ["status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,
)

_PROCESS_METRICS = (
    LEADS,
    HANDOFFS,
    DECISIONS,
    REJECTIONS,
    SLA_REMINDERS,
    SLA_ESCALATIONS,
    SLA_BREACHES,
    SLACK_CALLS,
    SLACK_RATE_LIMITED,
    LEAD_TO_DM,
    CRM_RECORDS,
    INTAKE_SECONDS,
)


class OutboxCollector(Collector):
    """The outbox's depth and the age of its oldest pending row, read at scrape time
    (shared by every process on the database, so any replica reports the truth)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "handoff_outbox_pending", "Outbox rows waiting to be sent (all processes)."
        )
        oldest = GaugeMetricFamily(
            "handoff_outbox_oldest_seconds", "Age of the oldest pending outbox row (0: none)."
        )
        failed = GaugeMetricFamily(
            "handoff_outbox_failed", "Outbox rows that failed for good (all processes)."
        )
        try:
            with self.db.session() as session:
                stats = outbox.stats(session)
        except Exception:  # noqa: BLE001 - a scrape must answer; /readyz reports the database
            return
        age = (clock.now() - stats.oldest_created_at).total_seconds() if stats.pending else 0.0
        pending.add_metric([], stats.pending)
        oldest.add_metric([], max(0.0, age))
        failed.add_metric([], stats.failed)
        yield pending
        yield oldest
        yield failed


def registry_for(db: Database) -> CollectorRegistry:
    """The registry one server exposes: this process's metrics and its database's outbox."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in _PROCESS_METRICS:
        registry.register(metric)
    registry.register(OutboxCollector(db))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
