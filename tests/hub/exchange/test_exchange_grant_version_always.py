"""A grant is read in the version it was decided on whether or not a later version
exists (decision 0059): an undeclared member inside an open granted object is cut
while that version is the latest too. Projection that can change nothing is skipped,
known per schema version and fields (``strict_projection_is_identity``): every item
of the starter catalogue is such, so the record query's hot path pays a lookup.
"""

import json
import uuid
from typing import Any

import pytest

from onceonly.adapters import CallableSource
from onceonly.hub.access.minimization import minimize
from onceonly.hub.registry import validation
from onceonly.hub.registry.projection import project_to_version, strict_projection_is_identity

from tests.hub.exchange.test_exchange_grant_properties import (
    CONSUMER,
    DRAFT,
    PURPOSE,
    Exchange,
    _object,
    exchange,
    fetch,
    item_document,
)
from tests.hub_testing import CATALOGUE

__all__ = ["exchange"]  # the module-scoped world of test_exchange_grant_properties

Json = Any
STREET = {"type": "string"}
RECORD = {"postcode": "10115", "address": {"street": "Main 1", "national_id": "38001085718"}}


def _root(properties: Json, **more: Json) -> Json:
    return {"$schema": DRAFT, **_object(properties, additionalProperties=False), **more}


def _identity(schema: Json, fields: list[str] | None) -> bool:
    fingerprint = validation.fingerprint(schema)
    return strict_projection_is_identity(schema, fingerprint=fingerprint, fields=fields)


CLOSED_ADDRESS = _object({"street": STREET}, additionalProperties=False)
OPEN_ADDRESS = _object({"street": STREET})
IDENTITY_CASES = [
    pytest.param(_root({"a": STREET}), ["a"], True, id="a scalar"),
    pytest.param(_root({"a": CLOSED_ADDRESS}), ["a"], True, id="a closed object"),
    pytest.param(_root({"a": CLOSED_ADDRESS}), None, True, id="all fields, closed root"),
    pytest.param(
        {**_root({"a": STREET}), "additionalProperties": True}, None, False, id="open root"
    ),
    pytest.param(_root({"a": OPEN_ADDRESS}), ["a"], False, id="an open object"),
    pytest.param(
        _root({"a": OPEN_ADDRESS, "b": STREET}), ["b"], True, id="an open one not granted"
    ),
    pytest.param(_root({"a": STREET}), ["gone"], False, id="a field the version lacks"),
    pytest.param(
        _root({"a": {"type": "array", "items": OPEN_ADDRESS}}), ["a"], False, id="open items"
    ),
    pytest.param(
        _root({"a": {"type": "array", "items": CLOSED_ADDRESS}}), ["a"], True, id="closed items"
    ),
    pytest.param(
        _root({"a": _object({}, additionalProperties={"type": "integer"})}), ["a"], True, id="map"
    ),
    pytest.param(
        _root({"a": {"type": "object", "patternProperties": {"^x": STREET}}}),
        ["a"],
        False,
        id="patterns",
    ),
    pytest.param(
        _root(
            {"a": {"$ref": "#/$defs/t"}},
            **{"$defs": {"t": _object({"t": {"$ref": "#/$defs/t"}}, additionalProperties=False)}},
        ),
        ["a"],
        True,
        id="a closed tree",
    ),
    pytest.param(
        _root(
            {"a": {"$ref": "#/$defs/t"}}, **{"$defs": {"t": _object({"t": {"$ref": "#/$defs/t"}})}}
        ),
        ["a"],
        False,
        id="an open tree",
    ),
    pytest.param(
        _root({"a": {"allOf": [CLOSED_ADDRESS, {"required": ["street"]}]}}),
        ["a"],
        True,  # a branch closes it: a valid record has no other member (decision 0087)
        id="allOf: closed by a branch",
    ),
    pytest.param(_root({"a": {"$ref": "#/$defs/nothing"}}), ["a"], False, id="unresolvable"),
    pytest.param(
        _root({"a": {"type": "array", "prefixItems": [OPEN_ADDRESS]}}),
        ["a"],
        False,
        id="an open object as a tuple's element",
    ),
    pytest.param(
        _root({"a": {"type": "array", "prefixItems": [CLOSED_ADDRESS], "items": False}}),
        ["a"],
        True,
        id="a closed tuple",
    ),
]


