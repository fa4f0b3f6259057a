"""Property-based tests: a change the compatibility checker accepts never makes data that
the mode promises to keep valid invalid.

Schemas are drawn from the subset the checker reasons about, changed at random,
and whenever the checker accepts, instances valid under the source schema are
generated (by a small generator for the subset, filtered by the validators) and
must be valid under the target schema, for the hub's validator (jsonschema-rs)
and the reference (jsonschema) alike.
"""

import copy
import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from onceonly.hub.registry import compat
from onceonly.hub.registry.validation import compile_schema

Json = Any
NAMES = ["a", "b", "c"]
PATTERNS = ["^[a-c]{1,3}$", "^x[0-9]*$", "^[0-9]{2}$"]
SCALARS = st.sampled_from(["a", "b", "x1", 0, 1, 2, 2.5, -1, None, True, False])


def number_schema(kind: str) -> st.SearchStrategy[Json]:
    bound = st.one_of(st.integers(-5, 5), st.sampled_from([-2.5, 0.5, 2.5]))
    keywords = st.fixed_dictionaries(
        {},
        optional={
            "minimum": bound,
            "maximum": bound,
            "exclusiveMinimum": bound,
            "exclusiveMaximum": bound,
        },
    )
    return keywords.map(lambda k: {"type": kind, **k})


def string_schema() -> st.SearchStrategy[Json]:
    keywords = st.fixed_dictionaries(
        {},
        optional={
            "minLength": st.integers(0, 3),
            "maxLength": st.integers(0, 5),
            "pattern": st.sampled_from(PATTERNS),
            "format": st.just("date"),
        },
    )
    return keywords.map(lambda k: {"type": "string", **k})


def leaf_schema() -> st.SearchStrategy[Json]:
    return st.one_of(
        string_schema(),
        number_schema("integer"),
        number_schema("number"),
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.just({"type": ["string", "null"]}),
        st.lists(SCALARS, min_size=1, max_size=4).map(lambda v: {"enum": v}),
        SCALARS.map(lambda v: {"const": v}),
        st.sampled_from([True, False, {}]),
    )


def object_schema(children: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    return st.builds(
        _object,
        st.dictionaries(st.sampled_from(NAMES), children, max_size=3),
        st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
        st.one_of(st.none(), st.booleans(), children),
    )


def _object(properties: dict[str, Json], required: list[str], additional: Json) -> Json:
    schema: dict[str, Json] = {"type": "object", "properties": properties, "required": required}
    if additional is not None:
        schema["additionalProperties"] = additional
    return schema


def array_schema(children: st.SearchStrategy[Json]) -> st.SearchStrategy[Json]:
    sizes = st.fixed_dictionaries(
        {}, optional={"minItems": st.integers(0, 2), "maxItems": st.integers(0, 3)}
    )
    return st.builds(lambda items, k: {"type": "array", "items": items, **k}, children, sizes)


SCHEMAS = st.recursive(
    leaf_schema(),
    lambda children: st.one_of(object_schema(children), array_schema(children)),
    max_leaves=6,
)


@st.composite
def changed(draw: st.DrawFn, schema: Json) -> Json:
    """``schema`` with one to three random changes at random places."""
    result = copy.deepcopy(schema)
    for _ in range(draw(st.integers(1, 3))):
        result = _change_somewhere(draw, result)
    return result


def _change_somewhere(draw: st.DrawFn, schema: Json) -> Json:
    if isinstance(schema, dict) and schema.get("type") == "object" and schema.get("properties"):
        if draw(st.booleans()):
            name = draw(st.sampled_from(sorted(schema["properties"])))
            schema["properties"][name] = _change_somewhere(draw, schema["properties"][name])
            return schema
    if isinstance(schema, dict) and schema.get("type") == "array" and draw(st.booleans()):
        schema["items"] = _change_somewhere(draw, schema.get("items", True))
        return schema
    return draw(_local_change(schema))


def _local_change(schema: Json) -> st.SearchStrategy[Json]:
    options: list[st.SearchStrategy[Json]] = [leaf_schema()]
    if isinstance(schema, dict) and schema:
        keys = sorted(schema)
        options.append(
            st.sampled_from(keys).map(lambda k: {x: v for x, v in schema.items() if x != k})
        )
    if isinstance(schema, dict) and schema.get("type") == "object":
        options.append(
            st.builds(
                lambda name, sub, req: _with_property(schema, name, sub, req),
                st.sampled_from(NAMES),
                leaf_schema(),
                st.booleans(),
            )
        )
        options.append(st.sampled_from([None, True, False]).map(lambda a: _closed(schema, a)))
    if isinstance(schema, dict) and "enum" in schema:
        options.append(SCALARS.map(lambda v: {**schema, "enum": [*schema["enum"], v]}))
    return st.one_of(options)


def _with_property(schema: Json, name: str, sub: Json, required: bool) -> Json:
    result = copy.deepcopy(schema)
    result.setdefault("properties", {})[name] = sub
    if required and name not in result.setdefault("required", []):
        result["required"].append(name)
    return result


def _closed(schema: Json, additional: Json) -> Json:
    result = {k: v for k, v in schema.items() if k != "additionalProperties"}
    if additional is not None:
        result["additionalProperties"] = additional
    return result


# --- instances of a schema -----------------------------------------------------------------


def instances(schema: Json, depth: int = 0) -> st.SearchStrategy[Json]:
    """Values meant to be valid under ``schema`` (callers still filter with a validator)."""
    if schema is False:
        return st.nothing()
    if schema is True or schema == {} or depth > 4:
        return st.one_of(SCALARS, st.lists(SCALARS, max_size=2))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    declared = schema.get("type", ["null", "boolean", "integer", "string", "array", "object"])
    types = declared if isinstance(declared, list) else [declared]
    return st.one_of([_typed(t, schema, depth) for t in types])


def _child(schema: Json, depth: int) -> st.SearchStrategy[Json]:
    """A child's values, never an empty strategy (a ``false`` child still yields some)."""
    return st.one_of(instances(schema, depth + 1), SCALARS)


def _typed(kind: str, schema: Json, depth: int) -> st.SearchStrategy[Json]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        low = max(schema.get("minimum", -6), schema.get("exclusiveMinimum", -7))
        high = min(schema.get("maximum", 6), schema.get("exclusiveMaximum", 7))
        low, high = min(low, high), max(low, high)
        integers = st.integers(int(low) - 1, int(high) + 1)
        if kind == "integer":
            return integers
        return st.one_of(integers, st.sampled_from([low, high, (low + high) / 2, 0.5, -2.5]))
    if kind == "string":
        return _string(schema)
    if kind == "array":
        if schema.get("items", True) is False:
            return st.just([])
        return st.lists(
            _child(schema.get("items", True), depth),
            min_size=schema.get("minItems", 0),
            max_size=max(schema.get("maxItems", 3), schema.get("minItems", 0)),
        )
    return _object_instance(schema, depth)


def _string(schema: Json) -> st.SearchStrategy[Json]:
    if "format" in schema:
        return st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True)
    low = schema.get("minLength", 0)
    return st.text("abcx1", min_size=low, max_size=max(low, schema.get("maxLength", 4)))


