"""Time as the hub sees it: always UTC, always timezone-aware."""

from datetime import UTC, datetime
from typing import Annotated, overload

from pydantic import AfterValidator


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339_ms(moment: datetime) -> str:
    """Format as RFC 3339 in UTC with millisecond precision (``2026-01-02T03:04:05.678Z``)."""
    utc = moment.astimezone(UTC)  # %Y would write year 1 as "1", not "0001"
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: datetime | None) -> datetime | None:
    """A time without an offset read as UTC (SQLite gives stored times back without one;
    auditors may write one without); None stays None."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """The same instant in UTC (one without an offset read as UTC): what both databases
    compare correctly with stored times (SQLite compares them as text)."""
    moment = aware(moment)
    return None if moment is None else moment.astimezone(UTC)


# A response model's time: one stored without an offset (SQLite) is read as UTC, so
# every time the API shows carries its offset.
UtcDatetime = Annotated[datetime, AfterValidator(aware)]
