"""The record query's facts kept per process (decision 0038), on SQLite and PostgreSQL.

A hub process keeps the facts it read for a query (item, owner, the caller's client,
the grant, the token's revocation) and uses them again for the next query with the
same item, client, purpose and token only while the facts' generation, read in the
transaction that spends the query's DPoP proof, is unchanged, and never past a
matching grant's start or end. The changes here are made with SQL on a connection of
the test's own, as another replica, a command or an operator's psql would make them:
the hub that kept the facts learns of them only through the database's triggers.
"""

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc.jwk import ECKey

from onceonly.adapters import DPoPKey, public_jwks
from onceonly.hub.access.models import Grant
from onceonly.hub.auth.models import RevokedToken
from onceonly.hub.db import make_sync_engine
from onceonly.hub.exchange import repository
from onceonly.hub.kit import base64url
from onceonly.hub.registry.models import Client, Department, Item, ItemVersion

from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER,
    CONSUMER_CLIENT,
    OWNER,
    PURPOSE,
    SUBJECT,
    World,
    access_token,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, empty_postgres, problem_type

DPOP = DPoPKey.generate()
_grants = Grant.__table__  # type: ignore[attr-defined]
_clients = Client.__table__  # type: ignore[attr-defined]
_departments = Department.__table__  # type: ignore[attr-defined]
_items = Item.__table__  # type: ignore[attr-defined]
_versions = ItemVersion.__table__  # type: ignore[attr-defined]
_revoked = RevokedToken.__table__  # type: ignore[attr-defined]


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory) as built:
        yield built


