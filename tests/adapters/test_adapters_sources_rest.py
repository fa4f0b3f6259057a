"""The REST source against a real legacy HTTP server on loopback."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from onceonly.adapters import (
    ConfigError,
    InvalidSourceRecord,
    RecordStore,
    RestItem,
    RestSource,
    SourceUnavailable,
)
from onceonly.adapters._mapping import MISSING
from onceonly.adapters._rest import resolve_pointer

from tests.adapters.adapter_testing import serve

pytestmark = pytest.mark.anyio

SUBJECT = "38001085718"
ANSWER = {
    "id": SUBJECT,
    "addr": {"line1": "Pikk 1", "town": "Tallinn", "zip": "10123", "flat": None},
    "geo": [59.437, 24.745],
    "a/b": {"m~n": "escaped"},
}
FIELDS = {
    "street": "/addr/line1",
    "city": "/addr/town",
    "postal_code": "/addr/zip",
    "floor": "/addr/flat",
    "geo.lat": "/geo/0",
    "geo.lon": "/geo/1",
    "moved_in": "/addr/since",
}
MAPPED = {
    "street": "Pikk 1",
    "city": "Tallinn",
    "postal_code": "10123",
    "geo": {"lat": 59.437, "lon": 24.745},
}


@dataclass
class Legacy:
    """A department's legacy system: a few endpoints with knobs."""

    url: str = ""
    paths: list[str] = field(default_factory=list)
    failures_left: int = 0
    calls: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def note_raw_path(request: Request, call_next: Any) -> Response:
            self.paths.append(request.scope["raw_path"].decode())
            response: Response = await call_next(request)
            return response

        @app.get("/people/{code}/address")
        def address(code: str) -> Response:
            if code != SUBJECT:
                return JSONResponse({"error": "unknown"}, status_code=404)
            return JSONResponse(ANSWER)

        @app.get("/secure/{code}")
        def secure(code: str, request: Request) -> Response:
            if request.headers.get("authorization") != "Bearer s3cret":
                return JSONResponse({"error": "who are you"}, status_code=401)
            return JSONResponse({"addr": {"line1": "Pikk 1", "town": "Tallinn"}})

        @app.get("/flaky/{code}")
        def flaky(code: str) -> Response:
            self.calls += 1
            if self.failures_left > 0:
                self.failures_left -= 1
                return JSONResponse({"error": "busy"}, status_code=503)
            return JSONResponse(ANSWER)

        @app.get("/slow/{code}")
        async def slow(code: str) -> Response:
            """Answers after 5 s, or once the system is stopping (its shutdown would
            otherwise wait for this answer)."""
            self.calls += 1
            with anyio.move_on_after(5.0):
                while not self.stopping.is_set():
                    await anyio.sleep(0.02)
            return JSONResponse(ANSWER)

        @app.post("/lookup")
        async def lookup(request: Request) -> Response:
            body = await request.json()
            if body != {"query": {"personalCode": SUBJECT}, "kind": "address"}:
                return JSONResponse({"error": "no such person"}, status_code=404)
            return JSONResponse(ANSWER)

        @app.get("/text/{code}")
        def text(code: str) -> Response:
            return PlainTextResponse("ADDRESS: PIKK 1")

        return app


@pytest.fixture(scope="module")
def legacy_server() -> Iterator[Legacy]:
    legacy = Legacy()
    with serve(legacy.app()) as url:
        legacy.url = url
        yield legacy
        legacy.stopping.set()


@pytest.fixture
def legacy(legacy_server: Legacy) -> Legacy:
    legacy_server.paths.clear()
    legacy_server.failures_left = legacy_server.calls = 0
    return legacy_server


@pytest.fixture
async def opened() -> AsyncIterator[list[RestSource]]:
    sources: list[RestSource] = []
    yield sources
    for source in sources:
        await source.aclose()


@pytest.fixture
def rest(opened: list[RestSource]) -> Any:
    def make(url: str, **settings: Any) -> RestSource:
        opened.append(RestSource(url, **{"backoff": 0.01, **settings}))
        return opened[-1]

    return make


