"""Two-sided evidence: the adapters' own trails agree with the hub's audit log, and
every kind of disagreement is reported."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from joserfc.jwk import ECKey

from onceonly.adapters import HubClient, RecordStore, load_or_create_key, public_jwks
from onceonly.adapters._reconcile import reconcile
from onceonly.hub.audit import leaves
from onceonly.hub.cli import main
from onceonly.hub.db import WRITE_OPTION, make_sync_engine
from onceonly.hub.kit import base64url

from tests.hub.audit.copied_worlds import copied_exchange_world
from tests.hub.audit.hub_copies import Copies
from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER,
    CONSUMER_CLIENT,
    IDENTITY,
    OWNER,
    PURPOSE,
    World,
)

SUBJECTS = ["38001085718", "49403136515", "61506230020"]
OWNER_CLIENT = f"{OWNER}-adapter"
Kind = tuple[str, str | None]  # a difference's kind and member


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Copies:
    return Copies(tmp_path_factory.mktemp("copies"))


@pytest.fixture
def world(copies: Copies, database_url: str, tmp_path: Path) -> Iterator[World]:
    """A world of the test's own (each tampers with the log or a trail), copied from
    the module's: the catalogue, client and grant are built once per database."""
    with copied_exchange_world(copies, database_url=database_url, tmp_path=tmp_path) as built:
        yield built


def _exchange(world: World, trail: RecordStore) -> None:
    for subject in SUBJECTS:
        world.owner_store.put(ADDRESS, subject, ADDRESS_RECORD, announce=False)
    with HubClient(
        world.hub.url, client_id=CONSUMER_CLIENT, key=world.consumer_key, trail=trail
    ) as consumer:
        for subject in SUBJECTS:
            consumer.fetch(ADDRESS, subject, purpose=PURPOSE)


def _owner(world: World) -> HubClient:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_client(OWNER_CLIENT, department=OWNER, jwks=public_jwks(key))
    return HubClient(world.hub.url, client_id=OWNER_CLIENT, key=key)


def _sides(world: World, trail: RecordStore) -> tuple[list[str], list[str]]:
    with _owner(world) as owner, world.client() as consumer:
        owner_side = reconcile(
            hub=owner,
            served=world.owner_store.served_entries(),
            receipts=[],
            owned_items={ADDRESS, IDENTITY},
            key_pseudonym=world.owner_store.trail_key.pseudonym,
        )
        consumer_side = reconcile(
            hub=consumer, served=[], receipts=trail.receipts(), owned_items=set()
        )
    return [d.kind for d in owner_side], [d.kind for d in consumer_side]


def test_both_sides_agree_with_the_hub_after_honest_exchanges(world: World, tmp_path: Path) -> None:
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        assert len(trail.receipts()) == 3
        assert _sides(world, trail) == ([], [])


def test_a_receipt_that_does_not_match_the_log_is_reported(world: World, tmp_path: Path) -> None:
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'consumer.db'}")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE receipts SET leaf_hash = 'forged' WHERE id = 2"))
        engine.dispose()
        assert _sides(world, trail) == ([], ["receipt-mismatch"])


def _edit_entry(
    database_url: str, index: int, change: dict[str, Any], *, rehash: bool = False
) -> None:
    """An operator rewrites entry ``index`` in the hub's database; with ``rehash``, its
    stored leaf hash too, so that the hub's answers are consistent with themselves."""
    engine = make_sync_engine(database_url)
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:  # lock first
        leaf = conn.execute(
            sa.text("SELECT leaf FROM audit_entries WHERE idx = :i"), {"i": index}
        ).scalar_one()
        forged = leaves.leaf_bytes({**json.loads(bytes(leaf)), **change})
        values: dict[str, Any] = {"leaf": forged, "i": index}
        update = "UPDATE audit_entries SET leaf = :leaf WHERE idx = :i"
        if rehash:
            update = "UPDATE audit_entries SET leaf = :leaf, leaf_hash = :hash WHERE idx = :i"
            values["hash"] = leaves.leaf_hash(forged)
        conn.execute(sa.text(update), values)
    engine.dispose()


def _differences(world: World, trail: RecordStore) -> tuple[list[Kind], list[Kind]]:
    """Each side's differences as (kind, member)."""
    with _owner(world) as owner, world.client() as consumer:
        owner_side = reconcile(
            hub=owner,
            served=world.owner_store.served_entries(),
            receipts=[],
            owned_items={ADDRESS, IDENTITY},
            key_pseudonym=world.owner_store.trail_key.pseudonym,
        )
        consumer_side = reconcile(
            hub=consumer,
            served=[],
            receipts=trail.receipts(),
            owned_items=set(),
            department=CONSUMER,
        )
    return [(d.kind, d.member) for d in owner_side], [(d.kind, d.member) for d in consumer_side]


def test_an_entry_whose_commitment_was_changed_is_reported_by_the_consumer(
    world: World, tmp_path: Path, database_url: str
) -> None:
    """An operator rewrites the record an entry commits to and leaves its leaf hash alone
    (a public monitor sees nothing); the consumer's key and its receipt see it, and the
    owner sees that the entry no longer hashes to its leaf hash."""
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        _edit_entry(database_url, trail.receipts()[1].index, {"commitment": "hmac-sha256:x"})
        assert _sides(world, trail) == (["entry-differs"], ["receipt-mismatch"])


HASH_KEPT_OR_REDONE = pytest.mark.parametrize("rehash", [False, True], ids=["kept", "redone"])


