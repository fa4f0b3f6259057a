"""The record query's fast path (onceonly.hub.exchange.endpoints.ExchangeFastPath)
answers as the declared FastAPI route would.

The route stays as the contract (OpenAPI, security, problems); the fast path takes its
dependencies by hand. The first test holds the route's declared dependencies to what
the fast path takes; the second sends the same requests down both, in one hub, and
compares the answers and their audit entries."""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from onceonly.adapters import DPoPKey, OnceonlyError
from onceonly.hub.auth.dependencies import token_caller
from onceonly.hub.exchange import endpoints
from onceonly.hub.exchange.endpoints import ExchangeFastPath

from tests.hub.exchange_world import (
    ADDRESS,
    PURPOSE,
    SUBJECT,
    World,
    access_token,
    exchange_world,
)
from tests.hub_testing import DATABASES, audit_entry_for, module_database

ROUTE_HEADER = "x-test-path"


def test_the_fast_path_takes_what_the_route_declares() -> None:
    """If the route gains a dependency or a parameter, the fast path must take it too:
    this fails until ExchangeFastPath is changed with it."""
    (route,) = endpoints.router.routes
    dependant = route.dependant  # type: ignore[attr-defined]
    names = [getattr(d.call, "__name__", type(d.call).__name__) for d in dependant.dependencies]
    assert names == ["open_scope", "_current_scope", "token_caller", "JsonBody"]
    assert dependant.dependencies[3].call is endpoints._QUERY_BODY
    assert [p.name for p in dependant.path_params] == ["item_id"]
    assert dependant.query_params == dependant.header_params == dependant.cookie_params == []
    assert dependant.body_params == []
    assert (dependant.request_param_name, dependant.response_param_name) == (
        "request",
        "response",
    )