async def test_maps_the_answer_with_json_pointers(legacy: Legacy, rest: Any) -> None:
    source = rest(f"{legacy.url}/people/{{subject}}/address", fields=FIELDS)

    assert await source.fetch("person.residential-address", SUBJECT) == MAPPED


async def test_keep_nulls_keeps_a_null_but_still_leaves_a_missing_pointer_out(
    legacy: Legacy, rest: Any
) -> None:
    source = rest(f"{legacy.url}/people/{{subject}}/address", fields=FIELDS, keep_nulls=True)

    assert await source.fetch("x.y", SUBJECT) == {**MAPPED, "floor": None}


async def test_without_fields_the_answer_is_the_record(legacy: Legacy, rest: Any) -> None:
    source = rest(f"{legacy.url}/people/{{subject}}/address")

    assert await source.fetch("x.y", SUBJECT) == ANSWER


async def test_404_is_no_record(legacy: Legacy, rest: Any) -> None:
    source = rest(f"{legacy.url}/people/{{subject}}/address", fields=FIELDS)

    assert await source.fetch("x.y", "00000000000") is None


async def test_the_subject_is_percent_encoded_into_the_url(legacy: Legacy, rest: Any) -> None:
    source = rest(f"{legacy.url}/people/{{subject}}/address", fields=FIELDS)

    assert await source.fetch("x.y", "..admin?x=1#y z") is None

    assert legacy.paths == ["/people/..admin%3Fx%3D1%23y%20z/address"]


async def test_posts_a_body_with_the_subject_substituted(legacy: Legacy, rest: Any) -> None:
    body = {"query": {"personalCode": "{subject}"}, "kind": "address"}
    source = rest(f"{legacy.url}/lookup", method="POST", body=body, fields=FIELDS)

    assert await source.fetch("x.y", SUBJECT) == MAPPED
    assert await source.fetch("x.y", "00000000000") is None


async def test_retries_5xx_with_backoff_then_answers(legacy: Legacy, rest: Any) -> None:
    legacy.failures_left = 2
    source = rest(f"{legacy.url}/flaky/{{subject}}", fields=FIELDS, retries=2, backoff=0.05)

    started = time.monotonic()
    record = await source.fetch("x.y", SUBJECT)

    assert record == MAPPED
    assert legacy.calls == 3
    assert time.monotonic() - started >= 0.05 + 0.1


async def test_gives_up_after_the_retries_as_unavailable(legacy: Legacy, rest: Any) -> None:
    legacy.failures_left = 10
    source = rest(f"{legacy.url}/flaky/{{subject}}", fields=FIELDS, retries=1)

    with pytest.raises(SourceUnavailable, match="HTTP 503") as caught:
        await source.fetch("x.y", SUBJECT)

    assert legacy.calls == 2
    assert (caught.value.status, caught.value.problem_type) == (503, "source-unavailable")


async def test_a_refused_connection_is_retried_then_unavailable(rest: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = rest(f"http://127.0.0.1:{port}/people/{{subject}}", retries=2)

    with pytest.raises(SourceUnavailable, match="cannot reach the system \\(ConnectError\\)"):
        await source.fetch("x.y", SUBJECT)


async def test_a_slow_system_times_out_without_retrying(legacy: Legacy, rest: Any) -> None:
    source = rest(f"{legacy.url}/slow/{{subject}}", timeout=0.2, retries=3)

    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"did not answer in 0\.2 s"):
        await source.fetch("x.y", SUBJECT)

    assert legacy.calls == 1  # no retry after a timeout
    assert time.monotonic() - started < 4.0  # nor a wait for the 5 s answer


async def test_an_answer_that_is_not_json_is_an_invalid_record(legacy: Legacy, rest: Any) -> None:
    source = rest(f"{legacy.url}/text/{{subject}}")

    with pytest.raises(InvalidSourceRecord) as caught:
        await source.fetch("x.y", SUBJECT)

    assert (caught.value.status, caught.value.problem_type) == (502, "source-invalid-record")


