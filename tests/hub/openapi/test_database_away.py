"""A live hub's answers while its database is away are the ones its /openapi.json
declares (decision 0054): 503 ``database-unavailable`` with the declared problem schema
and ``Retry-After`` header, only where declared; the operations that never reach the
database (``openapi.WITHOUT_DATABASE``) answer as they would without it; a fault is
the declared 500.

The hub reaches PostgreSQL through the loopback proxy of decision 0049's tests
(tests/hub/pg_proxy.py), which resets every connection and refuses new ones while the
database is "away"."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from onceonly.hub.ops import openapi

from tests.hub.openapi.references import (
    PROBLEM_JSON,
    header_of,
    problem_types,
    response_of,
    validator,
)
from tests.hub.pg_proxy import ProxyThread, proxy_in_thread, through, upstream_of
from tests.hub_testing import RunningHub, module_database, problem_type, running_hub

FAULT_PATH = "/test/fault"


def _fault_route(app: FastAPI) -> None:
    """A route with a bug: what the hub answers for any fault of its own."""

    @app.get(FAULT_PATH)
    async def fault() -> None:
        raise RuntimeError("a bug")


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def away_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningHub, ProxyThread]]:
    database_url = module_database(request, tmp_path_factory, catalogued=True)
    with proxy_in_thread(upstream_of(database_url)) as proxy:
        with running_hub(
            database_url=through(proxy.port, database_url),
            data_dir=tmp_path_factory.mktemp("hub"),
            adjust=_fault_route,
        ) as hub:
            yield hub, proxy


@pytest.fixture(scope="module")
def document(away_hub: tuple[RunningHub, ProxyThread]) -> dict[str, Any]:
    served: dict[str, Any] = httpx.get(f"{away_hub[0].url}/openapi.json").json()
    return served


def _gets_without_path_parameters(document: dict[str, Any]) -> list[str]:
    return sorted(
        path
        for path, methods in document["paths"].items()
        if "get" in methods and "{" not in path and path != FAULT_PATH
    )


def _answers_while_away(
    hub: RunningHub, proxy: ProxyThread, paths: list[str]
) -> dict[str, httpx.Response]:
    """Each path's answer to the break-glass administrator (``/metrics``: to the
    operators' Prometheus, with the metrics token), the database away."""
    headers = {"Authorization": f"Bearer {hub.keys.admin_token}"}
    scraper = {"Authorization": f"Bearer {hub.keys.metrics_token}"}
    proxy.away()
    try:
        with httpx.Client(base_url=hub.url, headers=headers, timeout=30) as client:
            return {
                path: client.get(path, headers=scraper if path == "/metrics" else None)
                for path in paths
            }
    finally:
        proxy.back()


def _assert_declared(document: dict[str, Any], path: str, answer: httpx.Response) -> None:
    """``answer`` is one the document declares for ``GET path``: its status, and for a
    problem its type, body schema and, for ``database-unavailable``, ``Retry-After``."""
    operation = document["paths"][path]["get"]
    assert str(answer.status_code) in operation["responses"], (path, answer.text)
    if answer.status_code < 400:
        return
    declared = response_of(document, operation, answer.status_code)
    assert answer.headers["content-type"] == PROBLEM_JSON, path
    assert problem_type(answer) in problem_types(declared), (path, answer.text)
    schema = declared["content"][PROBLEM_JSON]["schema"]
    assert list(validator(document, schema).iter_errors(answer.json())) == [], path
    if problem_type(answer) == "database-unavailable":
        retry_after = header_of(document, declared, "Retry-After")
        assert answer.headers["retry-after"].isdigit(), path
        value = int(answer.headers["retry-after"])
        assert validator(document, retry_after["schema"]).is_valid(value), path


def test_answers_while_the_database_is_away_are_the_declared_ones(
    away_hub: tuple[RunningHub, ProxyThread], document: dict[str, Any]
) -> None:
    hub, proxy = away_hub
    paths = _gets_without_path_parameters(document)
    answers = _answers_while_away(hub, proxy, paths)
    for path, answer in answers.items():
        _assert_declared(document, path, answer)
    away = {path for path, answer in answers.items() if answer.status_code == 503}
    away = {path for path in away if problem_type(answers[path]) == "database-unavailable"}
    assert {"/v1/items", "/v1/admin/grants", "/.well-known/oauth-authorization-server"} <= away
    assert len(away) > 10, sorted(away)
    assert not {path for method, path in openapi.WITHOUT_DATABASE} & away
    assert httpx.get(f"{hub.url}/v1/items").status_code == 200  # back, once it is


def test_the_operations_that_never_reach_the_database_answer_without_it(
    away_hub: tuple[RunningHub, ProxyThread], document: dict[str, Any]
) -> None:
    hub, proxy = away_hub
    paths = sorted(path for method, path in openapi.WITHOUT_DATABASE if method == "GET")
    assert len(paths) == len(openapi.WITHOUT_DATABASE)
    answers = _answers_while_away(hub, proxy, paths)
    for path, answer in answers.items():
        _assert_declared(document, path, answer)
    statuses = {path: answer.status_code for path, answer in answers.items()}
    assert statuses == {
        "/.well-known/jwks.json": 200,
        "/healthz": 200,
        "/metrics": 200,  # without the database's gauges
        "/readyz": 503,  # `unavailable`: its own probe
        "/v1/audit/verifier-key": 200,
        "/v1/people/oidc/start": 404,  # `oidc-not-configured`: no provider here
        "/v1/purposes": 200,
    }


def test_a_fault_of_the_hub_is_the_declared_500(
    away_hub: tuple[RunningHub, ProxyThread], document: dict[str, Any]
) -> None:
    hub, _ = away_hub
    answer = httpx.get(f"{hub.url}{FAULT_PATH}")
    assert answer.status_code == 500
    assert problem_type(answer) == "internal-error"
    assert "retry-after" not in answer.headers
    _assert_declared(document, FAULT_PATH, answer)
