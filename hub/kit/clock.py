"""Time as the hub sees it: always UTC, always timezone-aware."""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339_ms(moment: datetime) -> str:
    """Format as RFC 3339 in UTC with millisecond precision (``2026-01-02T03:04:05.678Z``)."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def created_at() -> Any:
    """A model field that records when the row was made."""
    return Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), nullable=False)