def test_a_tuples_open_element_is_cut_to_what_it_declares() -> None:
    """prefixItems was not followed: an undeclared member of an open object in a tuple
    was delivered (a hostile review of c00ca40), where the same object under items was
    cut."""
    for array in (
        {"type": "array", "prefixItems": [OPEN_ADDRESS]},
        {"type": "array", "prefixItems": [STREET], "items": OPEN_ADDRESS},
    ):
        schema = _root({"a": array})
        first = {"street": "Pikk 1", "national_id": "38001085718"}
        record = {"a": [first] if "items" not in array else ["x", first]}
        projected = project_to_version(record, schema, strict=True)
        assert "national_id" not in json.dumps(projected), projected
        assert "Pikk 1" in json.dumps(projected)


@pytest.mark.parametrize(("schema", "fields", "identity"), IDENTITY_CASES)
def test_projection_is_skipped_only_where_it_changes_nothing(
    schema: Json, fields: list[str] | None, identity: bool
) -> None:
    assert _identity(schema, fields) is identity
    if identity:  # then it holds: every valid record is kept as it is
        validator = validation.compile_schema(schema)
        valid = [record for record in SAMPLES if validator.is_valid(record)]
        assert valid
        for record in valid:
            projected = project_to_version(record, schema, strict=True)
            assert minimize(projected, fields) == minimize(record, fields)


SAMPLES = [
    {"a": "x"},
    {"a": {"street": "Pikk 1"}},
    {"a": [{"street": "Pikk 1"}, {}]},
    {"a": [{"street": "Pikk 1"}]},
    {"a": {"math": 5}},
    {"a": {"t": {"t": {}}}},
]


@pytest.mark.parametrize("path", sorted((CATALOGUE / "items").glob("*.json")), ids=lambda p: p.stem)
def test_every_catalogue_item_pays_nothing(path: Any) -> None:
    schema = json.loads(path.read_text())["schema"]
    assert _identity(schema, sorted(schema["properties"]))
    assert _identity(schema, None)


def _register_one_version(exchange: Exchange, schema: Json, record: Json, fields: list[str]) -> str:
    item = f"grant.v{uuid.uuid4().hex[:12]}"
    with exchange.hub.admin() as admin:
        admin.put_item(item_document(item, schema, compatibility="NONE"))
        grant = admin.create_grant(
            consumer=CONSUMER, item=item, purpose=PURPOSE, legal_basis="test", fields=fields
        )
        assert grant["version"] == 1
    exchange.records[item] = record
    exchange.sources[item] = CallableSource(exchange.owners_record)
    return item


def test_the_grant_version_is_applied_before_any_later_version_exists(
    exchange: Exchange,
) -> None:
    """The reviewer's case: an undeclared member inside an open granted object is cut
    while the grant's version is the latest, as it is once an unrelated version follows."""
    schema = _root({"postcode": {"type": "string"}, "address": OPEN_ADDRESS})
    item = _register_one_version(exchange, schema, RECORD, fields=["address"])
    assert fetch(exchange, item).record == {"address": {"street": "Main 1"}}
    assert fetch(exchange, item, version=1).record == {"address": {"street": "Main 1"}}
    later = {**schema, "properties": {**schema["properties"], "note": {"type": "string"}}}
    with exchange.hub.admin() as admin:
        admin.add_version(item, {"schema": later})
    for version in (None, 2, 1):
        assert fetch(exchange, item, version=version).record == {"address": {"street": "Main 1"}}


def test_a_closed_granted_field_is_delivered_whole(exchange: Exchange) -> None:
    rooms = {"type": "array", "items": _object({"n": STREET}, additionalProperties=False)}
    address = _object({"street": STREET, "rooms": rooms}, additionalProperties=False)
    schema = _root({"address": address, "postcode": STREET})
    record = {"address": {"street": "Main 1", "rooms": [{"n": "1"}, {"n": "2"}]}, "postcode": "1"}
    item = _register_one_version(exchange, schema, record, fields=["address"])
    assert fetch(exchange, item).record == {"address": record["address"]}
