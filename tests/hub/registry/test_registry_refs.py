"""Every part of the registry reads a local ``$ref`` as the validators do (decision 0059).

A reference is a URI fragment: percent-decoded first (RFC 3986), then a JSON pointer
split at ``/`` and unescaped (RFC 6901). Each case below names, through one of those
encodings, a definition beside a decoy that a literal (or wrongly ordered) reading
would find instead: the right one says ``string``, the decoy ``integer``. Each consumer
of :func:`schema_rules.resolve_ref` is checked against the hub's validator and the
reference implementation: the rules, the compatibility checker, personal fields and
projection. Over HTTP, the reviewer's disguised breaking change is refused.
"""

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from onceonly.hub.registry import compat, projection, schema_rules, validation
from onceonly.hub.registry.exceptions import InvalidSchema

from tests.hub_testing import DATABASES, RunningHub, catalogue_hub, problem_type

DRAFT = "https://json-schema.org/draft/2020-12/schema"
Json = dict[str, Any]

# (the reference's last token as written, the $defs name it means, the decoys)
CASES = [
    pytest.param("a%25", "a%", ["a%25"], id="percent-encoded percent"),
    pytest.param("a~1b", "a/b", ["a~1b"], id="~1 is a slash"),
    pytest.param("a~0b", "a~b", ["a~0b"], id="~0 is a tilde"),
    pytest.param("a~01", "a~1", ["a/", "a~01"], id="~01 is ~1, not a slash"),
    pytest.param("%7E1", "/", ["%7E1", "~1"], id="percent-encoded ~1"),
    pytest.param("a%25%32%35", "a%25", ["a%", "a%25%32%35"], id="decoded once only"),
    pytest.param("%C3%A9t%C3%A9", "été", ["%C3%A9t%C3%A9"], id="UTF-8"),
]
STRING, INTEGER = {"type": "string"}, {"type": "integer"}


def with_ref(token: str, definitions: dict[str, Json], **more: Json) -> Json:
    """A closed item schema whose required ``x`` is ``#/$defs/<token>``."""
    return {
        "$schema": DRAFT,
        "type": "object",
        "properties": {"x": {"$ref": f"#/$defs/{token}"}, **more},
        "required": ["x"],
        "additionalProperties": False,
        "$defs": definitions,
    }


def meant(token: str, name: str, decoys: list[str], right: Json, wrong: Json) -> Json:
    return with_ref(token, {name: right, **dict.fromkeys(decoys, wrong)})


