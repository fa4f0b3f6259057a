"""The hub's OpenAPI documents (decision 0024): ``/openapi.json`` and one per data item.

FastAPI writes the document from the routes; it cannot see what the hub does beside
the framework, so this module completes it from the routes' dependencies, which are
what the hub really runs:

- a body read by :class:`~onceonly.hub.kit.jsonbody.JsonBody` becomes the operation's
  ``requestBody`` (the hub parses it itself, strictly; the framework never does);
- who may call comes from the authentication dependency the route takes: a machine
  client (OAuth 2.0 client credentials, ``private_key_jwt`` and DPoP), a person's
  session (HTTP bearer), either (the audit reads, also open to the public), or nobody
  (``security: []``);
- the problems (RFC 9457) a route answers: those its decorator declares
  (:func:`~onceonly.hub.kit.problems.problems`), those of its dependencies, those
  the middleware answers on any route (a NUL in the URL, a body or header fields over
  the limits), and those that come from outside the route (decision 0054): 500
  ``internal-error`` on every route, 503 ``database-unavailable`` with
  ``Retry-After`` on every route but the few that never reach the database
  (``WITHOUT_DATABASE``); each is one ``components.responses`` entry, referenced
  where it is a status's only problem;
- FastAPI's ``422 HTTPValidationError`` is removed: the hub answers invalid input with
  ``400 invalid-request`` (docs/problems.md).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, get_args

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from onceonly.hub.audit.exceptions import AuditUnavailable, SubjectSearchesThrottled
from onceonly.hub.auth.exceptions import (
    ClientTokensOutstanding,
    InsufficientScope,
    InvalidDpopProof,
    InvalidToken,
    TokenRequestsThrottled,
    UseDpopNonce,
)
from onceonly.hub.errors import DATABASE_RETRY_AFTER
from onceonly.hub.kit.jsonbody import JsonBody
from onceonly.hub.kit.problems import (
    PROBLEM_SCHEMA,
    PROBLEM_TYPE_PREFIX,
    PROBLEM_TYPES_MEMBER,
    DatabaseUnavailable,
    HttpVersionNotSupported,
    HubError,
    InvalidRequest,
    MethodNotImplemented,
    PayloadTooLarge,
    RequestHeadersTooLarge,
    RequestTimeout,
    TransferCodingNotImplemented,
    Unavailable,
    UnsupportedContentEncoding,
    UnsupportedMediaType,
    problem_response_document,
)
from onceonly.hub.people.exceptions import NotSignedIn, SignInThrottled
from onceonly.hub.people.principal import Forbidden

SCHEMAS_REF = "#/components/schemas/"
RESPONSES_REF = "#/components/responses/"
HEADERS_REF = "#/components/headers/"
MACHINE_SCHEME, SESSION_SCHEME, METRICS_SCHEME = "machineClient", "personSession", "metricsToken"
TOKEN_PATH = "/oauth/token"

SECURITY_SCHEMES: dict[str, Any] = {
    MACHINE_SCHEME: {
        "type": "oauth2",
        "description": (
            "A department's system client (docs/protocol.md §2): the client credentials "
            "grant at the token endpoint, the client authenticated by `private_key_jwt` "
            "(RFC 7523 §2.2, a signed assertion in the form, not a secret), the token "
            "sender-constrained with DPoP (RFC 9449). Send `Authorization: DPoP <token>` "
            "and a fresh `DPoP` proof (with `ath`) on every request; a hub that asks for "
            "nonces answers `401 use-dpop-nonce` with the nonce in `DPoP-Nonce`."
        ),
        "flows": {
            "clientCredentials": {
                "tokenUrl": TOKEN_PATH,
                "scopes": {
                    "read:{item_id}": "fetch records of one data item (under an active grant)",
                    "publish:{item_id}": "publish change events of an item one's department owns",
                    "audit:read": "read the audit entries that name one's department",
                },
            }
        },
    },
    SESSION_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "oop_ session token",
        "description": (
            "A person's sign-in (`POST /v1/people/sign-in` or OpenID Connect), or the "
            "operator's break-glass token where it is enabled (docs/people.md). "
            "Machine access tokens are never accepted here."
        ),
    },
    METRICS_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "The operators' Prometheus: the hub's metrics token, `<data_dir>/keys/metrics-token` "
            "(made by `onceonly keys init`), as `Authorization: Bearer <token>`. A hub "
            "configured with `metrics_public = true` asks for none (decision 0063)."
        ),
    },
}
MACHINE: list[dict[str, list[str]]] = [{MACHINE_SCHEME: []}]
PERSON: list[dict[str, list[str]]] = [{SESSION_SCHEME: []}]
# The audit reads: anyone; with credentials, a department's client or an auditor.
ANYONE_OR_SIGNED: list[dict[str, list[str]]] = [{}, *MACHINE, *PERSON]
METRICS_SECURITY: list[dict[str, list[str]]] = [{METRICS_SCHEME: []}]

# Every route: the middleware refuses a NUL in the URL (or a repeated query parameter,
# or two Authorization fields), a body announced over the limit, a body with a content
# coding, header fields over the limit and an HTTP version other than 1.1 and 1.0
# before any route runs; the server itself a head not whole in time, a method it does
# not know and a transfer coding it does not decode (docs/problems.md).
_EVERY_ROUTE: tuple[type[HubError], ...] = (
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedContentEncoding,
    RequestHeadersTooLarge,
    RequestTimeout,
    HttpVersionNotSupported,
    MethodNotImplemented,
    TransferCodingNotImplemented,
)
# A machine client's DPoP proof is spent in the single-use register, whose failed
# commit is answered 503 ``unavailable``.
_MACHINE_REFUSALS = (InvalidToken, InvalidDpopProof, UseDpopNonce, Unavailable)

# From outside the route (decision 0054): a fault of the hub, on every operation; the
# database away (decision 0049), on every operation but these, which never reach it.
# A new route is declared as reaching it until it is listed here, and
# tests/hub/openapi/test_database_away.py calls each of these with the database away.
WITHOUT_DATABASE: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/healthz"),  # the process is alive: nothing else is asked
        ("GET", "/readyz"),  # the database not answering is its own 503 `unavailable`
        ("GET", "/metrics"),  # the database's gauges are left out when it does not answer
        ("GET", "/.well-known/jwks.json"),  # the hub's keys, held by the process
        ("GET", "/v1/purposes"),  # the purpose list is a file (`purposes_file`)
        ("GET", "/v1/audit/verifier-key"),  # the checkpointer's key, held by the process
        ("GET", "/v1/people/oidc/start"),  # the provider's metadata, over HTTP
    }
)
# The problems that are a status's only ones on many routes: one shared response each,
# referenced.
SHARED_RESPONSES = {
    (HubError.slug,): "InternalError",
    (DatabaseUnavailable.slug,): "DatabaseUnavailable",
    (RequestTimeout.slug,): "RequestTimeout",
    (HttpVersionNotSupported.slug,): "HttpVersionNotSupported",
    (MethodNotImplemented.slug, TransferCodingNotImplemented.slug): "NotImplemented",
}
RETRY_AFTER = "Retry-After"
# The problems the hub answers with ``Retry-After``: a status's response that lists one
# of them declares the header.
RETRY_AFTER_PROBLEMS = frozenset(
    error.slug
    for error in (
        DatabaseUnavailable,
        TokenRequestsThrottled,  # the OAuth endpoints' rate limits (decision 0051)
        SignInThrottled,
        ClientTokensOutstanding,
        SubjectSearchesThrottled,  # an auditor's searches by subject (decision 0086)
    )
)
RETRY_AFTER_HEADER: dict[str, Any] = {
    "description": (
        "Seconds to wait before sending the request again (RFC 9110 §10.2.3); sent with "
        "every `database-unavailable`, `oauth-slow-down`, `sign-in-throttled` and "
        "`client-tokens-outstanding` answer."
    ),
    "schema": {"type": "integer", "minimum": 0, "examples": [DATABASE_RETRY_AFTER]},
}


ACCEPT_ENCODING = "Accept-Encoding"
ACCEPT_ENCODING_HEADER: dict[str, Any] = {
    "description": (
        "The content codings the hub reads in a request body (RFC 7694 §3): `identity`"
        " only; sent with `unsupported-content-encoding`."
    ),
    "schema": {"type": "string", "const": "identity"},
}


def _dependency(alias: Any) -> Any:
    """The callable of an ``Annotated[..., Depends(callable)]`` alias."""
    return get_args(alias)[1].dependency


@dataclass(frozen=True)
class Authentication:
    """The route dependencies (``Annotated[..., Depends(...)]`` aliases) that say who a
    route lets in. The application names them (only the web layer imports route
    dependencies); the document reads each route's dependencies for them."""

    machine: tuple[Any, ...]  # a department's client: access token and DPoP proof
    person: Any  # a signed-in person (or the break-glass token)
    roles: tuple[Any, ...]  # a role a person must have
    reader: Any  # the audit reads: anyone, or credentials that must hold
    audited: Any  # the request's audit scope: a refusal is audited too

    def calls(self) -> "_Calls":
        return _Calls(
            machine=frozenset(_dependency(alias) for alias in self.machine),
            person=_dependency(self.person),
            roles=frozenset(_dependency(alias) for alias in self.roles),
            reader=_dependency(self.reader),
            audited=_dependency(self.audited),
        )


