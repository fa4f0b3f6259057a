"""Column definitions that every domain's tables share."""

from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from onceonly.hub.kit.clock import utcnow


def created_at() -> Any:
    """A model field that records when the row was made (timezone-aware UTC)."""
    return Field(default_factory=utcnow, sa_type=sa.DateTime(timezone=True), nullable=False)
