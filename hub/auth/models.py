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


class ClientDisablement(SQLModel, table=True):
    """When an administrator last disabled a client. It is enabled again only once
    every access token it held then has expired, so that none of them comes back."""

    __tablename__ = "client_disablements"

    client_id: str = Field(primary_key=True, foreign_key="clients.client_id", max_length=128)
    disabled_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
