"""What an API route takes, as its declaration says (decision 0074).

- **Query parameters.** An API route (``/v1/``, ``/oauth/``, ``/.well-known/``) refuses
  a query parameter it does not declare, 400 ``invalid-request`` naming it: an
  auditor's misspelt filter (``departmnt=tax``) would otherwise export the whole log,
  and the query's audit entry would not say what was asked. The check runs as the
  route's last dependency, as FastAPI checks the parameters it declares: after the
  dependency that opens an audited route's scope, so the refusal is audited. On an
  OAuth endpoint (``/oauth/``) the refusal is the endpoint's own ``invalid_request``
  (``oauth-invalid-request``, with its ``error`` member: RFC 6749 §5.2). Each
  route's names are read once, from its dependencies, when the app is built. The
  OpenID Connect callback is left out: a provider adds parameters of its own to the
  redirect (``iss``, ``session_state``), which RFC 6749 §4.1.2 tells a client to ignore.
- **Methods.** A 405 lists in ``Allow`` every method of the resource (RFC 9110
  §15.5.6), not those of the first route that matched its path (Starlette's), and a
  ``GET`` route answers ``HEAD`` (RFC 9110 §9.3.2): as ``GET``, without the body.
  Both read one table of the app's path templates, made at the first 405 or ``HEAD``.
"""

import inspect
import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, routing
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onceonly.hub.auth.exceptions import InvalidTokenRequest
from onceonly.hub.kit.asgi_scope import SENT_METHOD, route_path
from onceonly.hub.kit.problems import InvalidRequest

API_ROOTS = ("/v1/", "/oauth/", "/.well-known/")
# Whose errors are OAuth's (RFC 6749 §5.2, RFC 7662 §2.3, RFC 7009 §2.2.1): with ``error``.
_OAUTH_ROOT = "/oauth/"
# The provider's redirect: RFC 6749 §4.1.2, "The client MUST ignore unrecognized
# response parameters" (OpenID Connect providers add ``iss``, ``session_state``, ...).
TAKES_ANY_QUERY = frozenset({"/v1/people/oidc/callback"})
_SHOWN_NAME = 64  # characters of a refused name the detail quotes


def _query_names(dependant: Dependant) -> Iterator[str]:
    """The query parameters a route reads: its own and its dependencies'."""
    for field in dependant.query_params:
        yield field.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def _undeclared(request: Request, declared: frozenset[str]) -> str | None:
    """The first query parameter of ``request`` that is not in ``declared``, if any."""
    if not request.scope.get("query_string"):
        return None
    return next((name for name in request.query_params if name not in declared), None)


def _refusal(
    declared: frozenset[str], *, oauth: bool
) -> Callable[[Request], Coroutine[Any, Any, None]]:
    takes = ", ".join(sorted(declared)) or "none"
    refused = InvalidTokenRequest if oauth else InvalidRequest

    async def refuse_undeclared(request: Request) -> None:
        name = _undeclared(request, declared)
        if name is not None:
            raise refused(
                f"the query parameter {name[:_SHOWN_NAME]!r} is not one this operation"
                f" takes (it takes: {takes})"
            )

    return refuse_undeclared


def refuse_undeclared_queries(app: FastAPI) -> None:
    """Give each API route of ``app`` its query check, as its last dependency; before
    the console is included (its pages are no API, and are left to their forms)."""
    for context in routing.iter_route_contexts(app.routes):
        path = context.path_format
        if not isinstance(context.original_route, APIRoute) or path is None:
            continue
        if not path.startswith(API_ROOTS) or path in TAKES_ANY_QUERY:
            continue
        dependant: Dependant = context.dependant
        check = _refusal(frozenset(_query_names(dependant)), oauth=path.startswith(_OAUTH_ROOT))
        dependant.dependencies.append(get_dependant(path=path, call=check))


@dataclass(frozen=True)
class _Resource:
    pattern: re.Pattern[str]
    allow: str  # the Allow field: every method of the path template's routes
    head_as_get: bool  # a GET without a HEAD of its own


class Resources:
    """The app's path templates and their methods, read from its routes once."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._table: list[_Resource] | None = None

    def of(self, scope: Scope) -> _Resource | None:
        """The resource whose template matches the request's path, in routing's order."""
        path = route_path(scope)
        return next((r for r in self._resources() if r.pattern.match(path)), None)

    def _resources(self) -> list[_Resource]:
        if self._table is None:
            methods: dict[str, set[str]] = {}
            patterns: dict[str, re.Pattern[str]] = {}
            for context in routing.iter_route_contexts(self.app.routes):
                template, pattern = context.path_format, getattr(context, "path_regex", None)
                if template is None or pattern is None or not context.methods:
                    continue
                methods.setdefault(template, set()).update(context.methods)
                patterns.setdefault(template, pattern)
            self._table = [
                _Resource(patterns[template], _allow(found), "GET" in found and "HEAD" not in found)
                for template, found in methods.items()
            ]
        return self._table


def _allow(methods: set[str]) -> str:
    answered = methods | {"HEAD"} if "GET" in methods else methods
    return ", ".join(sorted(answered))


def answer_every_method(app: FastAPI, resources: Resources) -> None:
    """A 405's ``Allow`` from ``resources``, rendered by the app's handler of HTTP
    errors as it is when the 405 is answered (onceonly.hub.errors's, which the console
    wraps to answer its pages' with a page)."""

    async def not_allowed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        resource = resources.of(request.scope)
        headers = dict(exc.headers or {})
        if resource is not None:
            headers["Allow"] = resource.allow
        with_allow = StarletteHTTPException(405, detail=exc.detail, headers=headers)
        answer = app.exception_handlers[StarletteHTTPException](request, with_allow)
        return await answer if inspect.isawaitable(answer) else answer

    app.add_exception_handler(405, not_allowed)


class HeadAsGet:
    """ASGI middleware: ``HEAD`` on a path whose routes take ``GET`` (and not ``HEAD``
    themselves) is answered as that ``GET``, with its status and header fields and no
    body (RFC 9110 §9.3.2). Anything else passes untouched."""

    def __init__(self, app: ASGIApp, *, resources: Resources) -> None:
        self.app = app
        self.resources = resources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        resource = self.resources.of(scope)
        if resource is None or not resource.head_as_get:
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # a copy: the server reads the method of its own scope to send no body itself
        as_get = {**scope, "method": "GET", SENT_METHOD: "HEAD"}  # htm: the sent method
        try:
            await self.app(as_get, receive, without_body)
        finally:
            if "route" in as_get:  # the access log's and the metrics' label
                scope["route"] = as_get["route"]
