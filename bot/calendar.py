"""Business time: working hours, holidays and durations in the definition's time zone.

Open hours are wall-clock times ("09:00-17:00") of local days. Each day's
intervals are built in local time and only then converted to UTC, so a
daylight-saving switch never moves a deadline by an hour: 09:00 stays 09:00.
The always-open calendar ("24x7") is plain elapsed time instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*$", re.IGNORECASE)
_GROUP = re.compile(
    r"^\s*([a-z]{3})(?:\s*-\s*([a-z]{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$",
    re.IGNORECASE,
)
_SCHEDULE = re.compile(r"^\s*([a-z]{3})\s+(\d{1,2}):(\d{2})\s*$", re.IGNORECASE)
_MAX_DAYS = 3660  # a calendar with no open day in ten years is a mistake, not a long wait


class CalendarError(ValueError):
    """A duration, business-hours or schedule string that does not parse."""


@dataclass(frozen=True, slots=True)
class BusinessDuration:
    days: int
    seconds: int
    text: str


def parse_duration(text: str) -> BusinessDuration:
    """'30m', '4h', '1d' (one business day), '1h30m', '1d4h'."""
    match = _DURATION.match(text or "")
    if not match or not any(match.groups()):
        raise CalendarError(f"expected a duration like 30m, 4h, 1d or 1h30m, got '{text}'")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    if days == hours == minutes == 0:
        raise CalendarError(f"expected a duration above zero, got '{text}'")
    return BusinessDuration(days, hours * 3600 + minutes * 60, text.strip())


@dataclass(frozen=True, slots=True)
class WeeklyHours:
    days: tuple[tuple[tuple[int, int], ...], ...]  # per weekday (0 = Monday): (start, end) minutes
    always_open: bool
    text: str


def _weekday(name: str, group: str) -> int:
    try:
        return DAYS.index(name.lower())
    except ValueError:
        raise CalendarError(f"unknown day '{name}' in '{group.strip()}' (use mon..sun)") from None


def _minute(hour: str, minute: str, group: str) -> int:
    value = int(hour) * 60 + int(minute)
    if int(minute) > 59 or value > 24 * 60:
        raise CalendarError(f"'{hour}:{minute}' is not a time of day in '{group.strip()}'")
    return value


def _merge(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, with overlapping or touching intervals joined, so no minute counts twice."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def parse_business_hours(text: str) -> WeeklyHours:
    """'mon-fri 09:00-17:00', 'mon-thu 09:00-17:00, fri 09:00-13:00' or '24x7'."""
    if (text or "").strip().lower() == "24x7":
        return WeeklyHours((((0, 1440),),) * 7, True, text.strip())
    days: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    groups = [group for group in re.split(r"[,;]", text or "") if group.strip()]
    if not groups:
        raise CalendarError(
            "no business hours given; expected e.g. 'mon-fri 09:00-17:00' or '24x7'"
        )
    for group in groups:
        match = _GROUP.match(group)
        if not match:
            raise CalendarError(
                f"expected hours like 'mon-fri 09:00-17:00' or '24x7', got '{group.strip()}'"
            )
        first = _weekday(match.group(1), group)
        last = _weekday(match.group(2), group) if match.group(2) else first
        start = _minute(match.group(3), match.group(4), group)
        end = _minute(match.group(5), match.group(6), group)
        if end <= start:
            raise CalendarError(f"closing time is not after opening time in '{group.strip()}'")
        if last < first:
            raise CalendarError(f"days run backwards in '{group.strip()}'")
        for day in range(first, last + 1):
            days[day].append((start, end))
    merged = tuple(_merge(intervals) for intervals in days)
    always = all(intervals == ((0, 1440),) for intervals in merged)
    return WeeklyHours(merged, always, text.strip())


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    weekday: int
    hour: int
    minute: int
    text: str

    def cron_fields(self) -> dict[str, str | int]:
        return {"day_of_week": DAYS[self.weekday], "hour": self.hour, "minute": self.minute}

    def last_before(self, moment: datetime, tz: ZoneInfo) -> datetime:
        """The latest scheduled time at or before `moment`, in UTC."""
        local = _utc(moment).astimezone(tz)
        day = local.date() - timedelta(days=(local.weekday() - self.weekday) % 7)
        fire = datetime.combine(day, time(self.hour, self.minute), tzinfo=tz)
        if fire > local:
            fire = datetime.combine(
                day - timedelta(days=7), time(self.hour, self.minute), tzinfo=tz
            )
        return fire.astimezone(UTC)


def parse_schedule(text: str) -> WeeklySchedule:
    """'mon 09:00': a weekday and a local time."""
    match = _SCHEDULE.match(text or "")
    if not match:
        raise CalendarError(f"expected a weekly time like 'mon 09:00', got '{text}'")
    weekday = _weekday(match.group(1), text)
    hour, minute = int(match.group(2)), int(match.group(3))
    if hour > 23 or minute > 59:
        raise CalendarError(f"'{match.group(2)}:{match.group(3)}' is not a time of day")
    return WeeklySchedule(weekday, hour, minute, text.strip())


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class BusinessCalendar:
    """Adds and measures business time; every datetime in and out is aware UTC.

    The walks go interval by interval, day by day, so their cost grows with the
    number of days covered, never with the length of the duration in minutes.
    """

    def __init__(self, hours: WeeklyHours, tz: ZoneInfo, holidays: Iterable[date] = ()) -> None:
        self.hours = hours
        self.tz = tz
        self.holidays = frozenset(holidays)
        # Plain elapsed time only when no day is ever closed; holidays close whole days.
        self._wall_clock = hours.always_open and not self.holidays

    @property
    def day_seconds(self) -> int:
        """A standard working day ("1d"): the week's longest day, 86400 when always open."""
        return max(sum(end - start for start, end in day) for day in self.hours.days) * 60

    def seconds(self, duration: BusinessDuration) -> int:
        return duration.days * self.day_seconds + duration.seconds

    def _day(self, day: date) -> list[tuple[datetime, datetime]]:
        """One local date's open intervals in UTC (none on a holiday)."""
        if day in self.holidays:
            return []
        intervals = []
        for start, end in self.hours.days[day.weekday()]:
            opens, closes = self._at(day, start), self._at(day, end)
            if closes > opens:  # an interval inside a skipped DST hour has no length
                intervals.append((opens, closes))
        return intervals

    def _open_intervals(self, first: date) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals in UTC from the local date `first` on, without end.

        Raises after ten years without a single open interval (e.g. every day a
        holiday), which would otherwise loop forever.
        """
        day, closed_days = first, 0
        while True:
            intervals = self._day(day)
            closed_days = 0 if intervals else closed_days + 1
            if closed_days > _MAX_DAYS:
                raise CalendarError("no open business hours in ten years; check the holidays")
            yield from intervals
            day += timedelta(days=1)

    def _at(self, day: date, minute: int) -> datetime:
        """Local wall time on `day` in UTC; minute 1440 is the next day's midnight."""
        if minute == 1440:
            day, minute = day + timedelta(days=1), 0
        local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=self.tz)
        return local.astimezone(UTC)

    def _after(self, start: datetime, seconds: float) -> datetime:
        start = _utc(start)
        left = timedelta(seconds=max(seconds, 0))
        if self._wall_clock:
            return start + left
        for opens, closes in self._open_intervals(self._local_date(start)):
            if closes <= start:
                continue
            begin = max(opens, start)
            if begin + left <= closes:  # ending exactly at closing stays on that day
                return begin + left
            left -= closes - begin
        raise AssertionError("unreachable")  # pragma: no cover

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def add(self, start: datetime, duration: BusinessDuration) -> datetime:
        """The moment `duration` of business time after `start`."""
        return self._after(start, self.seconds(duration))

    def point(self, start: datetime, duration: BusinessDuration, fraction: float) -> datetime:
        """The moment `fraction` of the duration has passed in business time."""
        return self._after(start, self.seconds(duration) * fraction)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two moments (zero when end is not after start)."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            return timedelta(0)
        if self._wall_clock:
            return end - start
        total = timedelta(0)
        day, last = self._local_date(start), self._local_date(end)
        while day <= last:
            for opens, closes in self._day(day):
                overlap = min(closes, end) - max(opens, start)
                if overlap > timedelta(0):
                    total += overlap
            day += timedelta(days=1)
        return total

    def is_open(self, at: datetime) -> bool:
        at = _utc(at)
        if self._wall_clock:
            return True
        return any(opens <= at < closes for opens, closes in self._day(self._local_date(at)))
