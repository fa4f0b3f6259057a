"""All SQL of the exchange: everything one record query needs, in one round trip.

The hot path reads client, item, latest version, owner, the matching grant and
whether the access token was revoked with a single Core query (no ORM objects), on
SQLite as one call to the driver's thread (onceonly.hub.db.OneCallRead). The read
also returns the facts' generation (``facts_generation``, bumped by triggers with
every change to those tables) and the next moment a grant's validity starts or ends,
and :class:`FactsCache` keeps the facts by query: a later query with the same facts
key uses them again when the generation that its DPoP proof's spend reads is
unchanged (docs/decisions/0038). A query thus costs one read, or none, before the
owner is asked (the DPoP proof's jti is spent meanwhile, in a group commit:
``onceonly.hub.auth.jti_register``), and one audit append after.
"""

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.access.models import Grant
from onceonly.hub.access.repository import after, at_or_before
from onceonly.hub.auth import repository as auth_repository
from onceonly.hub.db import OneCallRead
from onceonly.hub.kit.clock import aware
from onceonly.hub.kit.fair_lru import FairLru
from onceonly.hub.registry.models import Client, Department, FactsGeneration, Item, ItemVersion

_items = Item.__table__  # type: ignore[attr-defined]
_versions = ItemVersion.__table__  # type: ignore[attr-defined]
_departments = Department.__table__  # type: ignore[attr-defined]
_grants = Grant.__table__  # type: ignore[attr-defined]
_clients = Client.__table__  # type: ignore[attr-defined]
_generation = FactsGeneration.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ExchangeFacts:
    """What the registry and the grants say about one existing item; ``None`` = no grant."""

    item_id: str
    lifecycle: str
    deprecated_at: datetime | None
    version: int
    schema: dict[str, Any]
    fingerprint: str
    owner: str
    adapter_url: str | None
    sharing_class: str
    grant_id: str | None
    grant_fields: list[str] | None
    grant_version: int | None


@dataclass(frozen=True)
class QueryFacts:
    """Everything the admission policy judges: the caller's standing and the item's facts."""

    item: ExchangeFacts | None  # None: no such item
    client_department: str | None
    client_status: str | None
    revoked: bool
    # The facts' generation when read (None: the database has no counter, never kept),
    # and the next moment at which a matching grant's validity starts or ends, after
    # which the same read could choose another grant or none (None: no such moment).
    generation: int | None = None
    grant_change: datetime | None = None


