"""Working-day deadlines: weekends, national holidays and cuti bersama do not count.

Pure: the holidays are passed in (the caller reads them from `lokal-id`), so workflows can
use these functions deterministically.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, timezone

WIB = timezone(timedelta(hours=7), "WIB")
CLOSE_OF_DAY = time(23, 59)


def is_working_day(day: date, holidays: frozenset[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def roll_forward(day: date, holidays: frozenset[date]) -> date:
    """The day itself if it is a working day, else the next working day."""
    while not is_working_day(day, holidays):
        day += timedelta(days=1)
    return day


def add_working_days(day: date, n: int, holidays: frozenset[date]) -> date:
    """`n` working days after (n > 0) or before (n < 0) `day`."""
    step = 1 if n >= 0 else -1
    remaining = abs(n)
    while remaining:
        day += timedelta(days=step)
        if is_working_day(day, holidays):
            remaining -= 1
    return day


def end_of_day(day: date) -> datetime:
    """23:59 WIB on `day`, in UTC: when a deadline on that day passes."""
    return datetime.combine(day, CLOSE_OF_DAY, tzinfo=WIB).astimezone(UTC)


def holidays_from(days: Iterable[str]) -> frozenset[date]:
    return frozenset(date.fromisoformat(d) for d in days)


# National holidays on fixed dates (Tahun Baru, Hari Buruh, Hari Lahir Pancasila,
# Proklamasi, Natal). The moving ones (Idul Fitri, Nyepi, Waisak, ...) and cuti bersama
# are set each year by the ministers' SKB; a cycle needs those too, from `lokal-id` or
# from its plan. These alone are a floor, for demos and tests of years nobody has yet.
FIXED_HOLIDAYS = ((1, 1), (5, 1), (6, 1), (8, 17), (12, 25))


def fixed_holidays(*years: int) -> list[str]:
    return [date(y, m, d).isoformat() for y in years for m, d in FIXED_HOLIDAYS]
