"""The efficiency report's roll-ups: what the audit log's record queries add up to.

Each table is a sum over audit entries, kept per period (a month ``2026-11``, its
quarter ``2026-Q4`` and its year ``2026``, all UTC), so that a report of any period
reads a few grouped rows instead of the log. The roll-up (onceonly.hub.reports.rollup)
adds the entries ``[0, report_cursor.next_index)`` and nothing else, exactly once:
the tables can always be rebuilt from the log, and checked against it.
"""

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class ReportCursor(SQLModel, table=True):
    """How far into the log a roll-up has added: entries ``[0, next_index)``."""

    __tablename__ = "report_cursor"

    name: str = Field(primary_key=True, max_length=32)
    next_index: int = Field(sa_column=sa.Column("next_index", sa.BigInteger, nullable=False))


class ReportExchanges(SQLModel, table=True):
    """Record queries per period, item, consumer department, purpose and outcome.

    ``reached``: the query got as far as the owner's adapter (its entry names the owner).
    Missing values are stored as ``""`` (they are part of the key).
    """

    __tablename__ = "report_exchanges"

    period: str = Field(primary_key=True, max_length=8)
    item: str = Field(primary_key=True, max_length=128)
    consumer: str = Field(primary_key=True, max_length=64)
    purpose: str = Field(primary_key=True, max_length=64)
    outcome: str = Field(primary_key=True, max_length=16)
    reason: str = Field(primary_key=True, max_length=64)
    reached: bool = Field(primary_key=True)
    queries: int = Field(sa_column=sa.Column("queries", sa.BigInteger, nullable=False))


class ReportOwnerTimes(SQLModel, table=True):
    """How many of an item's owner calls took ``ms`` whole milliseconds, per period:
    exact percentiles at millisecond resolution from a few hundred rows."""

    __tablename__ = "report_owner_times"

    period: str = Field(primary_key=True, max_length=8)
    item: str = Field(primary_key=True, max_length=128)
    ms: int = Field(primary_key=True)
    calls: int = Field(sa_column=sa.Column("calls", sa.BigInteger, nullable=False))


class ReportRecords(SQLModel, table=True):
    """The distinct records served per period: one row per item and subject pseudonym
    (the same pseudonym the audit log's entries carry), with how often it was served."""

    __tablename__ = "report_records"

    period: str = Field(primary_key=True, max_length=8)
    item: str = Field(primary_key=True, max_length=128)
    subject: str = Field(primary_key=True, max_length=64)
    uses: int = Field(sa_column=sa.Column("uses", sa.BigInteger, nullable=False))