def _facts_query() -> Any:
    """Built once: bound parameters keep it in SQLAlchemy's compiled cache.

    It always returns one row (the anchor), so that the caller's standing is known
    even when the item does not exist.
    """
    now = sa.bindparam("now", type_=sa.DateTime(timezone=True))
    matching = (
        _grants.c.consumer_id == sa.bindparam("consumer"),
        _grants.c.item_id == sa.bindparam("item_id"),
        _grants.c.purpose == sa.bindparam("purpose"),
        _grants.c.status == "active",
    )
    grant = (
        sa.select(_grants.c.id, _grants.c.fields, _grants.c.version, _grants.c.valid_until)
        .where(
            *matching,
            at_or_before(_grants.c.valid_from, now),
            sa.or_(_grants.c.valid_until.is_(None), after(_grants.c.valid_until, now)),
        )
        .order_by(_grants.c.created_at)
        .limit(1)
        .subquery("grant")
    )
    # The grant chosen above changes only when a write bumps the generation, or when
    # the chosen grant ends, or a matching grant starts (it may be older, or the only one).
    next_start = (
        sa.select(sa.func.min(_grants.c.valid_from))
        .where(*matching, after(_grants.c.valid_from, now))
        .scalar_subquery()
    )
    generation = sa.select(_generation.c.value).where(_generation.c.id == 1).scalar_subquery()
    client = (
        sa.select(_clients.c.department_id, _clients.c.status)
        .where(_clients.c.client_id == sa.bindparam("client_id"))
        .subquery("client")
    )
    anchor = sa.select(sa.literal(1).label("one")).subquery("anchor")
    return (
        sa.select(
            _items.c.id,
            _items.c.lifecycle,
            _items.c.deprecated_at,
            _items.c.sharing_class,
            _versions.c.version,
            _versions.c.schema,
            _versions.c.fingerprint,
            _departments.c.id.label("owner"),
            _departments.c.adapter_url,
            client.c.department_id.label("client_department"),
            client.c.status.label("client_status"),
            grant.c.id.label("grant_id"),
            grant.c.fields.label("grant_fields"),
            grant.c.version.label("grant_version"),
            grant.c.valid_until.label("grant_until"),
            sa.type_coerce(next_start, sa.DateTime(timezone=True)).label("next_grant_start"),
            auth_repository.revoked_clause(sa.bindparam("token_jti")).label("revoked"),
            sa.type_coerce(generation, sa.BigInteger).label("generation"),
        )
        .select_from(anchor)
        .outerjoin(_items, _items.c.id == sa.bindparam("item_id"))
        .outerjoin(
            _versions,
            sa.and_(
                _versions.c.item_id == _items.c.id, _versions.c.version == _items.c.latest_version
            ),
        )
        .outerjoin(_departments, _departments.c.id == _items.c.owner_id)
        .outerjoin(client, sa.true())
        .outerjoin(grant, sa.true())
    )


_FACTS = OneCallRead(_facts_query())


async def query_facts(
    engine: AsyncEngine,
    *,
    item_id: str,
    client_id: str,
    consumer: str,
    purpose: str,
    token_jti: str,
    now: datetime,
) -> QueryFacts:
    """The facts of one query: one read, released before the owner is called."""
    params = {
        "item_id": item_id,
        "client_id": client_id,
        "consumer": consumer,
        "purpose": purpose,
        "token_jti": token_jti,
        "now": now,
    }
    async with engine.connect() as conn:
        return _facts(await _FACTS.one(conn, params))


# One parsed schema per fingerprint (content hash), shared by the kept facts of every
# query of that version, so that many kept entries do not hold many copies.
_SCHEMAS: dict[str, dict[str, Any]] = {}
_SCHEMAS_MAX = 1024


def _shared_schema(fingerprint: str, schema: dict[str, Any]) -> dict[str, Any]:
    shared = _SCHEMAS.get(fingerprint)
    if shared is None:
        if len(_SCHEMAS) >= _SCHEMAS_MAX:
            _SCHEMAS.clear()
        shared = _SCHEMAS[fingerprint] = schema
    return shared


def _facts(row: Mapping[str, Any]) -> QueryFacts:
    item = None
    if row["id"] is not None:
        item = ExchangeFacts(
            item_id=row["id"],
            lifecycle=row["lifecycle"],
            deprecated_at=row["deprecated_at"],
            version=row["version"],
            schema=_shared_schema(row["fingerprint"], row["schema"]),
            fingerprint=row["fingerprint"],
            owner=row["owner"],
            adapter_url=row["adapter_url"],
            sharing_class=row["sharing_class"],
            grant_id=row["grant_id"],
            grant_fields=row["grant_fields"],
            grant_version=row["grant_version"],
        )
    changes = [aware(row["grant_until"]), aware(row["next_grant_start"])]
    return QueryFacts(
        item=item,
        client_department=row["client_department"],
        client_status=row["client_status"],
        revoked=bool(row["revoked"]),
        generation=row["generation"],
        grant_change=min((moment for moment in changes if moment is not None), default=None),
    )


FactsKey = tuple[str, str, str, str, str]
"""What a record query's facts depend on: item, client, consumer, purpose, token jti."""


def facts_key(
    *, item_id: str, client_id: str, consumer: str, purpose: str, token_jti: str
) -> FactsKey:
    return (item_id, client_id, consumer, purpose, token_jti)


