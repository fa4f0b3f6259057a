"""Members a later version adds inside a granted field are cut however the field's
schema is reached, a percent-encoded ``$ref`` too (decision 0059): over the real
exchange on each database."""

from typing import Any

import pytest

from onceonly.adapters import UpstreamError

from tests.hub.exchange.test_exchange_grant_properties import (
    DRAFT,
    Exchange,
    _object,
    _register_nested,
    exchange,
    fetch,
)

__all__ = ["exchange"]  # the module-scoped world of test_exchange_grant_properties

Json = Any
STREET = {"type": "string"}
NATIONAL_ID = {"type": "string", "x-personal": True}
RECORD = {"postcode": "10115", "address": {"street": "Main 1", "national_id": "38001085718"}}


def _with_address(ref: str, definitions: dict[str, Json]) -> Json:
    return {
        "$schema": DRAFT,
        "type": "object",
        "additionalProperties": False,
        "properties": {"postcode": {"type": "string"}, "address": {"$ref": ref}},
        "$defs": definitions,
    }


def test_a_nested_personal_member_added_behind_a_percent_encoded_ref_is_not_delivered(
    exchange: Exchange,
) -> None:
    """The reviewer's case: ``#/$defs/addr%25`` names ``addr%``; a decoy ``addr%25``
    (an open object) is what a literal reading found, and it kept everything."""
    decoy = {"type": "object"}
    for ref, name in (("#/$defs/addr", "addr"), ("#/$defs/addr%25", "addr%")):
        v1 = _with_address(ref, {name: _object({"street": STREET}), "addr%25": decoy})
        v2 = _with_address(
            ref,
            {name: _object({"street": STREET, "national_id": NATIONAL_ID}), "addr%25": decoy},
        )
        item = _register_nested(exchange, v1, v2, RECORD, fields=["address"])
        for version in (None, 2, 1):
            result = fetch(exchange, item, version=version)
            assert result.record == {"address": {"street": "Main 1"}}, (ref, version)
            assert exchange.audit_entry(result.receipt.index)["fields"] == ["address"]


def _closed(properties: dict[str, Json]) -> Json:
    return _object(properties, additionalProperties=False)


PERSON_V1 = _closed({"name": STREET})
PERSON_V2 = _closed({"name": STREET, "national_id": NATIONAL_ID})


def _root(properties: dict[str, Json], **more: Json) -> Json:
    return {"$schema": DRAFT, **_closed(properties), **more}


def test_a_member_added_later_inside_a_maps_values_is_not_delivered(
    exchange: Exchange,
) -> None:
    """helper-147: a member a later version adds inside the values of a map
    (``additionalProperties`` a schema) or of ``patternProperties`` was kept whole: the
    consumer of a grant decided on the first version got the second's personal
    identifier. Each value is now projected through its own schema."""
    household = {"spouse": {"name": "Ann", "national_id": "49002124277"}}
    for shape in (
        lambda person: _object({}, additionalProperties=person),
        lambda person: _object({}, patternProperties={"^[a-z]+$": person}),
    ):
        v1 = _root({"household": shape(PERSON_V1), "postcode": STREET})
        v2 = _root({"household": shape(PERSON_V2), "postcode": STREET})
        record = {"postcode": "10115", "household": household}
        item = _register_nested(exchange, v1, v2, record, fields=["household"])
        for version in (None, 1):
            result = fetch(exchange, item, version=version)
            assert result.record == {"household": {"spouse": {"name": "Ann"}}}, version


def test_a_member_added_later_deep_in_a_recursive_field_is_not_delivered(
    exchange: Exchange,
) -> None:
    """helper-147: below 32 levels strict projection gave a value back uncut (its depth
    bound failed open), so a chain 41 deep delivered what the second version added at
    its end. Every level an owner's answer may have is projected now."""
    node = {"name": STREET, "parent": {"$ref": "#/$defs/node"}}
    v1 = _root({"lineage": {"$ref": "#/$defs/node"}}, **{"$defs": {"node": _closed(node)}})
    v2 = _root(
        {"lineage": {"$ref": "#/$defs/node"}},
        **{"$defs": {"node": _closed({**node, "national_id": NATIONAL_ID})}},
    )
    chain: Json = {"name": "x", "national_id": "49002124277"}
    for _ in range(40):
        chain = {"name": "x", "parent": chain}
    item = _register_nested(exchange, v1, v2, {"lineage": chain}, fields=["lineage"])
    delivered = fetch(exchange, item).record["lineage"]
    depth = 0
    while "parent" in delivered:
        assert "national_id" not in delivered
        delivered, depth = delivered["parent"], depth + 1
    assert depth == 40
    assert delivered == {"name": "x"}


