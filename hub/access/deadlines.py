"""Working-day arithmetic for an owner's answer deadline. Pure.

Working days are Monday to Friday, except the configured public holidays; days
are counted in UTC (the hub's clock). The deadline keeps the time of day of the
start: a request made on Friday at 10:00 with one working day is due on Monday at
10:00 (or on Tuesday, if that Monday is a holiday).
"""

from collections.abc import Iterable
from datetime import date, datetime, timedelta


def is_working_day(day: date, holidays: frozenset[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def add_working_days(start: datetime, days: int, holidays: Iterable[date] = ()) -> datetime:
    """``start`` moved forward by ``days`` working days (``days`` >= 0)."""
    if days < 0:
        raise ValueError("days must not be negative")
    off = frozenset(holidays)
    moment, counted = start, 0
    while counted < days:
        moment += timedelta(days=1)
        if is_working_day(moment.date(), off):
            counted += 1
    return moment