_CLIENT = 1  # a FactsKey's client


class FactsCache:
    """The facts of recent admitted queries, by :data:`FactsKey`, in one process.

    An entry is only a candidate: :meth:`holds` tells whether it may be used, given
    the generation read from the database after the query arrived (the DPoP proof's
    spend reads it in the same transaction). Generations are random values, so a
    value seen again means the same history of changes (decision 0038). An entry past
    its ``grant_change`` is dropped when looked up. A database without the counter's
    row empties it.

    Bounded twice (decision 0045; the kit's :class:`FairLru` since 0046): at most
    ``max_entries`` in all, the least recently used going first, and at most
    ``max_per_client`` of one client, whose own least recently used entry goes when it
    keeps one more. Each access token makes new keys, so without the second bound one
    client fetching tokens could push out everyone's facts; with it, a client that
    keeps more than its share pushes out only its own.
    Every operation is O(1). None awaits, so on the process's one event loop no call
    interleaves with another: it takes no lock, and is not for use across threads.
    """

    def __init__(self, *, max_entries: int = 4096, max_per_client: int = 256) -> None:
        self._kept: FairLru[FactsKey, QueryFacts] = FairLru(
            max_entries=max_entries, max_per_owner=max_per_client
        )

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: FactsKey, *, now: datetime) -> QueryFacts | None:
        facts = self._kept.get(key)  # the most recently used: the last to go
        if facts is not None and facts.grant_change is not None and now >= facts.grant_change:
            self._kept.discard(key)
            return None
        return facts

    def holds(self, facts: QueryFacts, *, generation: int | None) -> bool:
        """Whether ``facts`` (kept) hold at ``generation`` (just read)."""
        if generation is None:  # no counter: nothing kept can be trusted from now on
            self._kept.clear()
            return False
        return facts.generation == generation

    def keep(self, key: FactsKey, facts: QueryFacts) -> None:
        """Keep ``facts`` (just read); read without a counter, they empty the cache."""
        if facts.generation is None:
            self._kept.clear()
            return
        self._kept.put(key, facts, owner=key[_CLIENT])


# One per database and process (tests run several hubs, each on its own engine).
_CACHES: "weakref.WeakKeyDictionary[AsyncEngine, FactsCache]" = weakref.WeakKeyDictionary()


def facts_cache(engine: AsyncEngine) -> FactsCache:
    cache = _CACHES.get(engine)
    if cache is None:
        cache = _CACHES[engine] = FactsCache()
    return cache


_VERSION = sa.select(_versions.c.schema, _versions.c.fingerprint).where(
    _versions.c.item_id == sa.bindparam("item_id"), _versions.c.version == sa.bindparam("version")
)


# Versions never change once stored, so each engine (each database) keeps the ones it
# has read: a grant decided on an earlier version is served without a second query.
_KNOWN_VERSIONS: "weakref.WeakKeyDictionary[AsyncEngine, dict[tuple[str, int], Any]]" = (
    weakref.WeakKeyDictionary()
)
_KNOWN_VERSIONS_MAX = 4096


async def version_schema(
    engine: AsyncEngine, *, item_id: str, version: int
) -> tuple[dict[str, Any], str] | None:
    """A version's schema and fingerprint (an earlier one a consumer asks for, or the
    one a grant was decided on); None if the item has no such version."""
    known = _KNOWN_VERSIONS.setdefault(engine, {})
    found: tuple[dict[str, Any], str] | None = known.get((item_id, version))
    if found is not None:
        return found
    async with engine.connect() as conn:
        row = (await conn.execute(_VERSION, {"item_id": item_id, "version": version})).first()
    if row is None:
        return None
    if len(known) >= _KNOWN_VERSIONS_MAX:
        known.clear()
    known[(item_id, version)] = found = (row.schema, row.fingerprint)
    return found
