"""Single-use identifiers kept in the database, so every replica refuses a replay."""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UsedJti(SQLModel, table=True):
    """A ``jti`` already accepted (RFC 7523 §3 item 7), kept until it expires."""

    __tablename__ = "used_jtis"

    key: str = Field(primary_key=True, max_length=64)  # sha256(kind, issuer, jti), hex
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)
