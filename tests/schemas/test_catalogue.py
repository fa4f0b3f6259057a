"""The starter catalogue in schemas/ is what the registry accepts, checked by the
registry's own code (its document model, schema rules and validator), plus what the
catalogue itself promises: coverage, house style, and the fields the demo relies on.
(The catalogue reaches a running hub's registry through the admin API once per test process,
into the catalogued template that catalogue_hub copies: tests/conftest.py, decision 0037.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from onceonly.hub.registry import schema_rules, validation
from onceonly.hub.registry.schemas import DEPARTMENT_ID_PATTERN, DepartmentIn, ItemDocument

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
ITEMS_DIR = SCHEMAS / "items"
ITEM_FILES = sorted(ITEMS_DIR.glob("*.json"))


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def departments() -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in load(SCHEMAS / "departments.json")["departments"]}


ITEMS = [pytest.param({"path": p, "data": load(p)}, id=p.stem) for p in ITEM_FILES]


def test_departments_are_what_the_registry_accepts() -> None:
    deps = load(SCHEMAS / "departments.json")["departments"]
    ids = [d["id"] for d in deps]
    assert len(ids) == len(set(ids)), "duplicate department id"
    for d in deps:
        assert re.fullmatch(DEPARTMENT_ID_PATTERN, d["id"]), d["id"]
        DepartmentIn.model_validate({k: v for k, v in d.items() if k != "id"})
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
    assert {i["sharing_class"] for i in items} == {"unconditional", "conditional", "none"}


@pytest.mark.parametrize("item", ITEMS)
def test_item_is_what_the_registry_accepts(item: dict[str, Any]) -> None:
    """The registry's checks of a new item (registry.service): the document model,
    the schema rules, and every example valid under the schema."""
    document = ItemDocument.model_validate(item["data"])
    assert item["path"].name == f"{document.id}.json"
    assert document.owner in departments()
    schema_rules.check_schema(document.json_schema)
    validator = validation.validator_for(
        document.json_schema, validation.fingerprint(document.json_schema)
    )
    for position, example in enumerate(document.examples):
        assert not validation.record_errors(validator, example), f"example {position}"


@pytest.mark.parametrize("item", ITEMS)
def test_item_follows_the_catalogues_house_style(item: dict[str, Any]) -> None:
    """Beyond what the registry requires: two or three examples, a stated retention and
    legal reference, a titled and described property everywhere, closed objects, and
    personal data marked wherever an item is classified personal."""
    data = item["data"]
    assert 2 <= len(data["examples"]) <= 3
    assert data["retention"], "no retention"
    assert data["tags"], "no tags"
    assert data["legal_basis"]["reference"], "no legal reference"
    schema = data["schema"]
    for path, node in schema_rules.subschemas(schema):
        if not isinstance(node, dict):  # a boolean schema: additionalProperties false
            continue
        where = schema_rules.pointer(path)
        if len(path) >= 2 and path[-2] == "properties":
            assert node.get("title"), f"{where}: property without a title"
            assert node.get("description"), f"{where}: property without a description"
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, f"{where}: open object"
    if data["classification"] in {"personal", "sensitive-personal"}:
        assert schema_rules.personal_fields(schema), "personal item without x-personal"


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
