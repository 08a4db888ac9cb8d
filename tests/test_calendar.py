"""Business time: weekends, holidays, DST in the definition's zone, and 24x7."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.calendar import (
    BusinessCalendar,
    BusinessDuration,
    CalendarError,
    parse_business_hours,
    parse_duration,
    parse_schedule,
)

SYDNEY = ZoneInfo("Australia/Sydney")
OFFICE = BusinessCalendar(
    parse_business_hours("mon-fri 09:00-17:00"), SYDNEY, holidays=[date(2026, 12, 25)]
)
ALWAYS = BusinessCalendar(parse_business_hours("24x7"), SYDNEY)
FOUR_HOURS = parse_duration("4h")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SYDNEY)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4 hours", "expected a duration like 30m, 4h, 1d or 1h30m, got '4 hours'"),
        ("0m", "expected a duration above zero, got '0m'"),
        ("", "expected a duration like 30m, 4h, 1d or 1h30m, got ''"),
        ("-1h", "expected a duration like 30m, 4h, 1d or 1h30m, got '-1h'"),
        ("h", "expected a duration like 30m, 4h, 1d or 1h30m, got 'h'"),
        ("30m4h", "expected a duration like 30m, 4h, 1d or 1h30m, got '30m4h'"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(CalendarError) as error:
        parse_duration(text)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon-fry 09:00-17:00", "unknown day 'fry' in 'mon-fry 09:00-17:00' (use mon..sun)"),
        ("mon-fri 17:00-09:00", "closing time is not after opening time in 'mon-fri 17:00-09:00'"),
        ("weekdays", "expected hours like 'mon-fri 09:00-17:00' or '24x7', got 'weekdays'"),
        ("mon-fri 09:00-25:00", "'25:00' is not a time of day in 'mon-fri 09:00-25:00'"),
        (
            "mon-fri 09:00-17:00; sat 10:00-09:00",
            "closing time is not after opening time in 'sat 10:00-09:00'",
        ),
        (" ", "no business hours given; expected e.g. 'mon-fri 09:00-17:00' or '24x7'"),
    ],
)
def test_bad_business_hours(text: str, message: str) -> None:
    with pytest.raises(CalendarError) as error:
        parse_business_hours(text)
    assert str(error.value) == message


def test_durations() -> None:
    assert parse_duration("1h30m").seconds == 5400
    assert parse_duration("1d 4h") == BusinessDuration(1, 14400, "1d 4h")
    assert parse_duration("90m").seconds == 5400
    assert OFFICE.seconds(parse_duration("1d")) == 8 * 3600


def test_business_hours_groups() -> None:
    hours = parse_business_hours("mon-thu 09:00-17:00; fri 09:00-13:00, sat 10:00-12:00")
    assert hours.days[3] == ((540, 1020),)
    assert hours.days[4] == ((540, 780),)
    assert hours.days[5] == ((600, 720),)
    assert hours.days[6] == ()
    assert not hours.always_open
    assert parse_business_hours("24X7").always_open


def test_overlapping_groups_do_not_count_twice() -> None:
    calendar = BusinessCalendar(
        parse_business_hours("mon-fri 09:00-17:00, mon 12:00-18:00"), SYDNEY
    )
    assert calendar.hours.days[0] == ((540, 1080),)
    assert calendar.day_seconds == 9 * 3600
    monday = local(2026, 11, 23, 9, 0)
    assert calendar.elapsed(monday, local(2026, 11, 23, 20, 0)) == timedelta(hours=9)


def test_four_hours_from_friday_afternoon_is_monday_noon() -> None:
    assert OFFICE.add(local(2026, 11, 20, 16, 0), FOUR_HOURS) == local(2026, 11, 23, 12, 0)


def test_before_opening_on_a_saturday_and_at_closing() -> None:
    assert OFFICE.add(local(2026, 11, 21, 10, 0), FOUR_HOURS) == local(2026, 11, 23, 13, 0)
    assert OFFICE.add(local(2026, 11, 24, 8, 0), FOUR_HOURS) == local(2026, 11, 24, 13, 0)
    assert OFFICE.add(local(2026, 11, 24, 13, 0), FOUR_HOURS) == local(2026, 11, 24, 17, 0)


def test_a_holiday_is_skipped() -> None:
    # Thursday 24 Dec 15:00 + 4h: 2h on Thursday, Christmas Friday off, 2h on Monday.
    assert OFFICE.add(local(2026, 12, 24, 15, 0), FOUR_HOURS) == local(2026, 12, 28, 11, 0)


def test_one_business_day() -> None:
    assert OFFICE.add(local(2026, 11, 24, 10, 0), parse_duration("1d")) == local(
        2026, 11, 25, 10, 0
    )


def test_daylight_saving_switch_does_not_move_the_deadline() -> None:
    # Sydney springs forward on Sunday 4 Oct 2026 (02:00 -> 03:00).
    due = OFFICE.add(local(2026, 10, 2, 15, 0), FOUR_HOURS)
    assert due == local(2026, 10, 5, 11, 0)
    assert due.astimezone(UTC) == datetime(2026, 10, 5, 0, 0, tzinfo=UTC)  # +11 now, was +10
    assert OFFICE.elapsed(local(2026, 10, 2, 15, 0), due) == timedelta(hours=4)


def test_daylight_saving_end_does_not_move_the_deadline() -> None:
    # Sydney falls back on Sunday 5 Apr 2026 (03:00 -> 02:00).
    due = OFFICE.add(local(2026, 4, 3, 15, 0), FOUR_HOURS)
    assert due == local(2026, 4, 6, 11, 0)
    assert due.astimezone(UTC) == datetime(2026, 4, 6, 1, 0, tzinfo=UTC)  # +10 now, was +11


def test_open_hours_inside_the_skipped_hour_have_no_length() -> None:
    # 02:30-03:00 does not exist on 4 Oct 2026 in Sydney.
    calendar = BusinessCalendar(
        parse_business_hours("sun 02:30-03:00, mon-fri 09:00-17:00"), SYDNEY
    )
    saturday = local(2026, 10, 3, 12, 0)
    assert calendar.add(saturday, parse_duration("1h")) == local(2026, 10, 5, 10, 0)


def test_always_open_is_wall_clock_across_the_switch() -> None:
    start = local(2026, 10, 4, 0, 30)
    due = ALWAYS.add(start, FOUR_HOURS)
    assert due - start == timedelta(hours=4)
    assert due == local(2026, 10, 4, 5, 30)  # an hour of wall time vanished at 02:00
    full_week = BusinessCalendar(parse_business_hours("mon-sun 00:00-24:00"), SYDNEY)
    assert full_week.hours.always_open
    assert full_week.day_seconds == 86400
    assert full_week.add(start, FOUR_HOURS) - start == timedelta(hours=4)
    assert full_week.elapsed(start, due) == timedelta(hours=4)


def test_is_open_and_naive_input_is_utc() -> None:
    assert OFFICE.is_open(local(2026, 11, 23, 9, 0))
    assert not OFFICE.is_open(local(2026, 11, 23, 17, 0))
    assert not OFFICE.is_open(local(2026, 11, 21, 12, 0))  # Saturday
    assert not OFFICE.is_open(local(2026, 12, 25, 12, 0))  # holiday
    naive = datetime(2026, 11, 22, 23, 0)  # Monday 10:00 in Sydney, read as UTC
    assert OFFICE.is_open(naive)
    assert OFFICE.add(naive, FOUR_HOURS) == datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    assert OFFICE.add(naive, FOUR_HOURS).tzinfo is UTC


def test_a_calendar_that_never_opens_raises_instead_of_looping() -> None:
    start = date(2026, 1, 1)
    closed = BusinessCalendar(
        parse_business_hours("mon-fri 09:00-17:00"),
        SYDNEY,
        holidays=[start + timedelta(days=n) for n in range(4000)],
    )
    moment = local(2026, 1, 1, 10, 0)
    with pytest.raises(CalendarError):
        closed.add(moment, FOUR_HOURS)
    assert closed.elapsed(moment, moment + timedelta(days=3)) == timedelta(0)


def test_long_durations_walk_past_ten_years() -> None:
    due = OFFICE.add(local(2026, 11, 23, 9, 0), parse_duration("3000d"))
    assert due.year == 2038


def test_elapsed_across_a_weekend_and_points() -> None:
    assert OFFICE.elapsed(local(2026, 11, 20, 16, 0), local(2026, 11, 23, 10, 0)) == timedelta(
        hours=2
    )
    start = local(2026, 11, 23, 10, 0)
    assert OFFICE.point(start, FOUR_HOURS, 0.5) == local(2026, 11, 23, 12, 0)
    assert OFFICE.point(start, FOUR_HOURS, 1.0) == local(2026, 11, 23, 14, 0)
    assert OFFICE.point(start, FOUR_HOURS, 1.5) == local(2026, 11, 23, 16, 0)
    assert OFFICE.elapsed(start, start) == timedelta(0)
    assert OFFICE.elapsed(start, start - timedelta(hours=1)) == timedelta(0)


def test_schedule() -> None:
    schedule = parse_schedule("mon 09:00")
    assert schedule.cron_fields() == {"day_of_week": "mon", "hour": 9, "minute": 0}
    assert schedule.last_before(local(2026, 11, 25, 12, 0), SYDNEY) == local(2026, 11, 23, 9, 0)
    assert schedule.last_before(local(2026, 11, 23, 9, 0), SYDNEY) == local(2026, 11, 23, 9, 0)
    # Across the spring-forward switch the schedule keeps its local 09:00.
    assert schedule.last_before(local(2026, 10, 5, 8, 0), SYDNEY) == local(2026, 9, 28, 9, 0)
    assert schedule.last_before(local(2026, 10, 5, 8, 0), SYDNEY).tzinfo is UTC
    for bad in ("monday", "mon 24:00", "xyz 09:00"):
        with pytest.raises(CalendarError):
            parse_schedule(bad)


open_moments = st.builds(
    lambda day, minute: local(2026, 9, 28, 9, 0) + timedelta(days=day, minutes=minute),
    st.integers(0, 60).filter(lambda d: (d % 7) < 5),
    st.integers(0, 479),
)
durations = st.integers(1, 60 * 40).map(lambda m: parse_duration(f"{m}m"))


@settings(max_examples=200, deadline=None)
@given(open_moments, durations)
def test_elapsed_undoes_add(start: datetime, duration) -> None:
    assert OFFICE.elapsed(start, OFFICE.add(start, duration)).total_seconds() == OFFICE.seconds(
        duration
    )


@settings(max_examples=200, deadline=None)
@given(open_moments, durations, durations)
def test_add_is_monotonic(start: datetime, a, b) -> None:
    if OFFICE.seconds(a) <= OFFICE.seconds(b):
        assert OFFICE.add(start, a) <= OFFICE.add(start, b)