@dataclass(frozen=True)
class _Calls:
    machine: frozenset[Any]
    person: Any
    roles: frozenset[Any]
    reader: Any
    audited: Any


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _body_of(calls: Iterable[Any]) -> JsonBody[Any] | None:
    return next((call for call in calls if isinstance(call, JsonBody)), None)


def _security_and_problems(
    calls: set[Any], known: _Calls
) -> tuple[list[Any], list[type[HubError]]]:
    """Who may call a route with these dependencies, and what refusing them answers."""
    refusals: list[type[HubError]] = list(_EVERY_ROUTE)
    security: list[Any] = []
    if calls & known.machine:
        security = MACHINE
        refusals += _MACHINE_REFUSALS
    if known.person in calls:
        security = PERSON
        refusals += [NotSignedIn, AuditUnavailable]  # a refused sign-in is audited
    if calls & known.roles:
        refusals.append(Forbidden)
    if known.reader in calls:
        security = ANYONE_OR_SIGNED
        refusals += [*_MACHINE_REFUSALS, NotSignedIn, Forbidden, InsufficientScope]
        refusals.append(AuditUnavailable)
    if known.audited in calls:
        refusals.append(AuditUnavailable)
    return security, refusals


def _from_outside(method: str, path: str) -> list[type[HubError]]:
    """The problems an operation answers for reasons outside the route (decision 0054)."""
    if (method, path) in WITHOUT_DATABASE:
        return [HubError]
    return [HubError, DatabaseUnavailable]


