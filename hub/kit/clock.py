"""Time as the hub sees it: always UTC, always timezone-aware."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339_ms(moment: datetime) -> str:
    """Format as RFC 3339 in UTC with millisecond precision (``2026-01-02T03:04:05.678Z``)."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def aware(moment: datetime) -> datetime:
    """A stored time as UTC: SQLite gives back timezone-naive values (stored in UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