def test_a_record_that_fails_its_version_is_refused_without_naming_its_members(
    exchange: Exchange,
) -> None:
    """helper-147: the 502's detail pointed into the record, whose member names are data:
    a map keyed by national identifiers named one to a consumer granted only another
    field. It points into the (published) schema now."""
    number = _closed({"name": {"type": "integer"}})  # the second version's, not the first's

    def version(person: Json) -> Json:
        return _root({"dependants": _object({}, additionalProperties=person), "postcode": STREET})

    record = {"postcode": "10115", "dependants": {"49002124277": {"name": 5}}}
    item = _register_nested(exchange, version(PERSON_V1), version(number), record, ["postcode"])
    assert fetch(exchange, item, version=2).record == {"postcode": "10115"}
    with pytest.raises(UpstreamError) as failed:  # read as the first: fails its schema
        fetch(exchange, item, version=1)
    assert failed.value.status == 502
    assert "49002124277" not in failed.value.detail
    assert "/properties/dependants/additionalProperties" in failed.value.detail


def test_what_the_granted_version_refuses_is_not_delivered(exchange: Exchange) -> None:
    """helper-156: a ``false`` member in the granted version (``ssn: false``, which
    BACKWARD lets a later version turn into a personal string) was delivered whole; and
    keywords projection does not read (``dependentSchemas`` here) let a member through
    that the granted version refuses. What projection keeps is validated against the
    granted version: a field that fails it is not delivered."""
    address = _object({"street": STREET, "ssn": False})
    v1 = _root({"address": address, "postcode": STREET})
    v2 = _root({"address": _object({"street": STREET, "ssn": NATIONAL_ID}), "postcode": STREET})
    record = {"postcode": "10115", "address": {"street": "Main 1", "ssn": "49002124277"}}
    item = _register_nested(exchange, v1, v2, record, fields=["address", "postcode"])
    assert fetch(exchange, item).record == {"postcode": "10115", "address": {"street": "Main 1"}}

    # a map of strings, but never an ssn (a `not`, which projection does not read):
    # projection keeps ssn (the map's), the granted version refuses it, so the field is
    # not delivered at all (fails closed)
    never = {"required": ["ssn"]}
    v1 = _root(
        {
            "address": _object({}, additionalProperties=STREET, **{"not": never}),
            "postcode": STREET,
        }
    )
    v2 = _root({"address": _object({}, additionalProperties=STREET), "postcode": STREET})
    record = {"postcode": "10115", "address": {"street": "Main 1", "ssn": "49002124277"}}
    item = _register_nested(exchange, v1, v2, record, fields=["address", "postcode"])
    result = fetch(exchange, item)
    assert result.record == {"postcode": "10115"}
    assert exchange.audit_entry(result.receipt.index)["fields"] == ["postcode"]


def test_a_record_its_granted_version_refuses_as_a_whole_is_not_delivered(
    exchange: Exchange,
) -> None:
    """helper-158: the granted version's root ``not`` forbade a member inside a granted
    field; projection does not read ``not``, and its failure names the record, not a
    field, so the field-level check let everything through. A record that fails its
    granted version at the record itself is the owner's invalid answer (502)."""
    forbidding = {"required": ["a"], "properties": {"a": {"required": ["ssn"]}}}
    v1 = _root({"a": {"type": "object"}}, **{"not": forbidding})
    v2 = _root({"a": _object({"street": STREET, "ssn": NATIONAL_ID})})
    record = {"a": {"street": "Pikk 1", "ssn": "49002124277"}}
    item = _register_nested(exchange, v1, v2, record, fields=["a"])
    with pytest.raises(UpstreamError) as refused:
        fetch(exchange, item)
    assert refused.value.status == 502
    assert "49002124277" not in refused.value.detail


def test_asking_for_the_granted_version_reads_it_as_the_grant_does(exchange: Exchange) -> None:
    """helper-166: with the grant's field closed inside an ``allOf`` branch, a query
    without ``version`` delivered the field cut down, and one asking for the grant's
    version (the same version) was a 502: its lenient reading kept what the branch
    closes, and the check then refused it."""
    v1 = _root({"a": {"allOf": [PERSON_V1]}})
    v2 = _root({"a": {"allOf": [PERSON_V2]}})
    record = {"a": {"name": "Ann", "national_id": "49002124277"}}
    item = _register_nested(exchange, v1, v2, record, fields=["a"])
    for version in (None, 1):
        assert fetch(exchange, item, version=version).record == {"a": {"name": "Ann"}}