def _object_instance(schema: Json, depth: int) -> st.SearchStrategy[Json]:
    properties = schema.get("properties", {})
    additional = schema.get("additionalProperties", True)
    values = {name: _child(sub, depth) for name, sub in properties.items()}
    extras = {} if additional is False else {"z": _child(additional, depth)}
    required = {n: values.get(n, _child(additional, depth)) for n in schema.get("required", [])}
    optional = {n: s for n, s in {**values, **extras}.items() if n not in required}
    return st.fixed_dictionaries(required, optional=optional)


# --- the property ------------------------------------------------------------------------------

WRAP = "https://json-schema.org/draft/2020-12/schema"


def valid(schema: Json, instance: Json) -> bool:
    """Valid under the hub's validator and the reference, which must agree."""
    hub = compile_schema({"$schema": WRAP, "$defs": {"s": schema}, "$ref": "#/$defs/s"})
    reference = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    verdict = hub.is_valid(instance)
    assert verdict == reference.is_valid(instance), (schema, instance)
    return verdict


def judged(a: Json, b: Json) -> str | None:
    try:
        return compat.subsumption_problem(a, b)
    except compat.CannotJudge:
        pytest.fail(f"the generated subset should always be judged: {a!r} / {b!r}")


PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@PROPERTY_SETTINGS
@given(data=st.data(), a=SCHEMAS)
def test_accepted_subsumption_keeps_every_instance_valid(data: st.DataObject, a: Json) -> None:
    b = data.draw(changed(a))
    if judged(a, b) is not None:
        return
    for _ in range(5):
        instance = data.draw(instances(a))
        assume(valid(a, instance))
        assert valid(b, instance), (a, b, instance)


MODES = ["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL"]


@PROPERTY_SETTINGS
@given(data=st.data(), first=SCHEMAS, mode=st.sampled_from(MODES))
def test_accepted_version_keeps_the_promise_of_its_mode(
    data: st.DataObject, first: Json, mode: compat.Mode
) -> None:
    second = data.draw(changed(first))
    new = data.draw(changed(second))
    try:
        compat.check_compatible(new, [first, second], mode)
    except compat.Incompatible:
        return
    promised = [second] if "TRANSITIVE" not in mode else [first, second]
    for old in promised:
        if mode.startswith(("BACKWARD", "FULL")):
            instance = data.draw(instances(old))
            assume(valid(old, instance))
            assert valid(new, instance), (mode, old, new, instance)
        if mode.startswith(("FORWARD", "FULL")):
            instance = data.draw(instances(new))
            assume(valid(new, instance))
            assert valid(old, instance), (mode, old, new, instance)


@settings(max_examples=200, deadline=None)
@given(a=SCHEMAS)
def test_every_schema_contains_itself(a: Json) -> None:
    assert compat.subsumption_problem(a, copy.deepcopy(a)) is None
