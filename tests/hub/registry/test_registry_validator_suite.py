"""The hub's record validator against the official JSON-Schema-Test-Suite (Draft 2020-12).

Every file of the suite for a keyword the registry allows, and the optional
format files for every format it allows, run through
``onceonly.hub.registry.validation.compile_schema``: the validator the exchange uses.
The hub asserts formats, so the main ``format.json`` (annotation-only
behaviour) is replaced by the optional format files.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from onceonly.hub.registry.schema_rules import ALLOWED_FORMATS, ALLOWED_KEYWORDS
from onceonly.hub.registry.validation import compile_schema

SUITE = Path(__file__).resolve().parents[4] / "shared/testdata/json-schema-test-suite/tests"
DRAFT = SUITE / "draft2020-12"

# Suite files named after a keyword the registry allows, plus the general ones.
GENERAL = ["boolean_schema", "infinite-loop-detection", "ref", "default"]
KEYWORD_FILES = sorted(
    {name for name in ALLOWED_KEYWORDS if (DRAFT / f"{name}.json").is_file()} - {"format"}
    | {name for name in GENERAL if (DRAFT / f"{name}.json").is_file()}
)
FORMAT_FILES = sorted(
    f for f in ALLOWED_FORMATS if (DRAFT / "optional/format" / f"{f}.json").is_file()
)
FILES = [f"{name}.json" for name in KEYWORD_FILES] + [
    f"optional/format/{name}.json" for name in FORMAT_FILES
]
# ref.json has groups built on $id, $anchor or remote documents: schemas the registry
# refuses before any validator sees them (tests/hub/registry/test_registry_schema_rules.py).
IDENTITY = {"$id", "$anchor", "$dynamicRef", "$dynamicAnchor"}


def uses_refused_constructs(node: Any) -> bool:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if IDENTITY & node.keys() or (isinstance(ref, str) and not ref.startswith("#")):
            return True
        return any(uses_refused_constructs(value) for value in node.values())
    if isinstance(node, list):
        return any(uses_refused_constructs(value) for value in node)
    return False


pytestmark = pytest.mark.skipif(
    not DRAFT.is_dir(), reason=f"no JSON-Schema-Test-Suite at {DRAFT} (../shared/testdata)"
)


def test_the_suite_covers_the_allowed_keywords_and_formats() -> None:
    assert len(KEYWORD_FILES) >= 30
    assert set(FORMAT_FILES) == set(ALLOWED_FORMATS)


@pytest.mark.parametrize("name", FILES)
def test_hub_validator_passes_the_suite(name: str) -> None:
    disagreements, ran = [], 0
    for group in json.loads((DRAFT / name).read_text()):
        if uses_refused_constructs(group["schema"]):
            continue
        validator = compile_schema(group["schema"])
        for case in group["tests"]:
            ran += 1
            if validator.is_valid(case["data"]) != case["valid"]:
                disagreements.append(f"{group['description']} / {case['description']}")
    assert ran > 0
    assert not disagreements, disagreements
