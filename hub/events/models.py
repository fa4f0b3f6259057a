"""Change events: the outbox, one delivery row per subscriber, and subscriptions.

An event says only "subject X of item Y changed (or was deleted)": no record
data. The raw subject is kept only while a delivery still needs it (the pseudonym
stays for the audit trail): an event without deliveries never stores it, and it is
erased once every delivery is delivered or cancelled. A dead letter keeps it, since
a replay sends it again.

An owner may send an idempotency key with each publish: a publish repeated with the
same key is the same event, never a second one (docs/events.md, "Publishing again").
"""

from datetime import datetime
from uuid import uuid4

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from onceonly.hub.kit.columns import created_at


def _id() -> str:
    return uuid4().hex


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        # One event per key and publishing department; events without a key (NULL)
        # never collide.
        sa.Index("uq_events_owner_idempotency_key", "owner_id", "idempotency_key", unique=True),
    )

    id: str = Field(default_factory=_id, primary_key=True, max_length=32)
    item_id: str = Field(foreign_key="items.id", index=True, max_length=128)
    owner_id: str = Field(foreign_key="departments.id", max_length=64)
    kind: str = Field(max_length=16)
    subject: str | None = Field(default=None, max_length=256)
    subject_pseudonym: str = Field(max_length=64)
    published_at: datetime = created_at()
    idempotency_key: str | None = Field(default=None, max_length=128)
    # The index of the event's ``event.publish`` entry: the receipt a repeat answers with
    audit_index: int | None = Field(default=None, sa_type=sa.BigInteger)


class Delivery(SQLModel, table=True):
    __tablename__ = "event_deliveries"
    __table_args__ = (
        sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
        sa.UniqueConstraint("event_id", "department_id", name="uq_delivery_event_department"),
    )

    id: str = Field(default_factory=_id, primary_key=True, max_length=32)
    event_id: str = Field(foreign_key="events.id", index=True, max_length=32)
    department_id: str = Field(foreign_key="departments.id", max_length=64)
    status: str = Field(default="pending", max_length=16)  # pending, delivered, dead, cancelled
    attempts: int = Field(default=0)
    next_attempt_at: datetime = created_at()
    lease_until: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    lease_token: str | None = Field(default=None, max_length=32)
    last_error: str | None = Field(default=None, max_length=300)
    delivered_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class Subscription(SQLModel, table=True):
    """A department asks to be told when records of an item change."""

    __tablename__ = "subscriptions"

    department_id: str = Field(foreign_key="departments.id", primary_key=True, max_length=64)
    item_id: str = Field(foreign_key="items.id", primary_key=True, max_length=128)
    created_at: datetime = created_at()
