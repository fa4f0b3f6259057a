"""The checkpointer cosigns or extends only a stored checkpoint that a key the hub knows
signed (decision 0091, follow-up): a row changed in the database (a forged tree, a
signature line that no key made) raises the alarm instead of being signed. On SQLite
and PostgreSQL."""

import base64
import secrets
from pathlib import Path

import httpx
import sqlalchemy as sa

from onceonly.hub.audit import merkle
from onceonly.hub.audit.notes import Checkpoint
from onceonly.hub.db import make_sync_engine

from tests.hub.audit.test_audit_verify import (
    CHECKPOINT_INTERVAL,
    ORIGIN,
    SIZE,
    _entry,
    append,
    execute,
    stored_entries,
    wait_for_checkpoint,
)
from tests.hub_testing import running_hub, wait_until


def _stored_root(url: str, size: int) -> bytes:
    engine = make_sync_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT leaf FROM audit_entries ORDER BY idx")).all()
    engine.dispose()
    frontier = merkle.Frontier()
    for (leaf,) in rows[:size]:
        frontier.append(merkle.hash_leaf(bytes(leaf)))
    return frontier.root()


def test_a_checkpoint_row_forged_in_the_database_is_not_cosigned(
    database_url: str, tmp_path: Path
) -> None:
    def hub():  # type: ignore[no-untyped-def]
        return running_hub(
            database_url=database_url,
            data_dir=tmp_path / "hub",
            checkpoint_interval=CHECKPOINT_INTERVAL,
            audit_origin=ORIGIN,
        )

    with hub() as running:
        append(database_url, [_entry(n) for n in range(SIZE)])
        wait_for_checkpoint(running, SIZE)
        real = httpx.get(f"{running.url}/v1/audit/checkpoint").text
    # a database writer without the key: entry 3 changed, the row's root and note
    # replaced, with a signature line that no key made
    entries = stored_entries(database_url)
    edited = [*entries[:3], {**entries[3], "purpose": "curiosity"}, *entries[4:]]
    execute(database_url, "DELETE FROM audit_nodes", "DELETE FROM audit_entries")
    append(database_url, edited)
    forged = _stored_root(database_url, SIZE)
    junk = base64.b64encode(secrets.token_bytes(68)).decode()
    execute(
        database_url,
        "UPDATE audit_checkpoints SET root = :root, note = :note WHERE tree_size = :size",
        root=forged,
        note=f"{Checkpoint(ORIGIN, SIZE, forged).text()}\n\u2014 {ORIGIN} {junk}\n",
        size=SIZE,
    )
    with hub() as running:
        wait_until(lambda: httpx.get(f"{running.url}/readyz").status_code == 503)
        ready = httpx.get(f"{running.url}/readyz").text
        assert "is not signed by the hub's checkpoint key" in ready
        served = httpx.get(f"{running.url}/v1/audit/checkpoint").text
        assert served.count("\n\u2014 ") == 1  # not cosigned
        assert served != real