async def test_headers_come_from_the_environment_variables_the_config_names(
    legacy: Legacy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, opened: list[Any]
) -> None:
    settings = RestItem(
        source="rest",
        url=f"{legacy.url}/secure/{{subject}}",
        headers={"Accept": "application/json"},
        header_env={"Authorization": "LEGACY_AUTH"},
        fields={"street": "/addr/line1", "city": "/addr/town"},
    )
    monkeypatch.setenv("LEGACY_AUTH", "Bearer s3cret")

    with RecordStore(tmp_path / "s.db") as store:
        opened.append(settings.open(store=store))

    assert await opened[0].fetch("x.y", SUBJECT) == {"street": "Pikk 1", "city": "Tallinn"}


def test_an_unset_header_variable_is_a_config_error(tmp_path: Path) -> None:
    settings = RestItem(
        source="rest", url="http://h/{subject}", header_env={"Authorization": "NOT_SET_ANYWHERE"}
    )

    with RecordStore(tmp_path / "s.db") as store, pytest.raises(ConfigError, match="NOT_SET"):
        settings.open(store=store)


async def test_a_401_from_the_system_is_unavailable_not_retried(legacy: Legacy, rest: Any) -> None:
    source = rest(f"{legacy.url}/secure/{{subject}}")

    with pytest.raises(SourceUnavailable, match="HTTP 401"):
        await source.fetch("x.y", SUBJECT)


async def test_probe_reports_the_base_url_answering(legacy: Legacy, rest: Any) -> None:
    source = rest(f"{legacy.url}/people/{{subject}}/address")

    assert await source.probe("x.y") == f"{legacy.url}/ answers (HTTP 404)"


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("", ANSWER),
        ("/addr/line1", "Pikk 1"),
        ("/addr/flat", None),
        ("/geo/1", 24.745),
        ("/a~1b/m~0n", "escaped"),
        ("/geo/2", MISSING),
        ("/geo/01", MISSING),
        ("/addr/line1/x", MISSING),
        ("/nothing", MISSING),
    ],
)
def test_resolve_pointer_follows_rfc_6901(pointer: str, expected: object) -> None:
    assert resolve_pointer(ANSWER, pointer) == expected


async def test_httpx_and_httpcore_log_no_subject_of_the_sources_requests(
    legacy: Legacy, rest: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A program embedding the adapter that logs at INFO (or DEBUG) had each request's
    URL, subject and all, written by httpx's logger (review 161). Its own clients'
    lines are left as they are."""
    caplog.set_level(logging.DEBUG)  # what logging.basicConfig(level=logging.DEBUG) gives
    source = rest(f"{legacy.url}/people/{{subject}}/address", fields=FIELDS, retries=1)
    failing = rest(f"{legacy.url}/flaky/{{subject}}", retries=1)
    legacy.failures_left = 5

    assert await source.fetch("x.y", SUBJECT) == MAPPED
    assert await source.fetch("x.y", "49912319876") is None
    with pytest.raises(SourceUnavailable):
        await failing.fetch("x.y", SUBJECT)
    async with httpx.AsyncClient() as own:  # the host program's own client
        await own.get(f"{legacy.url}/people/{SUBJECT}/address")

    lines = [(r.name, r.getMessage()) for r in caplog.records if r.name.startswith("http")]
    holding = [line for line in lines if SUBJECT in line[1] or "49912319876" in line[1]]
    assert holding == [
        ("httpx", f'HTTP Request: GET {legacy.url}/people/{SUBJECT}/address "HTTP/1.1 200 OK"')
    ]
    withheld = [m for name, m in lines if name == "httpx" and "(path withheld)" in m]
    assert withheld == [
        f'HTTP Request: GET {legacy.url}/(path withheld) "HTTP/1.1 {status}"'
        for status in (
            "200 OK",
            "404 Not Found",
            "503 Service Unavailable",
            "503 Service Unavailable",
        )
    ]
