"""Property-based tests: the exchange never delivers a field outside the grant.

Random items (flat objects of simple types, some fields ``x-personal``, some
required, closed or open to undeclared members), random records valid for them and
random grants (a random subset of the fields, or "all fields") go through the real
exchange: the hub on each database, the owner's adapter serving the record, the
consumer's ``HubClient``. Sometimes the item gets a later version with more fields
after the grant, and the consumer asks for the latest version or the first. The
delivered record must be exactly the record restricted to the fields granted, and
the audit entry must name exactly the fields delivered.

A pure test checks the same property of ``minimize`` after ``project_to_version``,
over many more examples.
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AdapterConfig,
    CallableSource,
    HubClient,
    RecordSource,
    create_provider_app,
)
from onceonly.adapters import public_jwks as jwks_of
from onceonly.hub.access.minimization import minimize
from onceonly.hub.registry.projection import project_to_version

from tests.hub_testing import DATABASES, RunningHub, module_database, running_hub, serve

OWNER = "civil-registry"
CONSUMER = "social-welfare"
CLIENT = "social-welfare-adapter"
PURPOSE = "benefit-eligibility"
SUBJECT = "38001085718"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
Json = Any

# --- random items, records and grants ---------------------------------------------------

NAMES = st.builds(
    str.__add__, st.sampled_from("abcdefgh"), st.text("abc0_", max_size=4)
)  # a small alphabet: names often clash, so extras and later fields meet granted ones
TYPES = ("string", "integer", "number", "boolean", "nullable-string")
MAX_SAFE_INTEGER = 2**53 - 1  # what every JSON parser reads exactly (RFC 8785 §3.2.2.3)


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    personal: bool
    required: bool

    def schema(self) -> dict[str, Json]:
        kind: Json = ["string", "null"] if self.kind == "nullable-string" else self.kind
        return {"type": kind, "title": self.name, "x-personal": self.personal}


@dataclass(frozen=True)
class Case:
    """One item, its record, the grant's fields (None: "all fields") and, possibly,
    fields a later version adds (after the grant) and the version the consumer asks for."""

    fields: list[Field]
    closed: bool
    record: dict[str, Json]
    grant: list[str] | None
    added: list[Field] = field(default_factory=list)
    ask_first_version: bool = False

    def schema(self, fields: list[Field]) -> dict[str, Json]:
        schema: dict[str, Json] = {
            "$schema": DRAFT,
            "type": "object",
            "properties": {f.name: f.schema() for f in fields},
            "required": [f.name for f in fields if f.required],
        }
        if self.closed:
            schema["additionalProperties"] = False
        return schema

    @property
    def granted(self) -> set[str]:
        """The fields the grant covers: those named, or every field of version 1."""
        return set(self.grant) if self.grant is not None else {f.name for f in self.fields}

    @property
    def expected(self) -> dict[str, Json]:
        return {name: value for name, value in self.record.items() if name in self.granted}


def value_of(kind: str) -> st.SearchStrategy[Json]:
    return {
        "string": st.text(max_size=12),
        "integer": st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
        "number": st.floats(allow_nan=False, allow_infinity=False),
        "boolean": st.booleans(),
        "nullable-string": st.none() | st.text(max_size=12),
    }[kind]


@st.composite
def fields_named(draw: st.DrawFn, names: list[str]) -> list[Field]:
    return [
        Field(name, draw(st.sampled_from(TYPES)), draw(st.booleans()), draw(st.booleans()))
        for name in names
    ]


@st.composite
def record_for(draw: st.DrawFn, fields: list[Field], *, extras: list[str]) -> dict[str, Json]:
    """A record valid under ``fields``: every required field, some optional ones, and
    the ``extras`` (members no version declares), each with a value of its type."""
    record = {f.name: draw(value_of(f.kind)) for f in fields if f.required or draw(st.booleans())}
    record.update({name: draw(value_of("string")) for name in extras})
    return record


@st.composite
def cases(draw: st.DrawFn) -> Case:
    names = draw(st.lists(NAMES, min_size=1, max_size=8, unique=True))
    split = draw(st.integers(1, len(names)))
    first, later = names[:split], names[split:]
    fields = draw(fields_named(first))
    # A later version adds optional fields (a version never makes old records invalid).
    added = [Field(f.name, f.kind, f.personal, required=False) for f in draw(fields_named(later))]
    closed = draw(st.booleans())
    extras = [] if closed else draw(st.lists(NAMES, max_size=2, unique=True))
    extras = [name for name in extras if name not in names]
    record = draw(record_for(fields + added, extras=extras))
    grant = draw(st.none() | st.lists(st.sampled_from(first), unique=True))
    ask_first = bool(added) and draw(st.booleans())
    return Case(fields, closed, record, grant, added=added, ask_first_version=ask_first)


# --- the pure property -----------------------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(case=cases())
def test_minimized_projection_holds_only_granted_fields(case: Case) -> None:
    schema = case.schema(case.fields)
    for grant in (case.grant, sorted(case.granted)):
        delivered = minimize(project_to_version(case.record, schema), grant)
        assert set(delivered) <= case.granted & set(case.record)
        assert set(delivered) <= set(schema["properties"])
        assert delivered == case.expected


# --- the real exchange -------------------------------------------------------------------


def item_document(item: str, schema: Json, *, compatibility: str) -> Json:
    """A conditional item of the civil registry with ``schema`` as version 1."""
    return {
        "id": item,
        "title": "Generated item",
        "owner": OWNER,
        "sharing_class": "conditional",
        "classification": "personal",
        "legal_basis": {"text": "Property-based test"},
        "compatibility": compatibility,
        "schema": schema,
    }


@dataclass
class Exchange:
    hub: RunningHub
    consumer_key: ECKey
    records: dict[str, dict[str, Json]]  # item id -> the subject's record at the owner
    sources: dict[str, RecordSource]  # the owner's adapter reads this mapping per query

    def register(self, case: Case, *, compatibility: str = "NONE") -> str:
        """A fresh item for ``case``, granted to the consumer; its id."""
        item = f"grant.p{uuid.uuid4().hex[:12]}"
        document = item_document(item, case.schema(case.fields), compatibility=compatibility)
        with self.hub.admin() as admin:
            admin.put_item(document)
            admin.create_grant(
                consumer=CONSUMER, item=item, purpose=PURPOSE, legal_basis="test", fields=case.grant
            )
            if case.added:
                admin.add_version(item, {"schema": case.schema(case.fields + case.added)})
        self.records[item] = case.record
        self.sources[item] = CallableSource(self.owners_record)
        return item

    def owners_record(self, item: str, subject: str) -> dict[str, Json] | None:
        return self.records.get(item) if subject == SUBJECT else None

    def audit_entry(self, index: int) -> dict[str, Json]:
        auditor = {"Authorization": f"Bearer {self.hub.keys.admin_token}"}
        response = httpx.get(f"{self.hub.url}/v1/audit/entries/{index}", headers=auditor)
        assert response.status_code == 200, response.text
        entry: dict[str, Json] = response.json()["entry"]
        return entry


@pytest.fixture(scope="module", params=DATABASES)
def exchange(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exchange]:
    database_url = module_database(request, tmp_path_factory)
    data_dir = tmp_path_factory.mktemp("exchange")
    sources: dict[str, RecordSource] = {}
    with running_hub(database_url=database_url, data_dir=data_dir / "hub") as hub:
        config = AdapterConfig(department=OWNER, hub_url=hub.url, data_dir=data_dir / "owner")
        with serve(create_provider_app(config, sources=sources)) as owner_url, hub.admin() as admin:
            admin.put_department(OWNER, name="Civil Registry Office", adapter_url=owner_url)
            admin.put_department(CONSUMER, name="Social Welfare Board")
            key = ECKey.generate_key("P-256", auto_kid=True)
            admin.put_client(CLIENT, department=CONSUMER, jwks=jwks_of(key))
            yield Exchange(hub=hub, consumer_key=key, records={}, sources=sources)


def fetch(exchange: Exchange, item: str, *, version: int | None = None) -> Any:
    with HubClient(
        exchange.hub.url, client_id=CLIENT, key=exchange.consumer_key, retries=0
    ) as client:
        return client.fetch(item, SUBJECT, purpose=PURPOSE, version=version)


@settings(max_examples=25, deadline=None)
@given(case=cases())
def test_the_exchange_delivers_exactly_the_granted_fields(exchange: Exchange, case: Case) -> None:
    event(f"grant: {'all' if case.grant is None else 'some'} fields")
    event(f"later version: {bool(case.added)}, asked for the first: {case.ask_first_version}")
    item = exchange.register(case)
    version = 1 if case.ask_first_version else None
    result = fetch(exchange, item, version=version)
    assert result.version == (1 if case.ask_first_version or not case.added else 2)
    assert set(result.record) <= case.granted & set(case.record)
    assert result.record == case.expected
    entry = exchange.audit_entry(result.receipt.index)
    assert (entry["action"], entry["outcome"], entry["item"]) == ("record.query", "ok", item)
    assert entry["fields"] == sorted(result.record)


def test_a_field_added_later_is_not_delivered_under_an_all_fields_grant_made_before(
    exchange: Exchange,
) -> None:
    case = Case(
        fields=[
            Field("street", "string", personal=True, required=True),
            Field("city", "string", personal=True, required=False),
        ],
        closed=True,
        record={"street": "Pikk 1", "city": "Tallinn", "apartment": "12"},
        grant=None,
        added=[Field("apartment", "string", personal=True, required=False)],
    )
    item = exchange.register(case, compatibility="BACKWARD")
    result = fetch(exchange, item)
    assert result.version == 2
    assert result.record == {"street": "Pikk 1", "city": "Tallinn"}
    assert exchange.audit_entry(result.receipt.index)["fields"] == ["city", "street"]


def _register_nested(
    exchange: Exchange, v1: Json, v2: Json, record: Json, fields: list[str]
) -> str:
    """An item with schema ``v1``, granted ``fields``, then given version ``v2``."""
    item = f"grant.n{uuid.uuid4().hex[:12]}"
    # compatibility NONE: a steward may choose it, and the grant must hold anyway
    document = item_document(item, v1, compatibility="NONE")
    with exchange.hub.admin() as admin:
        admin.put_item(document)
        grant = admin.create_grant(
            consumer=CONSUMER, item=item, purpose=PURPOSE, legal_basis="test", fields=fields
        )
        assert grant["version"] == 1
        admin.add_version(item, {"schema": v2})
    exchange.records[item] = record
    exchange.sources[item] = CallableSource(exchange.owners_record)
    return item


def _object(properties: dict[str, Json], **more: Json) -> Json:
    return {"type": "object", "properties": properties, **more}


def test_a_member_added_later_inside_a_granted_field_is_not_delivered(
    exchange: Exchange,
) -> None:
    """A later version that adds a (personal) member inside a granted field, an open
    object in the version the grant was decided on, does not widen the grant."""
    town = {"type": "string"}
    code = {"type": "string", "x-personal": True}
    v1 = {"$schema": DRAFT, **_object({"code": code, "place": _object({"town": town})})}
    v2 = {
        "$schema": DRAFT,
        **_object(
            {
                "code": code,
                "place": _object({"town": town, "occupant": {"$ref": "#/$defs/occupant"}}),
            }
        ),
        "$defs": {"occupant": _object({"id": code})},
    }
    record = {"code": "49002124277", "place": {"town": "Tartu", "occupant": {"id": "4900"}}}
    item = _register_nested(exchange, v1, v2, record, fields=["place"])
    with exchange.hub.admin() as admin:
        assert admin.call("GET", f"/v1/items/{item}")["personal_fields"] == ["code", "place"]
    for version in (None, 2, 1):
        result = fetch(exchange, item, version=version)
        assert result.record == {"place": {"town": "Tartu"}}, version
        assert exchange.audit_entry(result.receipt.index)["fields"] == ["place"]


def test_a_map_in_the_granted_version_keeps_its_members(exchange: Exchange) -> None:
    """Members of an object the granted version declares a map (an explicit
    ``additionalProperties`` schema) are the field's content, not later additions."""
    scores = _object({}, additionalProperties={"type": "integer"})
    v1 = {"$schema": DRAFT, **_object({"scores": scores})}
    v2 = {"$schema": DRAFT, **_object({"scores": scores, "note": {"type": "string"}})}
    record = {"scores": {"math": 5, "art": 4}, "note": "new"}
    item = _register_nested(exchange, v1, v2, record, fields=["scores"])
    assert fetch(exchange, item).record == {"scores": {"math": 5, "art": 4}}
