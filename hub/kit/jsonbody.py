"""Strict JSON bodies: size, nesting depth and duplicate keys are limited, NUL refused.

Python's ``json`` keeps the last of two duplicate keys, so ``{"purpose": "a",
"purpose": "b"}`` could mean different things to a proxy and to us (RFC 8259 §4):
duplicates are refused. Bodies are parsed here, not by the framework, so the same
limits hold on every route. The one parser for JSON the hub did not write is
:func:`onceonly.hub.kit.untrusted_json.load_json` (request bodies, owners' answers,
files given to the CLI), in a module of its own without the web framework, so that
the command line reads the hub's answers without loading FastAPI.
"""

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from onceonly.hub.kit.nul import body_nul
from onceonly.hub.kit.problems import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from onceonly.hub.kit.untrusted_json import JsonTooDeep, UnsafeJson, load_json

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class JsonLimits:
    """The limits :func:`json_body` applies: the application's lifespan puts them in
    every request's state under :data:`LIMITS_STATE`."""

    max_bytes: int
    max_depth: int


LIMITS_STATE = "json_limits"


def parse_json(raw: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """Parse a JSON body under the limits; raise InvalidRequest or PayloadTooLarge."""
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    nul = body_nul(raw)  # PostgreSQL text cannot hold U+0000; refused before parsing
    if nul is not None:
        raise InvalidRequest(nul)
    try:
        return load_json(raw, max_depth=max_depth)
    except JsonTooDeep as error:
        raise InvalidRequest(f"the JSON body is {error}") from None
    except UnsafeJson as error:
        raise InvalidRequest(f"the body is {error}") from None


def describe_errors(error: ValidationError) -> str:
    """Where and why a body is invalid, without echoing the (possibly personal) input."""
    parts = []
    for item in error.errors(include_input=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class JsonBody(Generic[M]):
    """A dependency that reads the request body as ``model`` under the hub's limits.

    A class rather than a closure so that the OpenAPI document can name the body it
    reads (``model``): the framework never parses these bodies itself."""

    media_type = "application/json"

    def __init__(self, model: type[M]) -> None:
        self.model = model

    async def __call__(self, request: Request) -> M:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != self.media_type:
            raise UnsupportedMediaType("the body must be application/json")
        limits: JsonLimits = getattr(request.state, LIMITS_STATE)
        raw = await request.body()
        data = parse_json(raw, max_bytes=limits.max_bytes, max_depth=limits.max_depth)
        try:
            return self.model.model_validate(data)
        except ValidationError as error:
            raise InvalidRequest(describe_errors(error)) from None


def json_body(model: type[M]) -> JsonBody[M]:
    """A dependency that reads the request body as ``model`` under the hub's limits."""
    return JsonBody(model)
