"""Members a later version adds inside a granted field are cut however the field's
schema is reached, a percent-encoded ``$ref`` too (decision 0059): over the real
exchange on each database."""

from typing import Any

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
