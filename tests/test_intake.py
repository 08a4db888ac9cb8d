"""Intake into the store: upsert, verdicts, and handing off only on the transition."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from bot import clock
from bot.definition import Definition
from bot.intake import Intake
from bot.leads import parse_lead
from store.db import Database
from store.models import Audit, Handoff, Lead, Outbox, SlaTimer, Verdict
from tests.conftest import lead


def count(db: Database, model: type) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def ingest(db: Database, definition: Definition, *records: dict) -> list:
    intake = Intake(db, definition)
    return intake.ingest([parse_lead(r) for r in records], now=clock.now())


def test_qualified_lead_is_handed_off_with_card_timers_and_audit(db, definition) -> None:
    [outcome] = ingest(db, definition, lead("crm-1"))
    assert (outcome.outcome, outcome.owner, outcome.score) == ("handed_off", "rep1@example.com", 60)
    with db.session() as session:
        stored = session.scalars(select(Lead)).one()
        handoff = session.scalars(select(Handoff)).one()
        card = session.scalars(select(Outbox)).one()
        timers = session.scalars(select(SlaTimer).order_by(SlaTimer.due_at)).all()
        actions = [a.action for a in session.scalars(select(Audit))]
    assert (stored.status, stored.ready, stored.score) == ("handed_off", True, 60)
    assert (handoff.owner_email, handoff.status) == ("rep1@example.com", "open")
    assert (card.kind, card.payload) == ("handoff_card", {"handoff_id": handoff.id})
    assert [(t.kind, t.fraction) for t in timers] == [
        ("remind", 0.5),
        ("remind", 1.0),
        ("escalate", 1.0),
    ]
    assert timers[-1].due_at == handoff.due_at
    assert actions == ["handed_off"]


def test_resending_the_same_lead_changes_nothing(db, definition) -> None:
    ingest(db, definition, lead("crm-1"))
    [again] = ingest(db, definition, lead("crm-1"))
    assert again.outcome == "unchanged"
    assert (count(db, Lead), count(db, Verdict), count(db, Handoff), count(db, Outbox)) == (
        1,
        1,
        1,
        1,
    )


def test_update_of_a_lead_with_sales_is_judged_but_not_handed_off_again(db, definition) -> None:
    ingest(db, definition, lead("crm-1"))
    [update] = ingest(db, definition, lead("crm-1", title="COO"))
    assert update.outcome == "updated"
    assert (count(db, Verdict), count(db, Handoff)) == (2, 1)


def test_nurture_then_qualifies_later_hands_off_once(db, definition) -> None:
    [first] = ingest(db, definition, lead("crm-1", signals=[]))
    assert first.outcome == "nurture"
    [second] = ingest(db, definition, lead("crm-1"))
    assert second.outcome == "handed_off"
    assert count(db, Handoff) == 1


def test_failing_fit_stays_with_marketing(db, definition) -> None:
    [outcome] = ingest(db, definition, lead("crm-1", attributes={"employees": 10, "country": "AU"}))
    assert (outcome.outcome, outcome.qualified) == ("nurture", False)
    assert count(db, Handoff) == 0


def test_missing_context_is_flagged_then_handed_off_when_completed(db, definition) -> None:
    [outcome] = ingest(db, definition, lead("crm-1", company=None))
    assert (outcome.outcome, outcome.missing) == ("missing_context", ("company",))
    assert count(db, Handoff) == 0
    [completed] = ingest(db, definition, lead("crm-1"))
    assert completed.outcome == "handed_off"


def test_round_robin_survives_a_new_intake_object(db, definition) -> None:
    owners = [ingest(db, definition, lead(f"crm-{i}"))[0].owner for i in range(3)]
    assert owners == ["rep1@example.com", "rep2@example.com", "rep1@example.com"]


def test_same_id_twice_in_one_batch(db, definition) -> None:
    outcomes = ingest(db, definition, lead("crm-1", signals=[]), lead("crm-1"))
    assert [o.outcome for o in outcomes] == ["nurture", "handed_off"]
    assert count(db, Lead) == 1


def test_dry_run_stores_nothing(db, definition) -> None:
    intake = Intake(db, definition)
    [outcome] = intake.ingest([parse_lead(lead("crm-1"))], now=clock.now(), dry_run=True)
    assert outcome.outcome == "handed_off"
    assert (count(db, Lead), count(db, Handoff), count(db, Outbox)) == (0, 0, 0)


def test_due_time_is_in_business_hours(db, definition) -> None:
    ingest(db, definition, lead("crm-1"))
    with db.session() as session:
        handoff = session.scalars(select(Handoff)).one()
    calendar = definition.calendar()
    assert calendar.elapsed(handoff.assigned_at, handoff.due_at) == timedelta(hours=4)


def test_bulk_written_lead_and_verdict_read_back_as_given(db, definition) -> None:
    """The import's bulk insert (compiled once, JSON by pydantic-core) stores what Core would."""
    attributes = {"employees": 250, "country": "AU", "note": "Zoë ☃", "ratio": 0.1, "tags": [1]}
    record = lead("crm-9", attributes=attributes)
    now = clock.now()
    [outcome] = Intake(db, definition).ingest([parse_lead(record)], now=now)
    with db.session() as session:
        stored = session.scalars(select(Lead)).one()
        verdict = session.scalars(select(Verdict)).one()
    assert stored.attributes == dict(sorted(attributes.items()))
    assert stored.signals == [{"name": s["name"], "at": s["at"]} for s in record["signals"]]
    assert stored.created_at == stored.updated_at == verdict.judged_at == now
    assert stored.created_at.tzinfo is not None
    assert (stored.qualified, stored.ready, stored.hot) == (True, True, False)
    assert (verdict.qualified, verdict.fit_passed, verdict.score) == (True, True, outcome.score)
    assert verdict.missing == []
    assert [c["id"] for c in verdict.detail["criteria"]] == ["size", "region"]


