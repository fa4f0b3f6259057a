"""Reading a response of an OpenAPI document as a client does: through its references
(``#/components/responses/...``, ``#/components/headers/...``)."""

from typing import Any

from jsonschema import Draft202012Validator

PROBLEM_JSON = "application/problem+json"
PROBLEM_PREFIX = "urn:onceonly:problem:"


def resolved(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or the object its local ``$ref`` names (followed until there is none)."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_of(document: dict[str, Any], operation: dict[str, Any], status: int) -> dict[str, Any]:
    return resolved(document, operation["responses"][str(status)])


def problem_types(response: dict[str, Any]) -> set[str]:
    """The problem types (slugs) a resolved response declares."""
    return {urn.removeprefix(PROBLEM_PREFIX) for urn in response.get("x-problem-types", [])}


def header_of(document: dict[str, Any], response: dict[str, Any], name: str) -> dict[str, Any]:
    """The resolved header object ``name`` of a resolved response (KeyError if undeclared)."""
    return resolved(document, response.get("headers", {})[name])


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema`` whose references resolve in ``document``."""
    return Draft202012Validator({**document, **schema})
