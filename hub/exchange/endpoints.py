"""The record query route (docs/protocol.md §3), and the fast path that serves it.

The route below is the contract: FastAPI describes it in the OpenAPI document from its
signature and dependencies, and ``onceonly.hub.ops.openapi`` reads the same
dependencies for its security and problems. The exchange is also the hub's hot path,
and FastAPI's per-request machinery (its routers, an exit stack, the dependency
solver, the response model) cost about a fifth of the hub's CPU per exchange.
:class:`ExchangeFastPath` therefore answers ``POST /v1/items/{item_id}/records/query``
before the framework's routing: it takes the route's dependencies itself, in the
order FastAPI would, calls the route's own function, and serializes its answer as
FastAPI does. A test holds the route's declared dependencies to what the fast path
takes, so that the two cannot drift apart.
"""

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import StringConstraints, TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from onceonly.hub import errors
from onceonly.hub.access.exceptions import NoGrant, NotShared
from onceonly.hub.audit.dependencies import CurrentAudit
from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth.dependencies import TokenCaller, token_caller
from onceonly.hub.auth.exceptions import InsufficientScope
from onceonly.hub.dependencies import AuditLogDep
from onceonly.hub.exchange import service
from onceonly.hub.exchange.dependencies import exchange_context
from onceonly.hub.exchange.exceptions import (
    OwnerInvalidResponse,
    OwnerTimeout,
    OwnerUnavailable,
    RecordNotFound,
)
from onceonly.hub.exchange.schemas import RecordAnswer, RecordQuery
from onceonly.hub.kit.asgi_scope import route_path
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import HubError, InvalidRequest, problems
from onceonly.hub.registry.exceptions import ItemRetired, UnknownItem, UnknownVersion
from onceonly.hub.registry.schemas import ITEM_ID_PATTERN, ItemId
from onceonly.hub.runtime import hub_of

router = APIRouter(prefix="/v1/items", tags=["exchange"])
ACTION = "record.query"
PATH = "/v1/items/{item_id}/records/query"
_QUERY_BODY = json_body(RecordQuery)


async def open_scope(request: Request, log: AuditLogDep) -> AuditScope:
    """The record query's audit scope (as ``audit.dependencies.audited`` opens one),
    naming the item when the path names a syntactically valid item id and the client
    authenticates: so a refusal of the body is filed under the item it was about
    (decision 0075), and an anonymous caller writes no text of its own into the log
    (decision 0070's follow-up: the path is the caller's text, as its request id is)."""
    scope = open_audit_scope(request, ACTION, log=log)
    try:
        scope.note_once_authenticated(
            item=_ITEM_ID.validate_python(request.path_params.get("item_id"))
        )
    except ValidationError:
        pass  # no item: the path's text is nothing the log should keep
    return scope


@router.post(
    "/{item_id}/records/query",
    response_model=RecordAnswer,
    responses=problems(
        InsufficientScope,
        NoGrant,
        NotShared,
        UnknownItem,
        UnknownVersion,
        RecordNotFound,
        ItemRetired,
        OwnerInvalidResponse,
        OwnerUnavailable,
        OwnerTimeout,
    ),
    dependencies=[Depends(open_scope)],
)
async def query_record(
    item_id: ItemId,
    scope: CurrentAudit,
    caller: TokenCaller,
    query: Annotated[RecordQuery, Depends(_QUERY_BODY)],
    request: Request,
    response: Response,
) -> RecordAnswer:
    context, clock = exchange_context(request)
    outcome = await service.query_record(
        caller=caller, item_id=item_id, query=query, context=context, scope=scope, clock=clock
    )
    # a record is personal data: no cache keeps it (RFC 9111 §5.2.2.5)
    response.headers["Cache-Control"] = "no-store"
    if outcome.deprecated is not None:
        response.headers["Deprecation"] = outcome.deprecated  # RFC 9745 §2
    return outcome.answer


(_DECLARED,) = router.routes
if getattr(_DECLARED, "path", None) != PATH:
    raise RuntimeError(f"the record query's route is not at {PATH}")
_ROUTE_PATH = re.compile(r"/v1/items/([^/]+)/records/query")
# The path parameter as ItemId declares it, so a refusal reads as FastAPI's would.
_ITEM_ID: TypeAdapter[str] = TypeAdapter(
    Annotated[str, StringConstraints(pattern=ITEM_ID_PATTERN, max_length=128)]
)
_ANSWER: TypeAdapter[RecordAnswer] = TypeAdapter(RecordAnswer)


def audits_before_reading(scope: Scope) -> bool:
    """Whether the fast path answers this request: it opens the audit scope before it
    reads the body (onceonly.hub.middleware refuses a body declared too large there at
    its first read, so that the refusal is audited)."""
    return scope["method"] == "POST" and _ROUTE_PATH.fullmatch(route_path(scope)) is not None


class ExchangeFastPath:
    """ASGI middleware inside the hub's request context (request id, size limits,
    access log, metrics, the 500): record queries are answered here, everything else
    goes on to the application's routing. While the application has dependency
    overrides, record queries go to the declared route too, which honours them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = (
            _ROUTE_PATH.fullmatch(route_path(scope))
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if matched is None or getattr(scope.get("app"), "dependency_overrides", None):
            # dependency overrides (a test's, an extension's) reach only the declared route
            await self.app(scope, receive, send)
            return
        item_id = matched.group(1)
        scope["route"] = _DECLARED  # as routing would: the access log's and metrics' label
        scope["path_params"] = {"item_id": item_id}
        request = Request(scope, receive)
        try:
            answer = await _answer(request, item_id)
        except (HubError, RequestValidationError) as error:
            answer = await errors.handled(request, error)
        await answer(scope, receive, send)


async def _answer(request: Request, raw_item_id: str) -> Response:
    """The route's dependencies in FastAPI's order (the route's own, the audit scope;
    then its parameters': the caller, the body; then the path parameter), the route's
    function, and its answer serialized as FastAPI serializes a response model."""
    hub = hub_of(request.app)
    sub_response = Response()  # headers the dependencies and the route add
    sub_response.headers.raw.clear()  # (FastAPI's sub-response starts without any)
    audit = await open_scope(request, hub.audit_log)
    caller = await token_caller(request, sub_response, hub)
    query = await _QUERY_BODY(request)
    # as ops.http_contract refuses it on the route: a parameter, not the bare "?&"
    query_string = request.scope["query_string"]
    if query_string and (name := next(iter(request.query_params), None)) is not None:
        raise InvalidRequest(
            f"the query parameter {name[:64]!r} is not one this operation takes (it takes: none)"
        )
    item_id = _path_item_id(raw_item_id)
    answer = await query_record(item_id, audit, caller, query, request, sub_response)
    body = _ANSWER.dump_json(answer, by_alias=True)
    response = Response(content=body, media_type="application/json")
    response.headers.raw.extend(sub_response.headers.raw)
    return response


def _path_item_id(raw: str) -> str:
    try:
        return _ITEM_ID.validate_python(raw)
    except ValidationError as error:
        raise RequestValidationError(
            [
                {"type": e["type"], "loc": ("path", "item_id"), "msg": e["msg"], "input": raw}
                for e in error.errors(include_input=False)
            ]
        ) from None
