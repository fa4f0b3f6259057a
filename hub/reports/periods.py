"""Report periods: a month ``2026-11``, a quarter ``2026-Q4`` or a year ``2026``, in UTC. Pure."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

# ASCII digits only: \d would take full-width and other Unicode digits too.
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_QUARTER = re.compile(r"([0-9]{4})-Q([1-4])")
_YEAR = re.compile(r"([0-9]{4})")


class BadPeriod(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    """A named period and its half-open interval ``[start, end)``."""

    name: str
    start: datetime
    end: datetime

    @property
    def kind(self) -> str:
        return "quarter" if "Q" in self.name else "month" if "-" in self.name else "year"


def parse(text: str) -> Period:
    """``2026-11``, ``2026-Q4`` or ``2026`` (years 1970 to 9998); BadPeriod otherwise."""
    if match := _MONTH.fullmatch(text):
        year, month = int(match[1]), int(match[2])
        return _period(f"{year:04d}-{month:02d}", year, month, 1)
    if match := _QUARTER.fullmatch(text):
        year, quarter = int(match[1]), int(match[2])
        return _period(f"{year:04d}-Q{quarter}", year, 3 * quarter - 2, 3)
    if match := _YEAR.fullmatch(text):
        year = int(match[1])
        return _period(f"{year:04d}", year, 1, 12)
    shown = text if len(text) <= 20 else text[:20] + "…"
    raise BadPeriod(f"period {shown!r} is not a month (2026-11), a quarter (2026-Q4) or a year")


def _period(name: str, year: int, month: int, months: int) -> Period:
    if not 1970 <= year <= 9998:
        raise BadPeriod(f"period {name!r} is outside the years 1970 to 9998")
    start = datetime(year, month, 1, tzinfo=UTC)
    after = month - 1 + months
    end = datetime(year + after // 12, after % 12 + 1, 1, tzinfo=UTC)
    return Period(name, start, end)


def month_of(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def keys_of(time: str) -> tuple[str, str, str]:
    """The month, quarter and year an entry's RFC 3339 UTC time (``2026-11-05T…Z``) falls in."""
    year, month = time[:4], int(time[5:7])
    return f"{year}-{month:02d}", f"{year}-Q{(month - 1) // 3 + 1}", year


def last_month(moment: datetime) -> str:
    """The month before the one ``moment`` is in (the latest month that has ended)."""
    utc = moment.astimezone(UTC)
    year, month = (utc.year, utc.month - 1) if utc.month > 1 else (utc.year - 1, 12)
    return f"{year:04d}-{month:02d}"
