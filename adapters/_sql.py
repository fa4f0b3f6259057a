"""The SQL source: one parameterized query per item, on any SQLAlchemy database.

The engine is synchronous and runs in a worker thread: every SQLAlchemy dialect has
a synchronous driver, while many systems a department runs (Oracle, SQL Server,
DB2) have no asyncio one. A query that outlives ``timeout`` is abandoned and
answered as 503; its thread finishes on its own, which on PostgreSQL the engine made
from settings bounds (:func:`postgres_connect_args`).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

import anyio
import anyio.to_thread
import sqlalchemy as sa
from pydantic import Field, field_validator, model_validator

from ._errors import ConfigError
from ._mapping import ManyMapping, assemble, check_paths
from ._sources import (
    InvalidSourceRecord,
    ItemBase,
    RecordSource,
    SourceMisconfigured,
    SourceUnavailable,
)
from ._store import RecordStore

__all__ = ["SqlItem", "SqlSource"]

Record = dict[str, Any]
Row = sa.RowMapping

_PROBE_SUBJECT = "onceonly-check"
# SQLSTATEs of a query the database cancelled: query_canceled, lock_not_available
_CANCELLED = frozenset({"57014", "55P03"})

# libpq parameters that bound how long a worker thread waits on a PostgreSQL server that
# answers nothing: the hub's own for its database (decision 0052 explains each value;
# tests/adapters/test_adapters_sources_sql_timeouts.py keeps the two the same). The
# adapters do not import the hub, so they are written here again.
POSTGRES_TIMEOUTS: Mapping[str, str] = {
    "connect_timeout": "5",  # seconds for the connection and login
    "keepalives": "1",
    "keepalives_idle": "10",  # an idle connection is probed after 10 s,
    "keepalives_interval": "5",  # then every 5 s,
    "keepalives_count": "3",  # and closed after 3 probes unanswered: 25 s
    "tcp_user_timeout": "25000",  # ms that sent data may stay unacknowledged (Linux)
}
# The drivers that hand their connect arguments to libpq.
_LIBPQ_DRIVERS = frozenset({"psycopg", "psycopg2"})


class SqlItem(ItemBase):
    """``source = "sql"``: the settings of one item's `SqlSource`.

    Example (TOML)::

        [items."person.residential-address"]
        source = "sql"
        url_env = "CIVIL_REGISTRY_DB"   # or url = "sqlite:////srv/registry.db"
        query = "SELECT line1, town FROM addresses WHERE person_code = :subject"
        [items."person.residential-address".columns]
        street = "line1"
        city = "town"
    """

    source: Literal["sql"]
    url: str | None = Field(default=None, min_length=1)
    url_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    query: str = Field(min_length=1)
    columns: dict[str, str] | None = None
    many: bool = False
    max_rows: int = Field(default=1000, ge=1, le=100_000)
    keep_nulls: bool = False
    timeout: float = Field(default=5.0, gt=0, le=300)

    @field_validator("query")
    @classmethod
    def _binds_only_subject(cls, query: str) -> str:
        binds = set(sa.text(query).compile().params)
        if binds != {"subject"}:
            found = ", ".join(sorted(f":{name}" for name in binds)) or "none"
            raise ValueError(f"the query must bind exactly :subject (found {found})")
        return query

    @field_validator("url")
    @classmethod
    def _no_password_in_file(cls, url: str) -> str:
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError as error:
            raise ValueError(f"not an SQLAlchemy URL: {error}") from error
        if parsed.password is not None:
            raise ValueError("holds a password: name an environment variable in url_env instead")
        return url

    @model_validator(mode="after")
    def _check(self) -> SqlItem:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        if self.many and not self.columns:
            raise ValueError("many = true needs a columns table")
        check_paths(self.columns or {}, many=self.many)
        return self

    def open(self, *, store: RecordStore) -> RecordSource:
        return SqlSource(
            _engine(self._resolved_url(), timeout=self.timeout),
            query=self.query,
            columns=self.columns,
            many=self.many,
            max_rows=self.max_rows,
            keep_nulls=self.keep_nulls,
            timeout=self.timeout,
        )

    def _resolved_url(self) -> str:
        if self.url is not None:
            return self.url
        assert self.url_env is not None
        url = os.environ.get(self.url_env)
        if not url:
            raise ConfigError(f"url_env: the environment variable {self.url_env} is not set")
        return url


def _engine(url: str, *, timeout: float) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
        # hide_parameters: a database error must not carry the subject into a log
        return sa.create_engine(
            parsed, pool_pre_ping=True, hide_parameters=True, **_bounds(parsed, timeout)
        )
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as error:
        raise ConfigError(f"url: cannot make a database engine: {error}") from error


def _bounds(url: sa.URL, timeout: float) -> dict[str, Any]:
    """On PostgreSQL through libpq, what keeps a worker thread from outliving the
    query's ``timeout`` by more than libpq's bounds: a pool that waits no longer than
    the query, and :func:`postgres_connect_args`. Other databases keep their driver's
    and SQLAlchemy's defaults."""
    if url.get_backend_name() != "postgresql" or url.get_driver_name() not in _LIBPQ_DRIVERS:
        return {}
    return {
        "pool_timeout": timeout,
        "connect_args": postgres_connect_args(url, statement_timeout=timeout),
    }


