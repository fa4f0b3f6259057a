"""The audit writer tries a batch again only when it lost a race for the next index;
a database that is away fails the batch at once (the writer's probe finds when it is
back), instead of five attempts, each after the same wait."""

import logging
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from onceonly.hub.audit import leaves
from onceonly.hub.audit.exceptions import AuditUnavailable
from onceonly.hub.audit.service import AuditLog, lost_race
from onceonly.hub.db import make_engine

from tests.hub.captured_logs import records_of
from tests.hub.pg_proxy import ResettingProxy, through, upstream_of
from tests.hub_testing import empty_postgres

pytestmark = pytest.mark.anyio


def _entry(n: int) -> dict[str, object]:
    return leaves.build_entry(
        time=datetime(2026, 12, 7, tzinfo=UTC),
        action="record.query",
        outcome="ok",
        request_id=f"r{n}",
    )


@pytest.mark.postgres
async def test_a_database_that_is_away_fails_the_batch_after_one_attempt(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The process's database, emptied: another module's test may have left entries
    # without their tree nodes there (test_audit_nodes_pg), and the first append, which
    # reads the frontier, then failed as a damaged log (seen under -n 2).
    empty_postgres(postgres_url)
    proxy = ResettingProxy(upstream_of(postgres_url))
    await proxy.start()
    engine = make_engine(through(proxy.port, postgres_url))
    log = AuditLog(engine, batch_size=4)
    await log.start()
    try:
        await log.append(_entry(0))  # through the proxy, while the database is there
        proxy.reset()
        proxy.refuse_new = True  # away: every new connection is cut at once
        before = proxy.accepted
        with records_of(caplog, "onceonly.audit", logging.WARNING):
            with pytest.raises(AuditUnavailable):
                await log.append(_entry(1))
        attempts = proxy.accepted - before
        assert not [r for r in caplog.records if "trying again" in r.getMessage()]
        assert attempts <= 2  # one attempt (its dead pooled connection replaced once);
        # before: five attempts, each connecting anew
        proxy.refuse_new = False
    finally:
        await log.stop()
        await engine.dispose()
        await proxy.close()


def _dbapi_error(orig: Exception) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError.instance(None, None, orig, Exception, hide_parameters=True)


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_only_a_lost_race_counts_as_one() -> None:
    """The codes themselves (what the stores raise is what the tests above and
    test_audit_log.py's two writers meet)."""
    for sqlstate in ("23505", "40001", "40P01"):
        assert lost_race(_dbapi_error(_PgError(sqlstate)))
    for sqlstate in ("08006", "57P01", "53100", "22001", "23502"):  # away, gone, full, refused
        assert not lost_race(_dbapi_error(_PgError(sqlstate)))
    import sqlite3

    race = sqlite3.IntegrityError("UNIQUE constraint failed")
    race.sqlite_errorname = "SQLITE_CONSTRAINT_PRIMARYKEY"
    assert lost_race(_dbapi_error(race))
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"
    assert not lost_race(_dbapi_error(locked))
    assert not lost_race(ConnectionError("not a database error"))