def test_new_leads_get_their_own_ids_even_past_the_largest_id(db, definition) -> None:
    """Ids of a bulk insert are worked out from max(id) on SQLite; at the largest
    possible id SQLite picks free ids at random, and they are read back instead."""
    now = clock.now()
    with db.transaction() as session:
        session.execute(
            Lead.__table__.insert().values(
                id=2**63 - 1,
                external_id="crm-0",
                payload_hash="",
                attributes={},
                signals=[],
                created_at=now,
                updated_at=now,
            )
        )
    ingest(db, definition, *(lead(f"crm-{n}", email=f"n{n}@acme.example") for n in (1, 2, 3)))
    with db.session() as session:
        leads = {row.id: row.external_id for row in session.scalars(select(Lead))}
        verdicts = session.scalars(select(Verdict).order_by(Verdict.id)).all()
        handoffs = session.scalars(select(Handoff).order_by(Handoff.id)).all()
    assert sorted(leads.values()) == ["crm-0", "crm-1", "crm-2", "crm-3"]
    assert [leads[v.lead_id] for v in verdicts] == ["crm-1", "crm-2", "crm-3"]
    assert [leads[h.lead_id] for h in handoffs] == ["crm-1", "crm-2", "crm-3"]


def test_signal_times_are_kept_in_utc_whatever_offset_they_came_with(db, definition) -> None:
    sydney = lead("crm-1")
    sydney["signals"] = [{"name": "demo_request", "at": "2026-11-20T20:30:00+10:00"}]
    utc = lead("crm-1")
    utc["signals"] = [{"name": "demo_request", "at": "2026-11-20T10:30:00Z"}]
    intake = Intake(db, definition)
    first = intake.ingest([parse_lead(sydney)], now=clock.now())
    again = intake.ingest([parse_lead(utc)], now=clock.now())
    with db.session() as session:
        stored = session.scalars(select(Lead.signals)).one()
    assert stored == [{"name": "demo_request", "at": "2026-11-20T10:30:00+00:00"}]
    assert [o.outcome for o in again] == ["unchanged"]  # the same moment, the same lead
    assert first[0].outcome != "unchanged"