class _EitherPath:
    """The fast path, or (with the test's header) past it to the framework's routing
    and the declared route."""

    def __init__(self, app: ASGIApp) -> None:
        self.routing = app
        self.fast = ExchangeFastPath(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        past = scope["type"] == "http" and (ROUTE_HEADER.encode(), b"route") in scope["headers"]
        await (self.routing if past else self.fast)(scope, receive, send)


def _either_path(app: FastAPI) -> None:
    app.user_middleware = [
        Middleware(_EitherPath) if m.cls is ExchangeFastPath else m for m in app.user_middleware
    ]


class _Recording(httpx.HTTPTransport):
    """Real HTTP; every answer kept, and the test's header on every request when
    ``past`` (the declared route)."""

    def __init__(self, *, past: bool, query_string: bytes = b"") -> None:
        super().__init__()
        self.past = past
        self.query_string = query_string  # put on each record query (DPoP's htu has none)
        self.answers: list[httpx.Response] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.past:
            request.headers[ROUTE_HEADER] = "route"
        if self.query_string and "/records/query" in request.url.path:
            request.url = request.url.copy_with(query=self.query_string)
        response = super().handle_request(request)
        response.read()
        if "/records/query" in request.url.path:
            self.answers.append(response)
        return response


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    database_url = module_database(request, tmp_path_factory)
    tmp_path: Path = tmp_path_factory.mktemp("world")
    with exchange_world(database_url=database_url, tmp_path=tmp_path, adjust=_either_path) as w:
        yield w


QUERIES = {
    "answered": (ADDRESS, SUBJECT, PURPOSE),
    "a malformed item id": ("Not_An.Item", SUBJECT, PURPOSE),
    "an unknown item": ("nothing.here", SUBJECT, PURPOSE),
    "an ungranted purpose": (ADDRESS, SUBJECT, "no-such-purpose"),
    "an item not granted": ("person.identity", SUBJECT, PURPOSE),
    "an empty subject": (ADDRESS, "", PURPOSE),
    "no record": (ADDRESS, "49912310000", PURPOSE),
}
_VOLATILE_HEADERS = {"date", "x-request-id", "dpop-nonce", "content-length"}


def _answer_of(
    world: World, *, past: bool, query: tuple[str, str, str], query_string: bytes = b""
) -> httpx.Response:
    transport = _Recording(past=past, query_string=query_string)
    item, subject, purpose = query
    with world.client(transport=transport) as client:
        try:
            client.fetch(item, subject, purpose=purpose)
        except OnceonlyError:
            pass  # the answer is compared below, whatever it was
    assert transport.answers, "no record query reached the hub"
    return transport.answers[-1]


def _comparable(answer: httpx.Response) -> dict[str, Any]:
    body = json.loads(answer.content)
    if answer.status_code == 200:
        receipt = body["receipt"]
        body = {
            "item": body["item"],
            "version": body["version"],
            "record": body["record"],
            "receipt": sorted(receipt),
            "fields": receipt.get("fields"),
        }
    headers = {k: v for k, v in answer.headers.items() if k not in _VOLATILE_HEADERS}
    return {
        "status": answer.status_code,
        "headers": headers,
        "nonce offered": "dpop-nonce" in answer.headers,
        "body": body,
    }


@pytest.mark.parametrize("case", list(QUERIES))
def test_the_fast_path_answers_as_the_declared_route(world: World, case: str) -> None:
    fast = _answer_of(world, past=False, query=QUERIES[case])
    declared = _answer_of(world, past=True, query=QUERIES[case])
    assert _comparable(fast) == _comparable(declared)
    assert fast.headers["x-request-id"] != declared.headers["x-request-id"]
    entries = [audit_entry_for(world.hub, a, action="record.query") for a in (fast, declared)]
    # salted: a refusal's subject_commitment differs with its salt (decision 0069)
    volatile = {"request_id", "time", "salt", "commitment", "subject_commitment", "owner_ms"}
    first, second = ({k: v for k, v in e.items() if k not in volatile} for e in entries)
    assert first == second
    assert (entries[0]["outcome"] == "ok") == (fast.status_code == 200)


def test_a_query_string_is_refused_by_both_paths_alike(world: World) -> None:
    """The record query takes no query parameter (decision 0074): the declared route's
    check, and the fast path's own (before: the fast path answered 200)."""
    answers = [
        _answer_of(world, past=past, query=QUERIES["answered"], query_string=b"purpose=x")
        for past in (False, True)
    ]
    assert [answer.status_code for answer in answers] == [400, 400]
    assert _comparable(answers[0]) == _comparable(answers[1])
    assert "'purpose' is not one this operation takes" in answers[0].json()["detail"]
    entries = [audit_entry_for(world.hub, a, action="record.query") for a in answers]
    assert [entry["outcome"] for entry in entries] == ["refused", "refused"]


@pytest.mark.parametrize(("query_string", "status"), [(b"&", 200), (b"=", 400)])
def test_an_empty_query_is_judged_by_both_paths_alike(
    world: World, query_string: bytes, status: int
) -> None:
    """``?&`` names no parameter (taken); ``?=`` names the empty one (refused): the fast
    path reads the query as the route's check does (before: it refused ``?&``)."""
    answers = [
        _answer_of(world, past=past, query=QUERIES["answered"], query_string=query_string)
        for past in (False, True)
    ]
    assert [answer.status_code for answer in answers] == [status, status]


def test_dependency_overrides_reach_record_queries(database_url: str, tmp_path: Path) -> None:
    """An override of one of the route's dependencies is honoured: the fast path, which
    takes them by hand, steps aside while the application has overrides."""
    calls: list[str] = []
    apps: list[FastAPI] = []

    def refuse_every_caller() -> None:
        calls.append("override")
        raise HTTPException(status_code=418, detail="overridden")

    def override(app: FastAPI) -> None:
        app.dependency_overrides[token_caller] = refuse_every_caller
        apps.append(app)

    with exchange_world(
        database_url=database_url, tmp_path=tmp_path, adjust=override
    ) as overridden:
        answer = _answer_of(overridden, past=False, query=QUERIES["answered"])
        assert calls == ["override"]
        assert answer.status_code == 418
        apps[0].dependency_overrides.clear()
        assert _answer_of(overridden, past=False, query=QUERIES["answered"]).status_code == 200
        assert calls == ["override"]


@pytest.mark.parametrize("past", [False, True], ids=["fast-path", "declared-route"])
@pytest.mark.parametrize(
    ("item", "body"),
    [
        (ADDRESS, b'{"subject": '),
        (ADDRESS, b'{"purpose": "x"}'),
        ("Not_An.Item", b'{"subject": '),
        ("a" * 200 + ".b", b"[]"),
    ],
    ids=["not-json", "no-subject", "malformed-item", "too-long-item"],
)
def test_a_bad_body_is_filed_under_the_item_the_path_names(
    world: World, past: bool, item: str, body: bytes
) -> None:
    """Decision 0075: a refusal of the body names the item, when the path names a
    syntactically valid item id (the path's text otherwise: nothing to keep)."""
    dpop = DPoPKey.generate()
    token = access_token(world, dpop)
    url = f"{world.hub.url}/v1/items/{item}/records/query"
    headers = {**dpop.headers("POST", url, token), "Content-Type": "application/json"}
    if past:
        headers[ROUTE_HEADER] = "route"
    answer = httpx.post(url, content=body, headers=headers)
    assert answer.status_code in (400, 422), answer.text
    entry = audit_entry_for(world.hub, answer, action="record.query")
    assert entry["outcome"] == "refused"
    assert entry.get("item") == (item if item == ADDRESS else None)