def _problem_document(slugs: list[str]) -> dict[str, Any]:
    """A status's problem response; ``Retry-After`` (and ``Accept-Encoding``) declared
    where one of its problems is answered with it."""
    document = problem_response_document(slugs)
    headers = {}
    if RETRY_AFTER_PROBLEMS.intersection(slugs):
        headers[RETRY_AFTER] = {"$ref": HEADERS_REF + RETRY_AFTER}
    if UnsupportedContentEncoding.slug in slugs:
        headers[ACCEPT_ENCODING] = {"$ref": HEADERS_REF + ACCEPT_ENCODING}
    if headers:
        document["headers"] = headers
    return document


def _problem_response(slugs: list[str]) -> dict[str, Any]:
    unique = tuple(sorted(set(slugs)))
    if unique in SHARED_RESPONSES:
        return {"$ref": RESPONSES_REF + SHARED_RESPONSES[unique]}
    return _problem_document(list(unique))


def _merge_problems(responses: dict[str, Any], refusals: list[type[HubError]]) -> None:
    """Add ``refusals`` to the operation's problem responses, one per status."""
    slugs: dict[str, list[str]] = {}
    for error in refusals:
        slugs.setdefault(str(error.status), []).append(error.slug)
    for status, declared in responses.items():
        for urn in declared.get(PROBLEM_TYPES_MEMBER, []):
            slugs.setdefault(status, []).append(urn.removeprefix(PROBLEM_TYPE_PREFIX))
    for status, names in slugs.items():
        responses[status] = _problem_response(names)


def _drop_validation_error(responses: dict[str, Any]) -> None:
    """FastAPI's 422 for invalid parameters: the hub answers them with 400."""
    phantom = responses.get("422", {}).get("content", {}).get("application/json", {})
    if phantom.get("schema", {}).get("$ref") == SCHEMAS_REF + "HTTPValidationError":
        del responses["422"]


def _complete(
    operation: dict[str, Any],
    route: Any,
    *,
    method: str,
    bodies: dict[type, Any],
    known: _Calls,
) -> None:
    calls = set(_calls(route.dependant))
    security, refusals = _security_and_problems(calls, known)
    refusals += _from_outside(method, route.path_format)
    body = _body_of(calls)
    if body is not None:
        refusals.append(UnsupportedMediaType)  # a body in another media type
        operation["requestBody"] = {
            "required": True,
            "content": {body.media_type: {"schema": bodies[body.model]}},
        }
    operation.setdefault("security", security)
    responses: dict[str, Any] = operation.setdefault("responses", {})
    _drop_validation_error(responses)
    _merge_problems(responses, refusals)
    operation["responses"] = dict(sorted(responses.items()))


def _rename_refs(node: Any, renamed: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                SCHEMAS_REF + renamed.get(value.removeprefix(SCHEMAS_REF), "")
                if key == "$ref"
                and isinstance(value, str)
                and value.removeprefix(SCHEMAS_REF) in renamed
                else _rename_refs(value, renamed)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rename_refs(value, renamed) for value in node]
    return node


def _body_schemas(
    models: list[type[BaseModel]], schemas: dict[str, Any]
) -> dict[type, dict[str, Any]]:
    """The request bodies' schemas (as the hub validates them: strict, no extra
    members), added to ``schemas``; a name FastAPI already uses for another shape
    gets ``-Input``. Returns each model's reference."""
    refs, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=SCHEMAS_REF + "{model}"
    )
    found = definitions.get("$defs", {})
    renamed = {
        name: f"{name}-Input"
        for name, schema in found.items()
        if name in schemas and schemas[name] != schema
    }
    for name, schema in found.items():
        schemas.setdefault(renamed.get(name, name), _rename_refs(schema, renamed))
    return {model: _rename_refs(refs[(model, "validation")], renamed) for model in models}