def postgres_connect_args(url: sa.URL, *, statement_timeout: float) -> dict[str, str]:
    """The libpq parameters an item's engine passes to the driver: each of
    :data:`POSTGRES_TIMEOUTS` that ``url``'s query does not set (nor, for
    ``connect_timeout``, ``PGCONNECT_TIMEOUT``), and ``options`` with the server's
    ``statement_timeout`` (``statement_timeout`` seconds, in ms) after the options the
    URL's query or ``PGOPTIONS`` give, unless those set it. SQLAlchemy lets these win
    over the URL's query, so nothing the operator wrote is in them but the options,
    kept as written."""
    given = url.query
    args = {name: value for name, value in POSTGRES_TIMEOUTS.items() if name not in given}
    if os.environ.get("PGCONNECT_TIMEOUT"):
        args.pop("connect_timeout", None)
    options = given.get("options", os.environ.get("PGOPTIONS", ""))
    if isinstance(options, str) and "statement_timeout" not in options:
        milliseconds = math.ceil(statement_timeout * 1000)
        args["options"] = f"{options} -c statement_timeout={milliseconds}".lstrip()
    return args


class SqlSource:
    """Reads a record with one parameterized query; ``:subject`` is bound, never
    formatted into the SQL.

    ``columns`` maps property paths to column names (unmapped columns are ignored);
    without it every column becomes the property its label names. A NULL leaves
    the property out, unless ``keep_nulls``. The query must find at most one row;
    with ``many``, every row adds an element to the one ``name[].field`` array.

    Example::

        engine = sqlalchemy.create_engine("postgresql+psycopg://registry@db/registry")
        source = SqlSource(
            engine,
            query="SELECT line1, town FROM addresses WHERE person_code = :subject",
            columns={"street": "line1", "city": "town"},
        )
        await source.fetch("person.residential-address", "38001085718")
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        query: str,
        columns: Mapping[str, str] | None = None,
        many: bool = False,
        max_rows: int = 1000,
        keep_nulls: bool = False,
        timeout: float = 5.0,
    ) -> None:
        self._engine = engine
        self._query = sa.text(query)
        self._columns = columns
        self._many = ManyMapping(columns) if many and columns else None
        self._limit = max_rows + 1 if many else 2
        self._keep_nulls = keep_nulls
        self._timeout = timeout

    async def fetch(self, item: str, subject: str) -> Record | None:
        rows = await self._in_thread(self._rows, subject)
        if self._many is not None:
            if len(rows) == self._limit:
                raise InvalidSourceRecord(f"the query found more than {self._limit - 1} rows")
            return self._many.assemble([_reader(row) for row in rows], keep_nulls=self._keep_nulls)
        if len(rows) > 1:
            raise InvalidSourceRecord("the query found more than one row for the subject")
        return self._record(rows[0]) if rows else None

    async def probe(self, item: str) -> str:
        """Run the query with a made-up subject and check the mapped columns exist."""
        found = await self._in_thread(self._result_columns, quote_errors=True)
        missing = sorted(set((self._columns or {}).values()) - set(found))
        if missing:
            raise InvalidSourceRecord(f"the query has no column {', '.join(missing)}")
        return f"the query runs on {self._engine.dialect.name} ({len(found)} columns)"

    async def aclose(self) -> None:
        self._engine.dispose()

    def _rows(self, subject: str) -> Sequence[Row]:
        with self._engine.connect() as connection:
            result = connection.execute(self._query, {"subject": subject})
            return result.mappings().fetchmany(self._limit)

    def _result_columns(self) -> list[str]:
        """The query's column names, run with a made-up subject, or with NULL when that
        subject does not fit the query's parameter (a number, date or UUID key: a data
        error). A database reached that refuses the query (a syntax error, a missing
        table, no permission) is `SourceMisconfigured`; one not reached, lost
        meanwhile, that cancelled the query (a statement or lock timeout) or still
        finds a data error, is unavailable: a warning at start-up, not a mistake."""
        try:
            try:
                return self._columns_for(_PROBE_SUBJECT)
            except sa.exc.DBAPIError as error:
                if not _data_error(error):
                    raise
            return self._columns_for(None)  # NULL fits a parameter of any type
        except sa.exc.DBAPIError as error:
            if error.connection_invalidated or _not_a_mistake(error):
                raise
            cause = error.orig or error
            said = next(iter(str(cause).strip().splitlines()), "")
            raise SourceMisconfigured(
                f"the database query failed ({type(cause).__name__}: {said})"
            ) from error

    def _columns_for(self, subject: str | None) -> list[str]:
        with self._engine.connect() as connection:
            result = connection.execute(self._query, {"subject": subject})
            columns = list(result.keys())
            result.close()
            connection.rollback()
        return columns

    def _record(self, row: Row) -> Record:
        if self._columns is None:
            return assemble({name: name for name in row}, _reader(row), keep_nulls=self._keep_nulls)
        return assemble(self._columns, _reader(row), keep_nulls=self._keep_nulls)

    async def _in_thread(self, function: Any, *args: Any, quote_errors: bool = False) -> Any:
        """Run ``function`` in a worker thread under the timeout. The database's own
        message is passed on only with ``quote_errors`` (no real subject was bound)."""
        try:
            with anyio.fail_after(self._timeout):
                return await anyio.to_thread.run_sync(function, *args, abandon_on_cancel=True)
        except TimeoutError as error:
            raise SourceUnavailable(f"the database did not answer in {self._timeout} s") from error
        except sa.exc.SQLAlchemyError as error:
            # The message may quote the bound subject: only the types are passed on.
            cause = getattr(error, "orig", None) or error
            first_line = next(iter(str(cause).strip().splitlines()), "")
            said = f": {first_line}" if quote_errors and first_line else ""
            raise SourceUnavailable(
                f"the database query failed ({type(cause).__name__}{said})"
            ) from error


def _sqlstate(error: sa.exc.DBAPIError) -> str:
    """The SQLSTATE of a database's refusal, where its driver gives one (psycopg as
    ``sqlstate``, psycopg2 as ``pgcode``), or ``""``."""
    cause = error.orig
    return str(getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None) or "")


def _data_error(error: sa.exc.DBAPIError) -> bool:
    """A value the query cannot take (SQLSTATE class 22: invalid_text_representation,
    numeric_value_out_of_range...), which PEP 249 drivers raise as ``DataError``."""
    return isinstance(error, sa.exc.DataError) or _sqlstate(error).startswith("22")


def _not_a_mistake(error: sa.exc.DBAPIError) -> bool:
    """A refusal that says nothing wrong of the configuration: a data error, or the
    query cancelled (57014 query_canceled: a statement_timeout) or a lock not had
    (55P03 lock_not_available, SQLite's SQLITE_BUSY: a migration holds the table)."""
    busy = str(getattr(error.orig, "sqlite_errorname", "")).startswith("SQLITE_BUSY")
    return _data_error(error) or _sqlstate(error) in _CANCELLED or busy


def _reader(row: Row) -> Any:
    def read(column: str) -> object:
        if column not in row:  # a mistyped mapping, never a property left out
            raise InvalidSourceRecord(f"the query has no column {column!r}")
        return _json_value(column, row[column])

    return read


def _json_value(column: str, value: object) -> object:
    """The JSON form of a column value: dates as ISO 8601, decimals as numbers."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise InvalidSourceRecord(f"column {column!r} holds a {type(value).__name__}, not JSON")
