"""The provider adapter after a hostile review (docs/decisions/0030): a request token is
used once across restarts and across processes on one data_dir; the served-log keys on
the hub's signed request id; only a request whose token held leaves an entry; 415 and
406 problems; the record query in the adapter's OpenAPI document."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from onceonly.adapters import CallableSource, RecordStore, create_provider_app, load_config

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    serve,
    write_config,
)
from tests.adapters.test_adapters_provider import Provider, assert_problem

BODY = {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
QUERY = f"/v1/items/{ITEM}/records/query"


class CountingSource:
    """The record, counting how often the source was asked (a replay refused early
    never reaches it)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, item: str, subject: str) -> dict[str, Any] | None:
        self.calls += 1
        return dict(RECORD) if subject == SUBJECT else None


@pytest.fixture
def config_path(tmp_path: Path, hub: HubDouble) -> Path:
    return write_config(tmp_path, hub_url=hub.url)


@pytest.fixture
def provider(config_path: Path) -> Iterator[Provider]:
    config = load_config(config_path)
    with RecordStore(config.store_path) as store, httpx.Client() as http:
        store.put(ITEM, SUBJECT, RECORD)
        with serve(create_provider_app(config)) as url:
            yield Provider(url=url, store=store, http=http)


def adapter(config_path: Path, source: CountingSource) -> Any:
    """A provider app on ``config_path``'s data_dir, reading ``source``."""
    return create_provider_app(load_config(config_path), sources={ITEM: CallableSource(source)})


def post(url: str, token: str | None, *, body: Any = None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}{QUERY}", json=BODY if body is None else body, headers=headers)


def trail(config_path: Path) -> list[Any]:
    with RecordStore(load_config(config_path).store_path) as store:
        return store.served_entries()


# --- 1. single use survives a restart and holds across processes ----------------------


def test_refuses_a_request_token_replayed_after_a_restart(
    config_path: Path, hub: HubDouble
) -> None:
    """The spent jti is kept in the store: a restarted adapter refuses the captured
    token at once, before asking its source."""
    token = hub.request_token()
    first, second = CountingSource(), CountingSource()
    with serve(adapter(config_path, first)) as url:
        assert post(url, token).status_code == 200
    with serve(adapter(config_path, second)) as url:
        replayed = post(url, token)

    body = assert_problem(replayed, 401, "invalid-token")
    assert "already used" in body["detail"]
    assert (first.calls, second.calls) == (1, 0)
    assert [entry.outcome for entry in trail(config_path)] == ["ok"]


def test_two_adapters_on_one_data_dir_accept_a_token_once(
    config_path: Path, hub: HubDouble
) -> None:
    """Both started before the token was used: the second learns of the first's use
    only in its served-log commit, and answers the replay 401, not the record, and
    with no entry."""
    token = hub.request_token()
    one, other = CountingSource(), CountingSource()
    with serve(adapter(config_path, one)) as first, serve(adapter(config_path, other)) as second:
        answered = post(first, token)
        replayed = post(second, token)
        again = post(second, token)  # now refused from memory

    assert answered.status_code == 200
    assert "already used" in assert_problem(replayed, 401, "invalid-token")["detail"]
    assert "Pikk" not in replayed.text
    assert "already used" in assert_problem(again, 401, "invalid-token")["detail"]
    assert other.calls == 1  # the commit refused it; memory refused the next one earlier
    assert [entry.outcome for entry in trail(config_path)] == ["ok"]


def test_concurrent_uses_of_one_token_on_two_adapters_answer_once(
    config_path: Path, hub: HubDouble
) -> None:
    tokens = [hub.request_token() for _ in range(12)]
    with (
        serve(adapter(config_path, CountingSource())) as first,
        serve(adapter(config_path, CountingSource())) as second,
        httpx.Client() as http,
    ):

        def send(url: str, token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return http.post(f"{url}{QUERY}", json=BODY, headers=headers).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(send, [first, second] * len(tokens), [t for t in tokens for _ in range(2)])
            )

    assert sorted(answers) == [200] * len(tokens) + [401] * len(tokens)
    assert len(trail(config_path)) == len(tokens)


# --- 2. the served-log keys on the hub's signed request id -----------------------------


def test_served_log_keys_on_the_signed_request_id_not_the_header(
    provider: Provider, hub: HubDouble
) -> None:
    token = hub.request_token(request_id="hub-req-1")

    response = provider.query(token, **{"X-Request-Id": "forged-by-anyone"})

    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "forged-by-anyone"  # echoed, for tracing
    assert [entry.request_id for entry in provider.store.served_entries()] == ["hub-req-1"]