@pytest.fixture
def sql(world: World) -> Iterator[sa.Engine]:
    """The hub's database, on a connection of the test's own."""
    engine = make_sync_engine(world.hub.settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The items whose facts the hub (served in this process) read from the database."""
    seen: list[str] = []
    original = repository.query_facts

    async def counted(engine: Any, **params: Any) -> repository.QueryFacts:
        seen.append(params["item_id"])
        return await original(engine, **params)

    monkeypatch.setattr(repository, "query_facts", counted)
    return seen


def token_for(world: World, *, client_id: str = CONSUMER_CLIENT, key: ECKey | None = None) -> str:
    return access_token(world, DPOP, client_id=client_id, key=key)


def query(world: World, token: str, *, purpose: str = PURPOSE) -> httpx.Response:
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    body = {"subject": SUBJECT, "purpose": purpose}
    return httpx.post(url, json=body, headers=DPOP.headers("POST", url, token))


# Each test's own purpose (on the purpose list, as every grant's must be), so that the
# module's others keep their grants.
OWN_PURPOSES = {
    "grant revoked": "statistics",
    "client disabled": "tax-audit",
    "token revoked": "debt-collection",
    "item retired": "child-benefit",
    "owner's adapter gone": "pension-calculation",
    "ends": "business-licensing",
    "starts": "healthcare-provision",
}


def grant_for(world: World, purpose: str) -> str:
    """A grant of the test's own purpose, so that the module's others keep theirs."""
    with world.hub.admin() as admin:
        made = admin.create_grant(
            consumer=CONSUMER, item=ADDRESS, purpose=purpose, legal_basis="test"
        )
    return str(made["id"])


def change(sql: sa.Engine, statement: Any) -> None:
    with sql.begin() as conn:
        assert conn.execute(statement).rowcount != 0  # one row (-1: an INSERT on psycopg)


def test_kept_facts_answer_the_next_query_without_a_read(world: World, reads: list[str]) -> None:
    token = token_for(world)
    first, second, third = (query(world, token) for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 200]
    assert reads == [ADDRESS]  # the later two used what the first read


def test_a_change_to_any_of_the_six_tables_makes_the_hub_read_again(
    world: World, sql: sa.Engine, reads: list[str]
) -> None:
    token = token_for(world)
    assert query(world, token).status_code == 200
    untouched = [  # columns the query does not read: only the generation tells
        sa.update(_departments).where(_departments.c.id == OWNER).values(description="x"),
        sa.update(_clients)
        .where(_clients.c.client_id == CONSUMER_CLIENT)
        .values(created_at=datetime.now(UTC)),
        sa.update(_items).where(_items.c.id == ADDRESS).values(retention="P1D"),
        sa.update(_versions)
        .where(_versions.c.item_id == ADDRESS, _versions.c.version == 1)
        .values(created_at=datetime.now(UTC)),
        sa.update(_grants)
        .where(_grants.c.item_id == ADDRESS, _grants.c.purpose == PURPOSE)
        .values(legal_basis="Social Welfare Act §12"),
        sa.insert(_revoked).values(
            jti=uuid.uuid4().hex, expires_at=datetime.now(UTC) + timedelta(minutes=1)
        ),
    ]
    for number, statement in enumerate(untouched, start=2):
        change(sql, statement)
        assert query(world, token).status_code == 200
        assert len(reads) == number, statement
    assert query(world, token).status_code == 200
    assert len(reads) == len(untouched) + 1  # nothing changed since: kept again


@pytest.mark.parametrize(
    ("name", "status", "refused_as"),
    [
        ("grant revoked", 403, "no-grant"),
        ("client disabled", 401, "invalid-token"),
        ("token revoked", 401, "invalid-token"),
        ("item retired", 410, "item-retired"),
        ("owner's adapter gone", 503, "owner-unavailable"),
    ],
)
def test_a_change_made_outside_the_hub_refuses_the_very_next_query(
    world: World, sql: sa.Engine, name: str, status: int, refused_as: str
) -> None:
    purpose = OWN_PURPOSES[name]
    grant = grant_for(world, purpose)
    client_id = f"cache-client-{uuid.uuid4().hex[:8]}"
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_client(client_id, department=CONSUMER, jwks=public_jwks(key))
    token = token_for(world, client_id=client_id, key=key)
    for _ in range(2):  # read, then kept
        assert query(world, token, purpose=purpose).status_code == 200
    jti = json.loads(base64url.decode(token.split(".")[1]))["jti"]
    changes: dict[str, tuple[Any, Any]] = {
        "grant revoked": (
            sa.update(_grants).where(_grants.c.id == grant).values(status="revoked"),
            None,
        ),
        "client disabled": (
            sa.update(_clients).where(_clients.c.client_id == client_id).values(status="disabled"),
            None,
        ),
        "token revoked": (
            sa.insert(_revoked).values(
                jti=jti, expires_at=datetime.now(UTC) + timedelta(minutes=5)
            ),
            None,
        ),
        "item retired": (
            sa.update(_items).where(_items.c.id == ADDRESS).values(lifecycle="retired"),
            sa.update(_items).where(_items.c.id == ADDRESS).values(lifecycle="active"),
        ),
        "owner's adapter gone": (
            sa.update(_departments).where(_departments.c.id == OWNER).values(adapter_url=None),
            sa.update(_departments)
            .where(_departments.c.id == OWNER)
            .values(adapter_url=world.owner_url),
        ),
    }
    made, put_back = changes[name]
    change(sql, made)
    try:
        refused = query(world, token, purpose=purpose)
    finally:
        if put_back is not None:
            change(sql, put_back)
    assert (refused.status_code, problem_type(refused)) == (status, refused_as), refused.text


def _at(moment: datetime) -> Callable[[], None]:
    def wait() -> None:
        time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()) + 0.05)

    return wait


def test_kept_facts_end_when_a_grant_ends_or_starts(world: World, sql: sa.Engine) -> None:
    ending, starting = OWN_PURPOSES["ends"], OWN_PURPOSES["starts"]
    ending_grant, starting_grant = grant_for(world, ending), grant_for(world, starting)
    moment = datetime.now(UTC) + timedelta(seconds=1)
    change(sql, sa.update(_grants).where(_grants.c.id == ending_grant).values(valid_until=moment))
    change(sql, sa.update(_grants).where(_grants.c.id == starting_grant).values(valid_from=moment))
    token = token_for(world)
    for _ in range(2):  # read, then kept: no write comes after these
        assert query(world, token, purpose=ending).status_code == 200
        assert problem_type(query(world, token, purpose=starting)) == "no-grant"
    _at(moment)()
    assert problem_type(query(world, token, purpose=ending)) == "no-grant"
    assert query(world, token, purpose=starting).status_code == 200


def test_a_replayed_proof_is_refused_with_kept_facts(world: World, reads: list[str]) -> None:
    token = token_for(world)
    assert query(world, token).status_code == 200
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    headers = DPOP.headers("POST", url, token)
    body = {"subject": SUBJECT, "purpose": PURPOSE}
    assert httpx.post(url, json=body, headers=headers).status_code == 200
    replayed = httpx.post(url, json=body, headers=headers)
    assert replayed.status_code == 401
    assert "jti replay" in replayed.json()["detail"]
    assert reads == [ADDRESS]  # all three on kept facts


# --- the cache alone ------------------------------------------------------------------

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
KEY = repository.facts_key(
    item_id=ADDRESS, client_id=CONSUMER_CLIENT, consumer=CONSUMER, purpose=PURPOSE, token_jti="j"
)


def facts(*, generation: int | None = 7, grant_change: datetime | None = None) -> Any:
    return repository.QueryFacts(
        item=None,
        client_department=CONSUMER,
        client_status="active",
        revoked=False,
        generation=generation,
        grant_change=grant_change,
    )


def test_the_cache_drops_facts_when_their_grant_changes() -> None:
    cache = repository.FactsCache()
    kept = facts(grant_change=NOW + timedelta(seconds=1))
    cache.keep(KEY, kept)
    assert cache.get(KEY, now=NOW) is kept
    assert cache.get(KEY, now=NOW + timedelta(seconds=1)) is None
    assert len(cache) == 0


def test_the_cache_keeps_nothing_read_without_a_generation() -> None:
    cache = repository.FactsCache()
    cache.keep(KEY, facts(generation=None))
    assert cache.get(KEY, now=NOW) is None


def test_the_cache_is_bounded_and_drops_the_oldest_first() -> None:
    cache = repository.FactsCache(max_entries=2)
    keys = [(*KEY[:4], f"jti-{n}") for n in range(3)]
    for key in keys:
        cache.keep(key, facts())
    assert len(cache) == 2
    assert cache.get(keys[0], now=NOW) is None
    assert cache.get(keys[2], now=NOW) is not None
    with pytest.raises(ValueError, match="at least 1"):
        repository.FactsCache(max_entries=0)


def keys_of(client: str, count: int) -> list[repository.FactsKey]:
    """``count`` keys of one client, one access token each (what a fresh token makes)."""
    return [(KEY[0], client, *KEY[2:4], f"{client}-jti-{n}") for n in range(count)]


def kept(cache: repository.FactsCache, keys: list[repository.FactsKey]) -> int:
    return sum(cache.get(key, now=NOW) is not None for key in keys)


def test_a_client_fetching_token_after_token_pushes_out_only_its_own_facts() -> None:
    """A hostile review of 38f28d3: each access token makes new keys, so one client
    could empty the cache for everyone, and every other query would read again."""
    cache = repository.FactsCache()  # the hub's bounds
    honest = keys_of("honest", 3)
    for key in honest:
        cache.keep(key, facts())
    flood = keys_of("flooding", 10_000)
    for key in flood:
        cache.keep(key, facts())
    assert kept(cache, honest) == 3
    assert 0 < kept(cache, flood[-1000:]) < 1000  # its latest, as many as one client may keep


def test_a_client_over_its_bound_loses_its_own_least_recently_used_first() -> None:
    cache = repository.FactsCache(max_entries=100, max_per_client=2)
    first, second, third = keys_of("one", 3)
    cache.keep(first, facts())
    cache.keep(second, facts())
    assert cache.get(first, now=NOW) is not None  # used: second is now its oldest
    cache.keep(third, facts())
    assert [cache.get(key, now=NOW) is not None for key in (first, second, third)] == [
        True,
        False,
        True,
    ]
    with pytest.raises(ValueError, match="at least 1"):
        repository.FactsCache(max_per_client=0)


def test_the_cache_stays_within_both_bounds_whatever_clients_keep() -> None:
    cache = repository.FactsCache(max_entries=10, max_per_client=4)
    clients = {f"client-{n}": keys_of(f"client-{n}", 6) for n in range(5)}
    for client_keys in clients.values():
        for key in client_keys:
            cache.keep(key, facts())
            cache.keep(key, facts())  # kept again (read after a change): still one entry
            assert len(cache) <= 10
    assert len(cache) == 10
    assert [kept(cache, keys) for keys in clients.values()] == [0, 0, 2, 4, 4]


def test_facts_dropped_at_their_grant_change_free_their_clients_room() -> None:
    cache = repository.FactsCache(max_entries=100, max_per_client=2)
    ending, lasting, later = keys_of("one", 3)
    cache.keep(ending, facts(grant_change=NOW + timedelta(seconds=1)))
    cache.keep(lasting, facts())
    assert cache.get(ending, now=NOW + timedelta(seconds=1)) is None
    cache.keep(later, facts())  # the room the ended entry left: nothing else goes
    assert kept(cache, [lasting, later]) == 2


def test_a_spend_that_reads_no_counter_empties_the_cache_for_every_client() -> None:
    cache = repository.FactsCache(max_entries=100, max_per_client=2)
    ones, others = keys_of("one", 2), keys_of("other", 2)
    for key in ones + others:
        cache.keep(key, facts(generation=7))
    held = cache.get(ones[0], now=NOW)
    assert held is not None
    assert cache.holds(held, generation=7)
    assert not cache.holds(held, generation=8)
    assert len(cache) == 4  # another generation drops nothing: the caller reads again
    assert not cache.holds(held, generation=None)
    assert len(cache) == 0
    for key in keys_of("one", 2):  # emptied whole: the client's room too
        cache.keep(key, facts())
    assert kept(cache, ones) == 2


# --- the triggers -----------------------------------------------------------------------


def test_every_insert_update_and_delete_of_the_six_tables_replaces_the_generation(
    database_url: str,
) -> None:
    engine = make_sync_engine(database_url)
    now = datetime.now(UTC)

    def generation() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT value FROM facts_generation")).scalar_one())

    rows = [
        (_departments, _departments.c.id == "d", {"id": "d", "name": "D", "created_at": now}),
        (
            _clients,
            _clients.c.client_id == "c",
            {"client_id": "c", "department_id": "d", "jwks": {}, "created_at": now},
        ),
        (
            _items,
            _items.c.id == "i",
            {
                "id": "i",
                "title": "I",
                "owner_id": "d",
                "sharing_class": "open",
                "classification": "public",
                "tags": [],
                "created_at": now,
            },
        ),
        (
            _versions,
            _versions.c.item_id == "i",
            {
                "item_id": "i",
                "version": 1,
                "schema": {},
                "fingerprint": "f",
                "personal_fields": [],
                "created_at": now,
            },
        ),
        (
            _grants,
            _grants.c.id == "g",
            {
                "id": "g",
                "consumer_id": "d",
                "item_id": "i",
                "purpose": "p",
                "valid_from": now,
                "created_at": now,
            },
        ),
        (_revoked, _revoked.c.jti == "t", {"jti": "t", "expires_at": now}),
    ]
    try:
        before = generation()
        statements: list[Any] = [sa.insert(table).values(**values) for table, _, values in rows]
        statements += [
            sa.update(table).where(where).values(created_at=now) for table, where, _ in rows[:5]
        ]
        statements.append(sa.update(_revoked).where(_revoked.c.jti == "t").values(expires_at=now))
        statements += [sa.delete(table).where(where) for table, where, _ in reversed(rows)]
        for statement in statements:
            with engine.begin() as conn:
                conn.execute(statement)
            after = generation()
            assert after != before, statement
            before = after
        if engine.dialect.name == "postgresql":  # TRUNCATE has a trigger of its own there
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE revoked_tokens"))
            assert generation() != before
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_on_postgresql_a_transaction_replaces_it_once_and_it_cannot_be_shadowed_or_skipped(
    postgres_url: str,
) -> None:
    """The review of 38f28d3: a bump per row made a large change quadratic and held the
    counter's lock through it; the function found its table by the writer's search path;
    ``session_replication_role = replica`` skipped it."""
    empty_postgres(postgres_url)
    engine = make_sync_engine(postgres_url)
    expires = datetime.now(UTC) + timedelta(minutes=5)

    def generation(conn: sa.Connection) -> int:
        return int(conn.execute(sa.text("SELECT value FROM public.facts_generation")).scalar_one())

    try:
        with engine.begin() as conn:
            rows = [{"jti": f"bulk-{n}", "expires_at": expires} for n in range(5000)]
            conn.execute(sa.insert(_revoked), rows)
        with engine.begin() as conn:
            before = generation(conn)
        with engine.begin() as conn:  # 5,000 rows changed: the counter's row updated once
            conn.execute(sa.update(_revoked).values(expires_at=expires + timedelta(seconds=1)))
            # This backend's updates of the table so far (earlier transactions' not yet
            # reported included), then once its deferred triggers have run.
            updated = sa.text(
                "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'facts_generation'"
            )
            waiting = conn.execute(updated).scalar_one()
            conn.execute(sa.text("SET CONSTRAINTS ALL IMMEDIATE"))
            assert conn.execute(updated).scalar_one() - waiting == 1  # per row it was 5,000
        with engine.begin() as conn:
            assert generation(conn) != before
            before = generation(conn)
        with engine.begin() as conn:  # a table of the same name first on the search path
            conn.execute(sa.text("CREATE TEMP TABLE facts_generation (id int, value bigint)"))
            conn.execute(sa.text("INSERT INTO pg_temp.facts_generation VALUES (1, 0)"))
            conn.execute(sa.text("DELETE FROM revoked_tokens WHERE jti = 'bulk-1'"))
        with engine.begin() as conn:
            assert generation(conn) != before
            before = generation(conn)
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            conn.execute(sa.text("DELETE FROM revoked_tokens WHERE jti = 'bulk-2'"))
        with engine.begin() as conn:
            assert generation(conn) != before
            before = generation(conn)
        with engine.begin() as conn:  # a TRUNCATE rolled back to a savepoint
            conn.execute(sa.text("SAVEPOINT s"))
            conn.execute(sa.text("TRUNCATE revoked_tokens"))
            conn.execute(sa.text("ROLLBACK TO SAVEPOINT s"))
            conn.execute(sa.text("DELETE FROM revoked_tokens WHERE jti = 'bulk-3'"))
        with engine.begin() as conn:
            assert generation(conn) != before
            assert conn.execute(sa.text("SELECT count(*) FROM revoked_tokens")).scalar_one() == 4997
    finally:
        engine.dispose()
        empty_postgres(postgres_url)


def test_without_the_counters_row_nothing_is_kept_and_its_return_keeps_again(
    world: World, sql: sa.Engine, reads: list[str]
) -> None:
    """The review of 38f28d3: with the row deleted and put back, kept facts must not
    come back into use, whatever value the row gets."""
    token = token_for(world)
    for _ in range(2):
        assert query(world, token).status_code == 200
    assert len(reads) == 1
    with sql.begin() as conn:
        (value,) = conn.execute(sa.text("SELECT value FROM facts_generation")).one()
        conn.execute(sa.text("DELETE FROM facts_generation"))
    try:
        for number in (2, 3):  # the spend reads no value: the kept facts go, each query reads
            assert query(world, token).status_code == 200
            assert len(reads) == number
    finally:
        with sql.begin() as conn:  # the very value the facts were kept at
            conn.execute(
                sa.text("INSERT INTO facts_generation (id, value) VALUES (1, :value)"),
                {"value": value},
            )
    assert query(world, token).status_code == 200
    assert len(reads) == 4  # nothing was kept at that value any more: read, then kept
    assert query(world, token).status_code == 200
    assert len(reads) == 4


def test_refused_queries_are_not_kept(world: World, reads: list[str]) -> None:
    token = token_for(world)
    for number in (1, 2):
        assert problem_type(query(world, token, purpose="not-granted")) == "no-grant"
        assert len(reads) == number


def test_facts_of_one_version_share_one_parsed_schema() -> None:
    row = {
        "id": ADDRESS,
        "lifecycle": "active",
        "deprecated_at": None,
        "version": 1,
        "fingerprint": "f" * 64,
        "owner": OWNER,
        "adapter_url": None,
        "sharing_class": "conditional",
        "grant_id": "g",
        "grant_fields": None,
        "grant_version": 1,
        "grant_until": None,
        "next_grant_start": None,
        "client_department": CONSUMER,
        "client_status": "active",
        "revoked": False,
        "generation": 5,
    }
    first = repository._facts({**row, "schema": {"type": "object"}})
    second = repository._facts({**row, "schema": {"type": "object"}})
    assert first.item is not None
    assert second.item is not None
    assert first.item.schema is second.item.schema
