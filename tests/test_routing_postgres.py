"""Weighted rotation and daily caps on PostgreSQL under load: two app instances (each
with its own engine and pool, as two `handoff run` processes have) take 500 leads
at once, one request each; the shares and caps come out exact, each lead handed off
once (runs when HANDOFF_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from bot.server import INTAKE_SLOTS
from store.models import Handoff
from tests.conftest import lead
from tests.test_routing_depth import definition_with

LEADS = 500
WEIGHTED = [{"rep": "rep1@example.com", "weight": 3}, "rep2@example.com"]


def hammer(apps, leads) -> list[dict]:
    """Every lead in its own signed POST /leads, as many at once as each instance takes
    (INTAKE_SLOTS; one more is answered 503 at once), half the leads to each."""
    pools = [ThreadPoolExecutor(INTAKE_SLOTS) for _ in apps]
    try:
        futures = [
            pools[n % len(apps)].submit(apps[n % len(apps)].post_leads, leads[n])
            for n in range(len(leads))
        ]
        responses = [future.result() for future in futures]
    finally:
        for pool in pools:
            pool.shutdown()
    assert {r.status_code for r in responses} == {202}
    return [r.json()["results"][0] for r in responses]


def stored(db) -> list[Handoff]:
    with db.session() as session:
        return list(session.scalars(select(Handoff)).all())


def test_weights_hold_exactly_across_two_instances(app_factory, pg):
    defn = definition_with([{"round_robin": WEIGHTED}])
    apps = [app_factory(pg, defn=defn), app_factory(pg, defn=defn)]
    results = hammer(apps, [lead(f"crm-{n}") for n in range(LEADS)])
    assert Counter(r["outcome"] for r in results) == {"handed_off": LEADS}
    handoffs = stored(pg)
    assert len({h.lead_id for h in handoffs}) == len(handoffs) == LEADS  # once each
    # 500 turns of a cycle of four (rep1, rep1, rep2, rep1): exactly 3 to 1.
    assert Counter(h.owner_email for h in handoffs) == {
        "rep1@example.com": 375,
        "rep2@example.com": 125,
    }


def test_caps_hold_exactly_across_two_instances(app_factory, pg):
    defn = definition_with([{"round_robin": WEIGHTED, "daily_cap": 200}])
    apps = [app_factory(pg, defn=defn), app_factory(pg, defn=defn)]
    results = hammer(apps, [lead(f"crm-{n}") for n in range(LEADS)])
    assert Counter(r["outcome"] for r in results) == {"handed_off": 400, "held": 100}
    handoffs = stored(pg)
    assert len({h.lead_id for h in handoffs}) == len(handoffs) == LEADS
    # Nobody over the cap; the 100 over both caps wait for the manager.
    assert Counter(h.owner_email for h in handoffs) == {
        "rep1@example.com": 200,
        "rep2@example.com": 200,
        "mgr@example.com": 100,
    }
    with pg.session() as session:
        counted = session.scalar(
            select(func.count()).select_from(Handoff).where(Handoff.route_key == "routing[0]")
        )
    assert counted == 400