@pytest.mark.parametrize("request_id", [None, "", 7, "a b", "x" * 65])
def test_refuses_a_token_without_a_valid_request_id(
    provider: Provider, hub: HubDouble, request_id: Any
) -> None:
    token = hub.request_token(request_id=request_id)

    body = assert_problem(provider.query(token), 401, "invalid-token")
    assert "request_id" in body["detail"]


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 10**400, "iat": 10**400 - 60},
        {"exp": 10**400},
        {"iat": -(10**400)},
        {"exp": 2**53 + 1, "iat": 2**53 - 59},
    ],
)
def test_refuses_a_token_whose_time_no_float_holds(
    provider: Provider, hub: HubDouble, claims: dict[str, int]
) -> None:
    """Hub-signed, with an exp or iat of 400 digits: float() overflowed, a 500 (review
    161). Times past 2^53 seconds are refused as malformed."""
    body = assert_problem(provider.query(hub.request_token(**claims)), 401, "invalid-token")
    assert "out of bounds" in body["detail"]


# --- 3. a refusal before the token holds leaves no served-log entry --------------------


def test_refusals_whose_token_does_not_hold_leave_no_entry_but_are_counted_and_logged(
    provider: Provider, hub: HubDouble, caplog: pytest.LogCaptureFixture
) -> None:
    spent = hub.request_token()
    assert provider.query(spent).status_code == 200
    issued = int(time.time()) - 100
    refusals = [
        provider.query(None),
        provider.query("not-a-token"),
        provider.query(hub.request_token(aud="tax")),
        provider.query(hub.request_token(iat=issued, exp=issued + 60)),
        provider.query(spent),
        provider.query(hub.request_token(), Accept="text/html"),
    ]
    with caplog.at_level(logging.INFO, logger="adapters.provider"):
        for _ in range(20):
            refusals.append(provider.query(None, item="person.made-up"))

    assert all(400 <= response.status_code < 500 for response in refusals)
    assert [entry.outcome for entry in provider.store.served_entries()] == ["ok"]
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(
            provider.http.get(f"{provider.url}/metrics").text
        )
        for sample in family.samples
    }
    refused = samples[("onceonly_adapter_requests_total", (("item", ITEM), ("outcome", "refused")))]
    assert refused == 6
    lines = [r for r in caplog.records if r.getMessage().startswith("query refused, no entry")]
    assert len(lines) == 20
    assert "reason=invalid-token" in lines[0].getMessage()
    assert SUBJECT not in caplog.text


