"""People tables: accounts, roles, sign-in sessions and failed sign-ins."""

from datetime import datetime
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from onceonly.hub.kit.columns import created_at


class Person(SQLModel, table=True):
    """A person who signs in: with a local password (argon2id, optional TOTP) or with an
    external OpenID Connect provider (``oidc_issuer`` + ``oidc_subject``)."""

    __tablename__ = "people"
    __table_args__ = (
        sa.UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_people_oidc_identity"),
    )

    id: str = Field(default_factory=lambda: uuid4().hex, primary_key=True, max_length=32)
    username: str = Field(unique=True, max_length=64)
    display_name: str = Field(default="", max_length=200)
    password_hash: str | None = Field(default=None, max_length=255)
    # The TOTP secret, sealed (AES-GCM under a key derived from the hub's secret).
    totp_secret: str | None = Field(default=None, max_length=255)
    totp_confirmed_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    totp_last_step: int | None = Field(default=None, sa_type=sa.BigInteger)
    oidc_issuer: str | None = Field(default=None, max_length=500)
    oidc_subject: str | None = Field(default=None, max_length=255)
    status: str = Field(default="active", max_length=16)
    created_at: datetime = created_at()


class PersonRole(SQLModel, table=True):
    """One role of a person. ``department_id`` names the department a steward acts for
    and is the empty string for the administrator and auditor roles."""

    __tablename__ = "person_roles"

    person_id: str = Field(foreign_key="people.id", primary_key=True, max_length=32)
    role: str = Field(primary_key=True, max_length=16)
    department_id: str = Field(default="", primary_key=True, max_length=64)


class PersonSession(SQLModel, table=True):
    """A signed-in person's bearer token, kept only as its SHA-256."""

    __tablename__ = "person_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)
    person_id: str = Field(foreign_key="people.id", index=True, max_length=32)
    method: str = Field(max_length=16)
    created_at: datetime = created_at()
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class SignInFailure(SQLModel, table=True):
    """The failed sign-ins counted under one key (a keyed hash of an account, of a
    source address, or of both) and when the latest was; forgotten after
    ``sign_in_window`` without one (docs/people.md, "Signing in with a password")."""

    __tablename__ = "sign_in_failures"

    key: str = Field(primary_key=True, max_length=64)
    failures: int = Field(default=0)
    last_failure_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)
