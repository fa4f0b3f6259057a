"""The audit writer's frontier read on PostgreSQL (``fetch_nodes_pg``, one text for any
set of nodes) finds what the SQLAlchemy query (``fetch_nodes``) finds: leaves and inner
nodes, and nothing for nodes the log does not hold."""

import asyncio

import pytest

from onceonly.hub.audit import leaves, merkle, repository
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.db import make_engine
from onceonly.hub.kit.clock import SYSTEM_CLOCK

from tests.hub_testing import empty_postgres

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_the_frontier_read_finds_what_the_sqlalchemy_query_finds(
    postgres_url: str,
) -> None:
    empty_postgres(postgres_url)
    engine = make_engine(postgres_url)
    log = AuditLog(engine, batch_size=4)
    await log.start()
    try:
        await asyncio.gather(
            *(
                log.append(
                    leaves.build_entry(
                        time=SYSTEM_CLOCK.now(), action="t", outcome="ok", request_id=f"r{n}"
                    )
                )
                for n in range(11)
            )
        )
    finally:
        await log.stop()
    held = [*merkle.perfect_subtrees(0, 11), (1, 2), (2, 1), (0, 10)]
    lacking = [(0, 11), (0, 99), (1, 5), (2, 2), (4, 0)]
    try:
        async with engine.connect() as conn:
            expected = await repository.fetch_nodes(conn, [*held, *lacking])
            await conn.rollback()
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            for _ in range(7):  # past psycopg's threshold: prepared, then its generic plan
                found = await repository.fetch_nodes_pg(driver, [*held, *lacking])
                assert found == expected
                assert sorted(found) == sorted(set(held))
            assert await repository.fetch_nodes_pg(driver, lacking) == {}
            await driver.rollback()
    finally:
        await engine.dispose()
        empty_postgres(postgres_url)