def test_a_refusal_whose_token_held_leaves_its_entry(provider: Provider, hub: HubDouble) -> None:
    """The hub asked (its token held), so the hub audits the refusal too: the trail
    keeps it, one entry per token the hub signed."""
    body = {"subject": "nobody", "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
    token = hub.request_token(subject="nobody", request_id="hub-req-404")

    assert_problem(provider.query(token, body), 404, "record-not-found")
    assert_problem(provider.query(token, body), 401, "invalid-token")  # replayed: no entry

    (entry,) = provider.store.served_entries()
    assert (entry.request_id, entry.outcome, entry.reason) == (
        "hub-req-404",
        "refused",
        "record-not-found",
    )


# --- 4. 415 and 406 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
def test_refuses_a_body_that_is_not_json_with_415(
    provider: Provider, hub: HubDouble, content_type: str | None
) -> None:
    headers = {"Authorization": f"Bearer {hub.request_token()}"}
    if content_type is not None:
        headers["Content-Type"] = content_type

    response = provider.http.post(
        f"{provider.url}{QUERY}", content=json.dumps(BODY).encode(), headers=headers
    )

    body = assert_problem(response, 415, "unsupported-media-type")
    assert "application/json" in body["detail"]
    assert body["title"] == "Unsupported media type"
    assert provider.store.served_entries() == []


@pytest.mark.parametrize(
    "accept", ["text/html", "application/xml, text/*", "application/json;q=0, */*", "*/*;q=0"]
)
def test_refuses_an_accept_that_excludes_json_with_406(
    provider: Provider, hub: HubDouble, accept: str
) -> None:
    response = provider.query(hub.request_token(), Accept=accept)

    assert assert_problem(response, 406, "not-acceptable")["title"] == "Not acceptable"
    assert provider.store.served_entries() == []


@pytest.mark.parametrize(
    ("content_type", "accept"),
    [
        ("application/json; charset=utf-8", "application/json"),
        ("Application/JSON", "text/html, application/json;q=0.5"),
        ("application/json", "application/*"),
        ("application/json", "*/*;q=0.1, text/html"),
    ],
)
def test_answers_json_bodies_and_accepts_that_admit_json(
    provider: Provider, hub: HubDouble, content_type: str, accept: str
) -> None:
    headers = {"Content-Type": content_type, "Accept": accept}

    assert provider.query(hub.request_token(), **headers).status_code == 200


@pytest.mark.parametrize(
    ("accept", "admits"),
    [
        ("", True),
        ("  ", True),
        ("*/*", True),
        ("application/json", True),
        ("APPLICATION/JSON", True),
        ("application/*;q=0.001", True),
        ("application/json;q=1.000", True),
        ("text/html", False),
        ("application/problem+json", False),
        ("application/json;q=0", False),
        ("application/json;q=0.000, */*", False),  # the most specific range decides
        ("application/*;q=0, application/json", True),
        ("*/*;q=0, application/*;q=0.2", True),
        ("application/json;q=2", False),  # not a qvalue: that range is ignored
        ("application/json;q=abc, */*;q=0.5", True),
    ],
)
def test_accepts_json_reads_accept_as_rfc_9110_does(accept: str, admits: bool) -> None:
    from onceonly.adapters._http import accepts_json  # here: the code before had none

    assert accepts_json(accept) is admits


# --- 5. the record query in the adapter's OpenAPI document ------------------------------


def test_openapi_document_describes_the_record_query(provider: Provider) -> None:
    document = provider.http.get(f"{provider.url}/openapi.json").json()

    validate(document)
    operation = document["paths"]["/v1/items/{item_id}/records/query"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/RecordQuery"}
    query = document["components"]["schemas"]["RecordQuery"]
    assert set(query["required"]) == {"subject", "purpose", "consumer", "version"}
    assert query["additionalProperties"] is False
    assert operation["security"] == [{"hubRequestToken": []}]
    assert document["components"]["securitySchemes"]["hubRequestToken"]["scheme"] == "bearer"
    assert set(operation["responses"]) == {
        "200", "400", "401", "404", "405", "406", "413", "415", "500", "502", "503",
    }  # fmt: skip
    assert operation["responses"]["415"]["x-problem-types"] == ["unsupported-media-type"]
    # the hub's keys unreachable while the token is checked is a 503 of its own
    assert "hub-unavailable" in operation["responses"]["503"]["x-problem-types"]
    assert "/v1/events" in document["paths"]  # FastAPI's own routes are still there
    assert provider.http.get(f"{provider.url}/docs").status_code == 200


def test_openapi_document_lists_the_405_of_every_route_as_it_is_answered(
    provider: Provider,
) -> None:
    """A client written from the document alone knows that each path answers another
    method 405, a problem with ``Allow`` (RFC 9110 §15.5.6), and that the answer is
    that; and that any route may answer a fault 500 ``internal-error``."""
    document = provider.http.get(f"{provider.url}/openapi.json").json()

    validate(document)
    assert {"/healthz", "/readyz", "/metrics", "/v1/events", QUERY.replace(ITEM, "{item_id}")} <= (
        set(document["paths"])
    )
    for path, operations in document["paths"].items():
        methods = {method.upper() for method in operations}
        for operation in operations.values():
            wrong = operation["responses"]["405"]
            assert set(wrong["content"]) == {"application/problem+json"}
            assert wrong["x-problem-types"] == ["invalid-request"]
            assert set(wrong["headers"]["Allow"]["example"].split(", ")) == methods
            assert operation["responses"]["500"]["x-problem-types"] == ["internal-error"]
        url = provider.url + path.replace("{item_id}", ITEM)
        for method in sorted({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"} - methods):
            answer = provider.http.request(method, url)
            assert answer.status_code == 405, (method, path)
            assert answer.headers["content-type"] == "application/problem+json"
            assert set(answer.headers["Allow"].split(", ")) == methods
            assert answer.headers["X-Request-Id"]
            if method != "HEAD":  # no body to a HEAD
                assert answer.json()["type"] == "urn:onceonly:problem:invalid-request"


def test_openapi_document_describes_the_change_events_route(provider: Provider) -> None:
    """FastAPI sees only the route's 200: its handler reads the request itself. A client
    written from the document knows its refusals, and the live one is what it says."""
    document = provider.http.get(f"{provider.url}/openapi.json").json()

    validate(document)
    operation = document["paths"]["/v1/events"]["post"]
    assert set(operation["responses"]) == {"200", "400", "401", "405", "413", "500", "503"}
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["properties"]["status"]["enum"] == ["received", "duplicate"]
    assert operation["security"] == [{"hubEventToken": []}]
    scheme = document["components"]["securitySchemes"]["hubEventToken"]
    assert "onceonly-event+jwt" in scheme["bearerFormat"]
    refused = provider.http.post(f"{provider.url}/v1/events", json={})
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    slug = refused.json()["type"].removeprefix("urn:onceonly:problem:")
    assert slug in operation["responses"]["401"]["x-problem-types"]


def test_a_refusal_logs_a_long_item_bounded(
    provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    """The item of a refused request's path is the caller's: a line keeps 128 of its
    characters, so a long path does not make a long line."""
    item = "person." + "x" * 8000
    with caplog.at_level(logging.INFO, logger="adapters.provider"):
        assert provider.query(None, item=item).status_code == 401
    (line,) = [r for r in caplog.records if r.getMessage().startswith("query refused, no entry")]
    assert f"item={item[:128]} " in line.getMessage()
    assert len(line.getMessage()) < 600
