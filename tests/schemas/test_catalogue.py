"""Checks the starter catalogue in schemas/ against the rules the registry enforces."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
ITEMS_DIR = SCHEMAS / "items"
ITEM_FILES = sorted(ITEMS_DIR.glob("*.json"))

ITEM_ID = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$")
DEPARTMENT_ID = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
DURATION = re.compile(r"^P(?!$)([0-9]+Y)?([0-9]+M)?([0-9]+W)?([0-9]+D)?$")
# A group that contains a quantifier and is itself quantified, e.g. (a+)+ or (ab{2})*.
NESTED_QUANTIFIER = re.compile(
    r"\((?:[^()\\]|\\.)*(?:[+*?]|\{[0-9,]+\})(?:[^()\\]|\\.)*\)(?:[+*?]|\{)"
)

ITEM_MEMBERS = {
    "id",
    "title",
    "description",
    "owner",
    "sharing_class",
    "classification",
    "legal_basis",
    "retention",
    "tags",
    "compatibility",
    "schema",
    "examples",
}
SHARING_CLASSES = {"unconditional", "conditional", "none"}
CLASSIFICATIONS = {"public", "internal", "personal", "sensitive-personal"}
COMPATIBILITY = {
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
}
ALLOWED_KEYWORDS = {
    "$schema",
    "$defs",
    "$ref",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "format",
    "pattern",
    "title",
    "description",
    "x-personal",
}
ALLOWED_FORMATS = {"date", "date-time", "email", "uri"}
MAX_DEPTH = 4
MAX_BYTES = 16 * 1024


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def departments() -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in load(SCHEMAS / "departments.json")["departments"]}


def walk(node: dict[str, Any], where: str, in_property: bool = False):
    """Yield (where, subschema, is_property) for every subschema, including $defs."""
    yield where, node, in_property
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{where}/properties/{name}", True)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{where}/items")
    for name, sub in node.get("$defs", {}).items():
        yield from walk(sub, f"{where}/$defs/{name}")


def resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    assert ref.startswith("#/$defs/"), ref
    return root["$defs"][ref.removeprefix("#/$defs/")]


def depth(root: dict[str, Any], node: dict[str, Any], seen: tuple[str, ...] = ()) -> int:
    ref = node.get("$ref")
    if ref is not None:
        assert ref not in seen, f"recursive $ref {ref}"
        seen = (*seen, ref)
    node = resolve(root, node)
    children = list(node.get("properties", {}).values())
    if isinstance(node.get("items"), dict):
        children.append(node["items"])
    return 1 + max((depth(root, c, seen) for c in children), default=0)


ITEMS = [pytest.param({"path": p, "data": load(p)}, id=p.stem) for p in ITEM_FILES]


def test_departments_file() -> None:
    deps = load(SCHEMAS / "departments.json")["departments"]
    ids = [d["id"] for d in deps]
    assert len(ids) == len(set(ids)), "duplicate department id"
    for d in deps:
        assert set(d) == {"id", "name", "description"}, d
        assert DEPARTMENT_ID.match(d["id"]), d["id"]
        assert d["name"].strip()
        assert d["description"].strip()
    for required in (
        "civil-registry",
        "business-registry",
        "tax",
        "vehicle-registry",
        "social-insurance",
        "building-authority",
        "education",
        "social-welfare",
    ):
        assert required in ids


def test_catalogue_size_and_coverage() -> None:
    items = [load(p) for p in ITEM_FILES]
    assert len(items) >= 15
    assert len({i["owner"] for i in items}) >= 6
    ids = [i["id"] for i in items]
    assert len(ids) == len(set(ids))
    classes = {i["sharing_class"] for i in items}
    assert classes == SHARING_CLASSES


@pytest.mark.parametrize("item", ITEMS)
def test_item_file_members(item: dict[str, Any]) -> None:
    data, path = item["data"], item["path"]
    assert set(data) == ITEM_MEMBERS
    assert ITEM_ID.match(data["id"]), data["id"]
    assert path.name == f"{data['id']}.json"
    assert path.stat().st_size < MAX_BYTES
    for key in ("title", "description"):
        assert isinstance(data[key], str)
        assert data[key].strip()
    assert data["owner"] in departments()
    assert data["sharing_class"] in SHARING_CLASSES
    assert data["classification"] in CLASSIFICATIONS
    assert data["compatibility"] in COMPATIBILITY
    assert set(data["legal_basis"]) == {"text", "reference"}
    assert all(isinstance(v, str) and v.strip() for v in data["legal_basis"].values())
    assert DURATION.match(data["retention"]), data["retention"]
    assert isinstance(data["tags"], list)
    assert data["tags"]
    assert all(isinstance(t, str) and t for t in data["tags"])
    assert 2 <= len(data["examples"]) <= 3


@pytest.mark.parametrize("item", ITEMS)
def test_schema_is_valid_draft_2020_12(item: dict[str, Any]) -> None:
    schema = item["data"]["schema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["title"]
    assert isinstance(schema["required"], list)
    assert schema["required"]
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("item", ITEMS)
def test_examples_validate(item: dict[str, Any]) -> None:
    schema = item["data"]["schema"]
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for n, example in enumerate(item["data"]["examples"]):
        errors = [e.message for e in validator.iter_errors(example)]
        assert not errors, f"example {n}: {errors}"


@pytest.mark.parametrize("item", ITEMS)
def test_schema_rules(item: dict[str, Any]) -> None:
    root = item["data"]["schema"]
    assert "$id" not in json.dumps(root)
    personal = False
    for where, node, is_property in walk(root, "#"):
        unknown = set(node) - ALLOWED_KEYWORDS
        assert not unknown, f"{where}: keywords not allowed: {unknown}"
        if "$schema" in node:
            assert where == "#", f"{where}: $schema only at the root"
        if "$defs" in node:
            assert where == "#", f"{where}: $defs only at the root"
        if "$ref" in node:
            target = node["$ref"]
            assert target.startswith("#/$defs/"), f"{where}: non-local $ref {target}"
            assert target.removeprefix("#/$defs/") in root.get("$defs", {}), where
        if is_property:
            assert node.get("title"), f"{where}: property without title"
            assert node.get("description"), f"{where}: property without description"
        if "x-personal" in node:
            assert is_property, f"{where}: x-personal outside a property"
            assert node["x-personal"] is True, where
            personal = True
        types = node.get("type")
        if types == "object" or (isinstance(types, list) and "object" in types):
            assert node.get("additionalProperties") is False, f"{where}: needs additionalProperties"
            assert isinstance(node.get("required"), list), f"{where}: needs required"
            assert set(node["required"]) <= set(node.get("properties", {})), where
        if "format" in node:
            assert node["format"] in ALLOWED_FORMATS, f"{where}: format {node['format']}"
        if "pattern" in node:
            pattern = node["pattern"]
            assert pattern.startswith("^"), f"{where}: unanchored"
            assert pattern.endswith("$"), f"{where}: unanchored"
            assert not NESTED_QUANTIFIER.search(pattern), f"{where}: nested quantifier"
            re.compile(pattern)
    assert depth(root, root) <= MAX_DEPTH
    if item["data"]["classification"] in {"personal", "sensitive-personal"}:
        assert personal, "personal item without any x-personal property"


def test_nested_quantifier_check_catches_bad_patterns() -> None:
    for bad in ("^(a+)+$", "^([0-9]{2})*$", "^(a|b?)+$"):
        assert NESTED_QUANTIFIER.search(bad), bad
    for good in ("^[0-9]{11}$", "^[0-9]{2}(\\.[0-9][0-9])?$", "^([0-9]{8}|[0-9]{11})$"):
        assert not NESTED_QUANTIFIER.search(good), good


# Fields the demo relies on.
DEMO_CONTRACT = {
    "person.identity": (
        {"personal_code", "given_name", "family_name", "date_of_birth", "citizenship", "sex"},
        {"personal_code", "given_name", "family_name", "date_of_birth"},
    ),
    "person.residential-address": (
        {"street", "city", "postal_code", "country", "municipality", "registered_since"},
        {"street", "city", "postal_code", "country"},
    ),
    "business.registration": (
        {
            "registry_code",
            "name",
            "legal_form",
            "status",
            "registered_on",
            "address",
            "activities",
        },
        {"registry_code", "name", "legal_form", "status", "registered_on"},
    ),
    "tax.annual-income-statement": (
        {"year", "total_income_cents", "income_tax_cents", "employers"},
        set(),
    ),
}


@pytest.mark.parametrize("item_id", sorted(DEMO_CONTRACT))
def test_demo_contract(item_id: str) -> None:
    data = load(ITEMS_DIR / f"{item_id}.json")
    schema = data["schema"]
    props, required = DEMO_CONTRACT[item_id]
    if item_id == "tax.annual-income-statement":
        assert props <= set(schema["properties"])
    else:
        assert set(schema["properties"]) == props
        assert set(schema["required"]) == required
    p = schema["properties"]
    if item_id == "person.identity":
        assert p["personal_code"]["pattern"] == "^[0-9]{11}$"
        assert p["date_of_birth"]["format"] == "date"
        assert p["citizenship"]["pattern"] == "^[A-Z]{2}$"
        assert p["sex"]["enum"] == ["F", "M", "X"]
    elif item_id == "person.residential-address":
        assert p["country"]["pattern"] == "^[A-Z]{2}$"
        assert p["registered_since"]["format"] == "date"
    elif item_id == "business.registration":
        assert p["registry_code"]["pattern"] == "^[0-9]{8}$"
        assert p["status"]["enum"] == ["registered", "in-liquidation", "deleted"]
        assert p["registered_on"]["format"] == "date"
        assert p["address"]["$ref"].startswith("#/$defs/")
        activity = p["activities"]["items"]["properties"]
        assert {"nace_code", "description"} <= set(activity)
    else:
        assert p["year"]["type"] == "integer"
        assert p["total_income_cents"]["type"] == "integer"
        assert p["total_income_cents"]["minimum"] == 0
        assert p["employers"]["type"] == "array"


def test_sharing_classes_of_key_items() -> None:
    expected = {
        "business.registration": "unconditional",
        "building.registry-entry": "unconditional",
        "person.death": "conditional",
        "tax.debt-status": "conditional",
    }
    for item_id, sharing in expected.items():
        assert load(ITEMS_DIR / f"{item_id}.json")["sharing_class"] == sharing
    assert sum(load(p)["sharing_class"] == "none" for p in ITEM_FILES) == 1
