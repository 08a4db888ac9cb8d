"""The judge: fit as a gate, intent as points, every point explained."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.definition import load_definition
from bot.judge import judge, outcome
from bot.leads import LeadIn, parse_lead
from tests.conftest import DATA

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
DEFINITION = load_definition(DATA / "definition.yml")


def make(
    attributes: dict | None = None,
    signals: list[tuple[str, datetime]] | None = None,
    **fields: object,
) -> LeadIn:
    record = {
        "id": "L1",
        "email": "ana@acme.example",
        "company": "Acme",
        "attributes": {"employees": 250, "country": "AU"} if attributes is None else attributes,
        "signals": [{"name": n, "at": at.isoformat()} for n, at in (signals or [])],
    }
    record.update(fields)
    return parse_lead(record)


def ago(**kwargs: float) -> datetime:
    return NOW - timedelta(**kwargs)


def test_qualified_lead_explains_fit_and_points() -> None:
    verdict = judge(
        make(signals=[("demo_request", ago(days=1)), ("pricing_page", ago(days=2))]),
        DEFINITION,
        NOW,
    )
    assert verdict.fit_passed and verdict.qualified and not verdict.hot
    assert [(c.id, c.passed, c.value) for c in verdict.criteria] == [
        ("size", True, 250),
        ("region", True, "AU"),
    ]
    assert [(s.id, s.count, s.points) for s in verdict.signals] == [
        ("demo_request", 1, 40),
        ("pricing_page", 1, 10),
    ]
    assert verdict.score == 50


def test_cap_per_signal_and_window_and_unknown_signals() -> None:
    signals = [("pricing_page", ago(days=d)) for d in range(1, 6)]  # 5 x 10, capped at 30
    signals += [
        ("demo_request", ago(days=31)),
        ("podcast", ago(days=1)),
        ("webinar", NOW + timedelta(days=2)),
    ]
    verdict = judge(make(signals=signals), DEFINITION, NOW)
    assert [(s.id, s.count, s.points, s.uncapped) for s in verdict.signals] == [
        ("pricing_page", 5, 30, 50)
    ]
    assert verdict.score == 30
    assert {(i.name, i.why) for i in verdict.ignored} == {
        ("demo_request", "older than 30 days"),
        ("podcast", "not in the definition"),
        ("webinar", "in the future"),
    }


def test_negative_points_lower_the_score() -> None:
    verdict = judge(
        make(signals=[("demo_request", ago(days=1)), ("unsubscribed", ago(days=1))]),
        DEFINITION,
        NOW,
    )
    assert verdict.score == 20 and not verdict.qualified


def test_missing_fit_value_fails_unless_allowed() -> None:
    verdict = judge(
        make(attributes={"employees": 250}, signals=[("demo_request", ago(days=1))] * 3),
        DEFINITION,
        NOW,
    )
    region = verdict.criteria[1]
    assert (region.id, region.passed, region.missing) == ("region", False, True)
    assert not verdict.qualified and verdict.score == 120


def test_missing_required_context_is_listed_and_not_ready() -> None:
    verdict = judge(
        make(signals=[("demo_request", ago(days=1))] * 2, company=None), DEFINITION, NOW
    )
    assert verdict.qualified and verdict.missing == ("company",) and not verdict.ready


def test_hot_at_threshold() -> None:
    verdict = judge(make(signals=[("demo_request", ago(days=1))] * 2), DEFINITION, NOW)
    assert verdict.score == 80 and verdict.hot


# --- properties ----------------------------------------------------------------

SIGNAL_NAMES = [s.id for s in DEFINITION.intent.signals] + ["noise"]
signal_lists = st.lists(
    st.tuples(st.sampled_from(SIGNAL_NAMES), st.integers(min_value=-3, max_value=40)),
    max_size=12,
)
sizes = st.one_of(st.none(), st.integers(min_value=0, max_value=20000))
countries = st.one_of(st.none(), st.sampled_from(["AU", "NZ", "US", "nz", "GB"]))


def _lead(size: int | None, country: str | None, signals: list[tuple[str, int]]) -> LeadIn:
    attributes = {k: v for k, v in (("employees", size), ("country", country)) if v is not None}
    return make(attributes=attributes, signals=[(n, ago(days=d)) for n, d in signals])


@settings(max_examples=300, deadline=None)
@given(sizes, countries, signal_lists)
def test_failing_any_fit_criterion_is_never_qualified(size, country, signals) -> None:
    verdict = judge(_lead(size, country, signals), DEFINITION, NOW)
    if not all(c.passed for c in verdict.criteria):
        assert not verdict.qualified and not verdict.hot and not verdict.ready


@settings(max_examples=300, deadline=None)
@given(
    sizes,
    countries,
    signal_lists,
    st.sampled_from([s.id for s in DEFINITION.intent.signals if s.points > 0]),
    st.integers(min_value=0, max_value=29),
)
def test_a_positive_signal_never_lowers_the_score(size, country, signals, extra, days) -> None:
    before = judge(_lead(size, country, signals), DEFINITION, NOW)
    after = judge(_lead(size, country, [*signals, (extra, days)]), DEFINITION, NOW)
    assert after.score >= before.score


@settings(max_examples=300, deadline=None)
@given(sizes, countries, signal_lists)
def test_the_verdict_explains_every_point(size, country, signals) -> None:
    lead = _lead(size, country, signals)
    verdict = judge(lead, DEFINITION, NOW)
    assert verdict.score == sum(s.points for s in verdict.signals)
    # every signal on the lead is either counted or ignored with a reason
    assert sum(s.count for s in verdict.signals) + len(verdict.ignored) == len(lead.signals)
    by_id = DEFINITION.intent.by_id
    for s in verdict.signals:
        expected = by_id[s.id].points * s.count
        cap = by_id[s.id].max
        assert s.points == (min(expected, cap) if cap is not None else expected)
    assert verdict.qualified == (verdict.fit_passed and verdict.score >= DEFINITION.thresholds.mql)


@settings(max_examples=300, deadline=None)
@given(sizes, countries, signal_lists, st.integers(min_value=-40, max_value=40))
def test_the_backtests_short_outcome_agrees_with_the_verdict(size, country, signals, hours):
    """outcome() is judge()'s two booleans, also at the window's edges (`hours` moves now)."""
    lead = _lead(size, country, signals)
    now = NOW + timedelta(hours=hours)
    verdict = judge(lead, DEFINITION, now)
    assert outcome(lead, DEFINITION, now) == (verdict.qualified, verdict.hot)