def _api_routes(app: FastAPI) -> list[Any]:
    """The operations as FastAPI documents them (routers' prefixes and dependencies in)."""
    return [
        context
        for context in routing.iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and context.include_in_schema
    ]


def hub_document(
    app: FastAPI, *, description: str, authentication: Authentication
) -> dict[str, Any]:
    """``/openapi.json``: FastAPI's document, completed as this module's docstring says."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=description,
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    routes = _api_routes(app)
    models = sorted(
        {body.model for r in routes if (body := _body_of(_calls(r.dependant))) is not None},
        key=lambda model: model.__name__,
    )
    bodies = _body_schemas(models, schemas)
    for route in routes:
        for method in sorted(route.methods):
            operation = document["paths"][route.path_format][method.lower()]
            _complete(operation, route, method=method, bodies=bodies, known=authentication.calls())
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    components["schemas"] = dict(sorted(schemas.items()))
    components.update(_shared_components())
    components["securitySchemes"] = SECURITY_SCHEMES
    return document


def _shared_components() -> dict[str, Any]:
    """``components.responses`` and ``components.headers`` of the shared problems."""
    return {
        "responses": {
            name: _problem_document(list(slugs))
            for slugs, name in sorted(SHARED_RESPONSES.items(), key=lambda item: item[1])
        },
        "headers": {RETRY_AFTER: RETRY_AFTER_HEADER, ACCEPT_ENCODING: ACCEPT_ENCODING_HEADER},
    }


RECORD_QUERY_PATH = "/v1/items/{item_id}/records/query"


def _embedded(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """An item's JSON Schema as ``components.schemas[name]``: its local references
    (``#/...``, the only ones the registry takes) re-rooted there; without
    ``$schema`` (OpenAPI 3.1 schemas are 2020-12 already); and without a top-level
    ``required``, since a grant may deliver only some of the fields."""

    def rebase(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    SCHEMAS_REF + name + value[1:]
                    if key == "$ref" and isinstance(value, str) and value.startswith("#")
                    else rebase(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rebase(value) for value in node]
        return node

    embedded = {k: v for k, v in schema.items() if k not in ("$schema", "required")}
    return dict(rebase(embedded))


def _answer(item_id: str, version: int, name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["item", "version", "record", "receipt"],
        "properties": {
            "item": {"const": item_id},
            "version": {"const": version},
            "record": {"$ref": SCHEMAS_REF + name},
            "receipt": {"$ref": SCHEMAS_REF + "RecordReceiptOut"},
        },
    }


def item_document(
    hub: dict[str, Any], *, item_id: str, title: str, schemas: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """The OpenAPI document of one item's record query (``GET
    /v1/items/{item_id}/openapi.json``): the query's body, security and problems as in
    the hub's document ``hub``, and a 200 answer per version whose ``record`` is that
    version's own schema (``components.schemas["<item>.v<N>"]``)."""
    query = hub["paths"][RECORD_QUERY_PATH]["post"]
    names = {version: f"{item_id}.v{version}" for version in sorted(schemas)}
    body = dict(hub["components"]["schemas"]["RecordQuery"])
    body["properties"] = {**body["properties"], "version": {"enum": sorted(schemas)}}
    problems = {s: r for s, r in query["responses"].items() if int(s) >= 400}
    answers = [_answer(item_id, version, name) for version, name in names.items()]
    return {
        "openapi": hub["openapi"],
        "info": {
            "title": f"Onceonly record query: {item_id}",
            "version": hub["info"]["version"],
            "description": (
                f"{title}. `version` in the body selects the schema of the answer's record "
                "(default: the latest); fields the caller's grant does not cover are "
                "left out (docs/protocol.md §3)."
            ),
        },
        "paths": {
            RECORD_QUERY_PATH.replace("{item_id}", item_id): {
                "post": {
                    "operationId": "queryRecord",
                    "summary": f"Fetch a record of {item_id}",
                    "security": query["security"],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": body}},
                    },
                    "responses": {
                        "200": {
                            "description": "the record, and the receipt of its audit entry",
                            "content": {"application/json": {"schema": {"oneOf": answers}}},
                        },
                        **problems,
                    },
                }
            }
        },
        "components": {
            "schemas": {
                **{name: _embedded(schemas[v], name) for v, name in names.items()},
                "RecordReceiptOut": hub["components"]["schemas"]["RecordReceiptOut"],
                "Problem": PROBLEM_SCHEMA,
            },
            **_shared_components(),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
