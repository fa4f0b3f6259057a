"""Authentication state kept in the database, so that every replica agrees on it."""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UsedJti(SQLModel, table=True):
    """A ``jti`` already accepted (RFC 7523 §3 item 7, RFC 9449 §11.1), kept until it expires."""

    __tablename__ = "used_jtis"

    key: str = Field(primary_key=True, max_length=64)  # sha256(kind, issuer, jti), hex
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)


class RevokedToken(SQLModel, table=True):
    """An access token revoked before its time (RFC 7009 §2), kept until it expires."""

    __tablename__ = "revoked_tokens"

    jti: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)