@HASH_KEPT_OR_REDONE
def test_an_entry_whose_purpose_was_changed_is_reported_by_both_sides(
    world: World, tmp_path: Path, database_url: str, rehash: bool
) -> None:
    """Each side checks the entry's members against what it knows itself, whether or
    not the leaf hash was forged to match."""
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        victim = trail.receipts()[1].index
        _edit_entry(database_url, victim, {"purpose": "tax-assessment"}, rehash=rehash)
        owner_side, consumer_side = _differences(world, trail)
    expected_owner = [("entry-differs", "purpose")]
    if not rehash:
        expected_owner.insert(0, ("entry-differs", "leaf"))
    assert owner_side == expected_owner
    assert consumer_side == [("receipt-mismatch", None), ("entry-differs", "purpose")]


@HASH_KEPT_OR_REDONE
def test_an_entry_about_another_subject_is_reported_by_the_owner(
    world: World, tmp_path: Path, database_url: str, rehash: bool
) -> None:
    """The hub told the owner, in its request token, the pseudonym the entry would
    keep; the owner's trail holds it and compares."""
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        someone_else = world.hub.keys.pseudonym("49002124277")
        _edit_entry(
            database_url, trail.receipts()[0].index, {"subject": someone_else}, rehash=rehash
        )
        owner_side, consumer_side = _differences(world, trail)
    expected_owner = [("entry-differs", "subject")]
    if not rehash:
        expected_owner.insert(0, ("entry-differs", "leaf"))
    assert owner_side == expected_owner
    assert consumer_side == [("receipt-mismatch", None)]  # its receipt: the entry changed


@pytest.mark.parametrize(
    ("change", "owner_sees", "consumer_sees"),
    [
        ({"item": IDENTITY}, ["item"], [("receipt-mismatch", None), ("entry-differs", "item")]),
        (
            {"time": "2026-01-01T00:00:00.000Z"},
            ["time"],
            [("receipt-mismatch", None), ("entry-differs", "time")],
        ),
        # the entry now names another department: the consumer may no longer read it,
        # and its receipt names an entry it cannot find
        ({"department": "tax"}, ["department"], [("receipt-not-logged", None)]),
    ],
    ids=["item", "time", "department"],
)
def test_each_member_a_side_knows_is_compared(
    world: World,
    tmp_path: Path,
    database_url: str,
    change: dict[str, str],
    owner_sees: list[str],
    consumer_sees: list[tuple[str, str | None]],
) -> None:
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        _edit_entry(database_url, trail.receipts()[2].index, change, rehash=True)
        owner_side, consumer_side = _differences(world, trail)
    assert owner_side == [("entry-differs", member) for member in owner_sees]
    assert consumer_side == consumer_sees


def test_the_owners_trail_keeps_the_pseudonym_the_entry_keeps(world: World, tmp_path: Path) -> None:
    """Keyed under the owner's trail key (decision 0064's second follow-up): a copy of
    the owner's file does not link a row to a pseudonym a department learnt."""
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
    served = [s for s in world.owner_store.served_entries() if s.outcome == "ok"]
    keyed = world.owner_store.trail_key.pseudonym
    assert [s.subject_pseudonym for s in served] == [
        keyed(world.hub.keys.pseudonym(subject)) for subject in SUBJECTS
    ]


def test_each_side_can_open_its_own_commitment_and_no_other(world: World, tmp_path: Path) -> None:
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        receipts = trail.receipts()
    served = [s for s in world.owner_store.served_entries() if s.outcome == "ok"]
    assert len(served) == len(receipts) == len(SUBJECTS)
    for mine in (*receipts, *served):
        key = base64url.decode(mine.commitment_key or "")
        assert mine.commitment == leaves.commitment(key, ADDRESS_RECORD)
    assert len({r.commitment for r in receipts} | {s.commitment for s in served}) == 6


def test_an_entry_removed_from_the_hub_shows_on_both_sides(
    world: World, tmp_path: Path, database_url: str
) -> None:
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        victim = trail.receipts()[0].index
        engine = make_sync_engine(database_url)
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM audit_entries WHERE idx = :i"), {"i": victim})
        engine.dispose()
        assert _sides(world, trail) == (["served-not-logged"], ["receipt-not-logged"])


def test_a_delivery_the_owner_never_served_is_reported(world: World, tmp_path: Path) -> None:
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
        engine = sa.create_engine(f"sqlite:///{world.owner_store_path}")
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM served WHERE id = 1"))
        engine.dispose()
        assert _sides(world, trail) == (["logged-not-served"], [])


def test_the_reconcile_command_reports_agreement(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RecordStore(tmp_path / "consumer.db") as trail:
        _exchange(world, trail)
    config = tmp_path / "owner.toml"
    config.write_text(
        f'department = "{OWNER}"\nhub_url = "{world.hub.url}"\n'
        f'data_dir = "{world.owner_store_path.parent}"\nclient_id = "{OWNER_CLIENT}"\n'
        f'[items."{ADDRESS}"]\nsource = "store"\n'
    )
    key = load_or_create_key(world.owner_store_path.parent / "client-key.jwk")
    with world.hub.admin() as admin:
        admin.put_client(OWNER_CLIENT, department=OWNER, jwks=public_jwks(key))
    assert main(["adapter", "reconcile", "--config", str(config)]) == 0
    assert "3 served, 0 receipts compared with the hub's log: agree" in capsys.readouterr().out