STRING_FIELD = {
    "$schema": DRAFT,
    "type": "object",
    "properties": {"x": STRING},
    "required": ["x"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(("token", "name", "decoys"), CASES)
def test_the_validators_and_resolve_ref_read_the_same_definition(
    token: str, name: str, decoys: list[str]
) -> None:
    schema = meant(token, name, decoys, STRING, INTEGER)
    schema_rules.check_schema(schema)
    assert schema_rules.resolve_ref(schema, f"#/$defs/{token}") == (("$defs", name), STRING)
    hub = validation.compile_schema(schema)
    reference = jsonschema.Draft202012Validator(schema)
    for record, valid in (({"x": "abc"}, True), ({"x": 5}, False)):
        assert hub.is_valid(record) is valid
        assert reference.is_valid(record) is valid


@pytest.mark.parametrize(("token", "name", "decoys"), CASES)
def test_the_compatibility_checker_follows_the_same_definition(
    token: str, name: str, decoys: list[str]
) -> None:
    same = meant(token, name, decoys, STRING, INTEGER)
    changed = meant(token, name, decoys, INTEGER, STRING)  # x is now an integer, disguised
    compat.check_compatible(same, [STRING_FIELD], "FULL_TRANSITIVE")
    for mode in ("BACKWARD", "FORWARD", "FULL", "FULL_TRANSITIVE"):
        with pytest.raises(compat.Incompatible, match="/properties/x"):
            compat.check_compatible(changed, [STRING_FIELD], mode)  # type: ignore[arg-type]


@pytest.mark.parametrize(("token", "name", "decoys"), CASES)
def test_personal_fields_follow_the_same_definition(
    token: str, name: str, decoys: list[str]
) -> None:
    marked = {**STRING, "x-personal": True}
    assert schema_rules.personal_fields(meant(token, name, decoys, marked, INTEGER)) == ["x"]
    assert schema_rules.personal_fields(meant(token, name, decoys, STRING, marked)) == []


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(("token", "name", "decoys"), CASES)
def test_projection_follows_the_same_definition(
    token: str, name: str, decoys: list[str], strict: bool
) -> None:
    """The meant definition is closed to ``street``; the decoy declares nothing (an open
    object, whose members projection keeps)."""
    address = {"type": "object", "properties": {"street": STRING}, "additionalProperties": False}
    schema = meant(token, name, decoys, address, {"type": "object"})
    record = {"x": {"street": "Pikk 1", "national_id": "38001085718"}}
    assert projection.project_to_version(record, schema, strict=strict) == {
        "x": {"street": "Pikk 1"}
    }


def test_projection_reads_an_open_definition_as_closed_when_strict() -> None:
    address = {"type": "object", "properties": {"street": STRING}}
    schema = meant("addr%25", "addr%", ["addr%25"], address, {"type": "object"})
    record = {"x": {"street": "Pikk 1", "national_id": "38001085718"}}
    assert projection.project_to_version(record, schema, strict=True) == {"x": {"street": "Pikk 1"}}


@pytest.mark.parametrize(
    "ref", ["#/$defs/nothing", "#/$defs/a%ff", "#/$defs/a b", "#/$defs/a%zz", "#/allOf/01"]
)
def test_projection_fails_closed_on_a_reference_to_nothing(ref: str) -> None:
    """Such a schema is never stored; if one were, the member goes, not the whole value."""
    schema = {
        "$schema": DRAFT,
        "type": "object",
        "properties": {"x": {"$ref": ref}, "y": {"type": "array", "items": {"$ref": ref}}},
        "allOf": [{"type": "object"}, {"type": "object"}],
        "$defs": {"a%ff": {"type": "object"}, "a b": {"type": "object"}},
    }
    record = {"x": {"national_id": "38001085718"}, "y": [{"national_id": "1"}], "z": 1}
    for strict in (True, False):
        assert projection.project_to_version(record, schema, strict=strict) == {}


@pytest.mark.parametrize(
    "ref",
    [
        "#/$defs/b%25",  # names 'b%', which is not there; 'b%25' is, literally
        "#/$defs/a%ff",  # not UTF-8
        "#/$defs/a%zz",  # not a percent-encoding
        "#/$defs/a b",  # not a URI fragment
        "#/allOf/01",  # not an array index (RFC 6901 §4)
    ],
)
def test_a_reference_that_names_nothing_is_refused(ref: str) -> None:
    schema = with_ref("", {"b%25": STRING, "a%ff": STRING, "a b": STRING})
    schema["properties"]["x"]["$ref"] = ref
    schema["allOf"] = [{"type": "object"}, {"type": "object"}]
    with pytest.raises(InvalidSchema, match="/properties/x/\\$ref"):
        schema_rules.check_schema(schema)
    del schema["allOf"]  # the checker judges no allOf; the reference must stop it first
    with pytest.raises(compat.CannotJudge, match="unresolvable"):
        compat.subsumption_problem(schema, STRING_FIELD)


# --- over HTTP ----------------------------------------------------------------------------


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with catalogue_hub(request, tmp_path_factory) as hub:
        yield hub


def item_document(item: str, schema: Json, *, compatibility: str, examples: list[Json]) -> Json:
    """A conditional, internal item of the civil registry with ``schema`` as version 1."""
    return {
        "id": item,
        "title": "x",
        "owner": "civil-registry",
        "sharing_class": "conditional",
        "classification": "internal",
        "legal_basis": {"text": "test"},
        "compatibility": compatibility,
        "schema": schema,
        "examples": examples,
    }


def add_version(hub: RunningHub, item: str, schema: Json, examples: list[Json]) -> httpx.Response:
    """The next version, with the break-glass token: the raw answer, refusals included."""
    return httpx.post(
        f"{hub.url}/v1/admin/items/{item}/versions",
        json={"schema": schema, "examples": examples},
        headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
    )


def test_a_breaking_change_behind_a_percent_encoded_ref_is_refused(hub: RunningHub) -> None:
    """The reviewer's case: ``x`` turns from a string into an integer through
    ``#/$defs/a%25``; FULL_TRANSITIVE refuses it as it refuses the plain change."""
    disguised = meant("a%25", "a%", ["a%25"], INTEGER, STRING)
    plain = {**STRING_FIELD, "properties": {"x": INTEGER}}
    with hub.admin() as admin:
        for n, v2 in enumerate([disguised, plain]):
            item = f"test.pct-ref-{n}"
            v1 = item_document(
                item, STRING_FIELD, compatibility="FULL_TRANSITIVE", examples=[{"x": "abc"}]
            )
            admin.put_item(v1)
            answer = add_version(hub, item, v2, [{"x": 5}])
            assert (answer.status_code, problem_type(answer)) == (409, "incompatible-version")
            assert "/properties/x" in answer.json()["detail"]
            assert admin.call("GET", f"/v1/items/{item}")["latest_version"] == 1
