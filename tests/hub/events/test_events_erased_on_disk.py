"""An erased raw subject is gone from the SQLite file, not only from the table
(docs/events.md, decision 0070): the hub's connections set ``secure_delete``, so the
space a subject's bytes took is overwritten with zeros whenever SQLite frees it (a row
rewritten without the subject, or moved within its page), and a checkpoint carries
the zeros into the database file. Without it, whether SQLite happens to write the
shorter row over the old one depends on where the row sits in its page: a row that
grew while another sat above it leaves its old bytes in the page's free space.

SQLite only: on PostgreSQL an old row version stays until VACUUM (docs/events.md says
so), which no setting of the hub's changes.
"""

import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from onceonly.adapters import DeliveredEvent
from onceonly.hub.db import make_engine, make_sync_engine, session_factory
from onceonly.hub.events import repository

from tests.hub.events.test_events import WorldMaker, _point, consumer_adapter
from tests.hub_testing import migrated_sqlite, wait_until

SUBJECTS = ("38001085718", "49403136515", "37605030299", "60001019906", "50001018908")


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return migrated_sqlite(sqlite_template, tmp_path_factory.mktemp("db"))


def _checkpointed(database_url: str) -> bytes:
    """The database file's bytes once all its WAL is in it, and the WAL emptied."""
    path = Path(make_url(database_url).database or "")
    with closing(sqlite3.connect(path)) as conn:
        (busy, _, _) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    return path.read_bytes()


def _secure_delete_off(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.execute("PRAGMA secure_delete=OFF")


def _event(event_id: str, subject: str) -> dict[str, object]:
    return {
        "id": event_id,
        "item_id": "person.residential-address",
        "owner_id": "civil-registry",
        "kind": "changed",
        "subject": subject,
        "subject_pseudonym": event_id * 2,
        "published_at": datetime(2026, 12, 7, tzinfo=UTC),
    }


@pytest.mark.anyio
async def test_a_subject_erased_from_a_row_that_moved_in_its_page_leaves_no_bytes(
    catalogued_sqlite_template: Path, tmp_path: Path
) -> None:
    database_url = migrated_sqlite(catalogued_sqlite_template, tmp_path)
    engine = make_engine(database_url)
    # SQLite's own default is off; Debian's build turns it on: this is the default's
    # connection, which the hub must set up itself (its listener runs after this one).
    sa.event.listen(engine.sync_engine, "connect", _secure_delete_off, insert=True)
    sessions = session_factory(engine)
    first, second = ("a" * 32, SUBJECTS[0]), ("b" * 32, SUBJECTS[1])
    for event_id, subject in (first, second):
        async with sessions() as session, session.begin():
            await repository.insert_event(session, event=_event(event_id, subject), departments=[])
    async with sessions() as session, session.begin():  # the first row grows, the second
        await repository.set_audit_index(session, event_id=first[0], index=10**9)  # above it
    async with engine.begin() as conn:
        for event_id, _ in (first, second):
            await repository.forget_subject_when_done(conn, event_id=event_id)
    await engine.dispose()
    held = _checkpointed(database_url)
    assert [subject for _, subject in (first, second) if subject.encode() in held] == []


def test_erased_subjects_leave_no_bytes_in_the_database_file(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    engine = make_sync_engine(database_url)
    published = threading.Event()

    def after_every_publish(_: DeliveredEvent) -> None:
        published.wait(10)  # the events' rows share a page: erased out of their order

    def all_erased() -> bool:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(subject) FROM events")).scalar() == 0

    with (
        event_world(database_url, tmp_path) as world,
        consumer_adapter(world, tmp_path, on_event=after_every_publish) as url,
    ):
        _point(world, url)
        world.subscribe()
        for subject in SUBJECTS:
            world.publish(subject)
        published.set()
        wait_until(lambda: len(world.received) == len(SUBJECTS))
        wait_until(all_erased)
    engine.dispose()
    held = _checkpointed(database_url)
    assert [subject for subject in SUBJECTS if subject.encode() in held] == []
