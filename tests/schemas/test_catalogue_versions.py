"""Later schema versions in schemas/versions/, and the registry's own rules over the
whole catalogue: every schema is accepted, every example valid, every version compatible."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from onceonly.hub.cli.admin_client import _later_versions
from onceonly.hub.registry import compat, schema_rules
from onceonly.hub.registry.validation import compile_schema

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ITEM_FILES = sorted((SCHEMAS / "items").glob("*.json"))
VERSION_FILES = sorted((SCHEMAS / "versions").glob("*.json"))
VERSION_NAME = re.compile(r"^(?P<item>[a-z][a-z0-9.-]*)\.v(?P<number>[2-9][0-9]*)\.json$")


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def versions_of(item_path: Path) -> list[dict[str, Any]]:
    """Every version of an item, oldest first: its file, then schemas/versions/."""
    document = load(item_path)
    later = [load(p) for p in _later_versions(SCHEMAS, document["id"])]
    return [{"schema": document["schema"], "examples": document["examples"]}, *later]


def test_some_items_have_later_versions() -> None:
    assert len(VERSION_FILES) >= 2


@pytest.mark.parametrize("path", VERSION_FILES, ids=lambda p: p.name)
def test_version_file_names_an_item_and_its_next_number(path: Path) -> None:
    match = VERSION_NAME.match(path.name)
    assert match, f"{path.name}: must be <item id>.v<N>.json with N >= 2"
    assert (SCHEMAS / "items" / f"{match['item']}.json").is_file()
    siblings = [VERSION_NAME.match(p.name) for p in VERSION_FILES]
    numbers = [int(m["number"]) for m in siblings if m and m["item"] == match["item"]]
    assert sorted(numbers) == list(range(2, 2 + len(numbers))), "versions without gaps"
    assert set(load(path)) <= {"schema", "examples"}
    assert len(load(path)["examples"]) >= 2


@pytest.mark.parametrize("path", ITEM_FILES, ids=lambda p: p.stem)
def test_every_version_is_accepted_and_every_example_valid(path: Path) -> None:
    for number, version in enumerate(versions_of(path), start=1):
        schema_rules.check_schema(version["schema"])
        validator = compile_schema(version["schema"])
        for position, example in enumerate(version["examples"]):
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, f"version {number}, example {position}: {errors}"


@pytest.mark.parametrize("path", ITEM_FILES, ids=lambda p: p.stem)
def test_every_version_keeps_the_item_compatibility_mode(path: Path) -> None:
    mode = load(path)["compatibility"]
    schemas = [v["schema"] for v in versions_of(path)]
    for number in range(1, len(schemas)):
        compat.check_compatible(schemas[number], schemas[:number], mode)


@pytest.mark.parametrize("path", VERSION_FILES, ids=lambda p: p.name)
def test_later_properties_are_documented(path: Path) -> None:
    for name, prop in load(path)["schema"]["properties"].items():
        assert prop.get("title"), name
        assert prop.get("description"), name
