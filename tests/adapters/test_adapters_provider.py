from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from onceonly.adapters import CallableSource, RecordStore, create_provider_app, load_config

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    serve,
    sha256_b64url,
    write_config,
)

INVALID_SUBJECT = "49002124277"
OTHER_ITEM = "person.identity"
JSON = {"Content-Type": "application/json"}


@dataclass
class Provider:
    url: str
    store: RecordStore
    http: httpx.Client

    def query(
        self, token: str | None, body: Any = None, *, item: str = ITEM, **headers: str
    ) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is None:
            body = {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
        return self.http.post(
            f"{self.url}/v1/items/{item}/records/query", json=body, headers=headers
        )


@pytest.fixture
def provider(tmp_path: Path, hub: HubDouble) -> Iterator[Provider]:
    config = load_config(write_config(tmp_path, hub_url=hub.url, items=(ITEM, OTHER_ITEM)))
    with RecordStore(config.store_path) as store, httpx.Client() as http:
        store.put(ITEM, SUBJECT, RECORD)
        store.put(
            ITEM, INVALID_SUBJECT, {"street": "Pikk 1", "city": "Tallinn", "postal_code": "1"}
        )
        with serve(create_provider_app(config)) as url:
            yield Provider(url=url, store=store, http=http)


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:onceonly:problem:{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def test_answers_the_record_for_a_valid_request_token(provider: Provider, hub: HubDouble) -> None:
    response = provider.query(hub.request_token(), **{"X-Request-Id": "req-1"})

    assert response.status_code == 200
    assert response.json() == {"item": ITEM, "version": 1, "record": RECORD}
    assert response.headers["X-Request-Id"] == "req-1"


def test_served_log_records_the_request_without_the_subject(
    provider: Provider, hub: HubDouble
) -> None:
    provider.query(hub.request_token(request_id="req-1"))
    provider.query(
        hub.request_token(subject="nobody"),
        {"subject": "nobody", "purpose": PURPOSE, "consumer": CONSUMER, "version": 1},
    )

    ok, missing = provider.store.served_entries()
    assert (ok.request_id, ok.item, ok.consumer, ok.purpose, ok.outcome) == (
        "req-1", ITEM, CONSUMER, PURPOSE, "ok",
    )  # fmt: skip
    assert ok.subject_digest == provider.store.trail_digest(SUBJECT)  # keyed (decision 0064)
    assert sha256_b64url(SUBJECT) not in repr(provider.store.served_entries())
    assert (missing.outcome, missing.reason) == ("refused", "record-not-found")
    assert SUBJECT not in repr(provider.store.served_entries())


def test_served_log_has_every_concurrent_answer_before_it_is_sent(
    provider: Provider, hub: HubDouble
) -> None:
    """Entries are written in group commits, each before its own answer leaves."""
    tokens = {f"req-{n}": hub.request_token(request_id=f"req-{n}") for n in range(24)}
    body = {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}

    async def query(http: httpx.AsyncClient, request_id: str) -> set[str]:
        response = await http.post(
            f"{provider.url}/v1/items/{ITEM}/records/query",
            json=body,
            headers={"Authorization": f"Bearer {tokens[request_id]}"},
        )
        assert response.status_code == 200
        logged = {entry.request_id for entry in provider.store.served_entries()}
        return {request_id} - logged  # empty when its entry was written before the answer

    async def scenario() -> list[set[str]]:
        async with httpx.AsyncClient() as http:
            return await asyncio.gather(*(query(http, request_id) for request_id in tokens))

    assert asyncio.run(scenario()) == [set()] * len(tokens)
    assert {entry.request_id for entry in provider.store.served_entries()} == set(tokens)


def test_served_log_keeps_the_pseudonym_the_hubs_token_names(
    provider: Provider, hub: HubDouble
) -> None:
    """The hub's audit entry keeps a pseudonym of the subject; its request token says
    which, and the trail keeps it, keyed (decision 0064), for reconcile. A token from a
    hub before that claim is still served, the trail then holding none."""
    pseudonym = "5f" * 32
    provider.query(hub.request_token(subject_pseudonym=pseudonym))
    provider.query(hub.request_token())
    keyed = provider.store.trail_key.pseudonym(pseudonym)
    assert [e.subject_pseudonym for e in provider.store.served_entries()] == [keyed, None]
    assert [e.outcome for e in provider.store.served_entries()] == ["ok", "ok"]


def test_refuses_a_token_whose_pseudonym_is_not_a_string(
    provider: Provider, hub: HubDouble
) -> None:
    assert_problem(provider.query(hub.request_token(subject_pseudonym=7)), 401, "invalid-token")


def test_refuses_a_request_without_a_token(provider: Provider) -> None:
    assert_problem(provider.query(None), 401, "invalid-token")


def test_refuses_a_token_signed_by_another_key(provider: Provider, hub: HubDouble) -> None:
    impostor = ECKey.generate_key("P-256", parameters={"kid": hub.keys[0].kid})

    assert_problem(provider.query(hub.request_token(key=impostor)), 401, "invalid-token")


def test_refuses_a_token_addressed_to_another_department(
    provider: Provider, hub: HubDouble
) -> None:
    assert_problem(provider.query(hub.request_token(aud="tax")), 401, "invalid-token")


def test_refuses_a_token_from_another_issuer(provider: Provider, hub: HubDouble) -> None:
    token = hub.request_token(iss="https://evil.example")

    assert_problem(provider.query(token), 401, "invalid-token")


def test_refuses_an_expired_request_token(provider: Provider, hub: HubDouble) -> None:
    issued = int(time.time()) - 100
    token = hub.request_token(iat=issued, exp=issued + 60)

    body = assert_problem(provider.query(token), 401, "invalid-token")
    assert "expired" in body["detail"]


def test_refuses_a_request_token_that_lives_too_long(provider: Provider, hub: HubDouble) -> None:
    now = int(time.time())

    assert_problem(provider.query(hub.request_token(exp=now + 3600)), 401, "invalid-token")


def test_refuses_replayed_request_token(provider: Provider, hub: HubDouble) -> None:
    token = hub.request_token()

    assert provider.query(token).status_code == 200
    body = assert_problem(provider.query(token), 401, "invalid-token")
    assert "already used" in body["detail"]


def test_refuses_a_token_whose_subject_hash_does_not_match(
    provider: Provider, hub: HubDouble
) -> None:
    token = hub.request_token(subject="someone-else")

    body = assert_problem(provider.query(token), 401, "invalid-token")
    assert "subject_sha256" in body["detail"]


def test_refuses_a_token_for_another_purpose(provider: Provider, hub: HubDouble) -> None:
    token = hub.request_token(purpose="tax-audit")

    body = assert_problem(provider.query(token), 401, "invalid-token")
    assert "purpose" in body["detail"]


def test_refuses_a_token_for_another_item(provider: Provider, hub: HubDouble) -> None:
    token = hub.request_token(item=OTHER_ITEM)

    assert_problem(provider.query(token), 401, "invalid-token")


def test_answers_not_found_for_an_item_it_does_not_serve(
    provider: Provider, hub: HubDouble
) -> None:
    token = hub.request_token(item="vehicle.registration")

    response = provider.query(token, item="vehicle.registration")

    assert_problem(response, 404, "record-not-found")


def test_answers_not_found_when_the_store_has_no_record(provider: Provider, hub: HubDouble) -> None:
    token = hub.request_token(subject="nobody")
    body = {"subject": "nobody", "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}

    assert_problem(provider.query(token, body), 404, "record-not-found")


def test_answers_bad_gateway_for_a_stored_record_that_fails_the_schema(
    provider: Provider, hub: HubDouble
) -> None:
    token = hub.request_token(subject=INVALID_SUBJECT)
    body = {"subject": INVALID_SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}

    problem = assert_problem(provider.query(token, body), 502, "source-invalid-record")
    assert "/postal_code" in problem["detail"]
    assert '"1"' not in problem["detail"]
    assert "'1'" not in problem["detail"]


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER},
        {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": "1"},
        {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1, "x": 1},
        {"subject": "", "purpose": PURPOSE, "consumer": CONSUMER, "version": 1},
    ],
)
def test_refuses_a_malformed_body(provider: Provider, hub: HubDouble, body: Any) -> None:
    problem = assert_problem(provider.query(hub.request_token(), body), 400, "invalid-request")
    assert SUBJECT not in problem["detail"]


def test_refuses_a_body_with_duplicate_keys(provider: Provider, hub: HubDouble) -> None:
    content = (
        f'{{"subject": "{SUBJECT}", "subject": "x", "purpose": "{PURPOSE}",'
        f' "consumer": "{CONSUMER}", "version": 1}}'
    )
    response = provider.http.post(
        f"{provider.url}/v1/items/{ITEM}/records/query",
        content=content,
        headers={"Authorization": f"Bearer {hub.request_token()}", **JSON},
    )

    assert_problem(response, 400, "invalid-request")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b'{"version": ' + b"1" * 4301 + b"}", "a number has more than 4300 digits"),
        (b'{"subject": "380\xff01085718"}', "not valid UTF-8"),
        (b"[" * 5_000, "nested too deeply"),
    ],
    ids=["digits", "not-utf-8", "deep"],
)
def test_a_body_refused_says_why_in_its_own_words(
    provider: Provider, hub: HubDouble, content: bytes, said: str
) -> None:
    """RFC 9457 §5: no implementation detail in a problem. Python's words named
    ``sys.set_int_max_str_digits()``, its 'utf-8' codec and the byte's position."""
    response = provider.http.post(
        f"{provider.url}/v1/items/{ITEM}/records/query",
        content=content,
        headers={"Authorization": f"Bearer {hub.request_token()}", **JSON},
    )
    problem = assert_problem(response, 400, "invalid-request")
    assert said in problem["detail"]
    assert "sys." not in problem["detail"]
    assert "codec" not in problem["detail"]


def test_refuses_an_oversized_body(provider: Provider, hub: HubDouble) -> None:
    body = {"subject": "x" * 70_000, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}

    problem = assert_problem(provider.query(hub.request_token(), body), 413, "payload-too-large")
    assert problem["title"] == "Payload too large"  # it was "Invalid request"


def test_health_check_answers_ok(provider: Provider) -> None:
    response = provider.http.get(f"{provider.url}/healthz")

    assert response.json() == {"status": "ok"}
    assert response.headers["X-Request-Id"]


def test_unknown_route_answers_a_problem(provider: Provider) -> None:
    assert_problem(provider.http.get(f"{provider.url}/nope"), 404, "not-found")


def test_query_route_answers_other_methods_with_a_problem(provider: Provider) -> None:
    response = provider.http.get(f"{provider.url}/v1/items/{ITEM}/records/query")

    assert_problem(response, 405, "invalid-request")
    assert response.headers["X-Request-Id"]
    assert response.headers["Allow"] == "POST"  # RFC 9110 §15.5.6: a 405 names the methods


def test_answer_is_compact_utf8_json_with_its_length(provider: Provider, hub: HubDouble) -> None:
    """The bytes a JSON response of the framework would have: no spaces, no escapes
    of non-ASCII letters, Content-Length and Content-Type, the request id echoed."""
    record = {"street": 'Tõnismägi 3 "A"', "city": "Tartu"}
    provider.store.put(ITEM, SUBJECT, record)

    response = provider.query(hub.request_token(), **{"X-Request-Id": "req-7"})

    expected = '{"item":"%s","version":1,"record":{"street":"Tõnismägi 3 \\"A\\"","city":"Tartu"}}'
    assert response.content == (expected % ITEM).encode()
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["X-Request-Id"] == "req-7"


def test_refuses_a_body_sent_in_chunks_past_the_limit(provider: Provider, hub: HubDouble) -> None:
    """The limit holds for a body of unknown length too (chunked transfer coding)."""

    def chunks() -> Iterator[bytes]:
        yield b'{"subject": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'", "purpose": "benefit-eligibility", "consumer": "social-welfare", "version": 1}'

    response = provider.http.post(
        f"{provider.url}/v1/items/{ITEM}/records/query",
        content=chunks(),
        headers={"Authorization": f"Bearer {hub.request_token()}", **JSON},
    )

    assert_problem(response, 413, "payload-too-large")


def test_a_refusal_echoes_the_request_id(provider: Provider) -> None:
    """The query route answers its refusals itself, and echoes the trace id on them too."""
    response = provider.query(None, **{"X-Request-Id": "req-refused"})

    assert_problem(response, 401, "invalid-token")
    assert response.headers["X-Request-Id"] == "req-refused"


def test_a_body_limit_of_an_embedding_app_is_a_problem_with_the_request_id(
    tmp_path: Path, hub: HubDouble
) -> None:
    """An application that embeds the adapter may limit bodies itself (Starlette's
    RequestBodyLimitMiddleware raises an HTTPException from ``receive``): the query route
    answers that with a problem document and the trace id, as its other refusals."""
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    app = create_provider_app(config)
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=1024)

    def chunks() -> Iterator[bytes]:
        yield b'{"subject": "' + b"x" * 2000 + b'"}'

    with serve(app) as url, httpx.Client() as http:
        response = http.post(
            f"{url}/v1/items/{ITEM}/records/query",
            content=chunks(),
            headers={
                "Authorization": f"Bearer {hub.request_token()}",
                "X-Request-Id": "req-limited",
                **JSON,
            },
        )

    assert_problem(response, 413, "invalid-request")
    assert response.headers["X-Request-Id"] == "req-limited"


def test_serves_records_from_a_callable_source(tmp_path: Path, hub: HubDouble) -> None:
    async def lookup(item: str, subject: str) -> dict[str, Any] | None:
        return {"street": "Callable 1", "city": subject}

    config = load_config(write_config(tmp_path, hub_url=hub.url))
    app = create_provider_app(config, sources={ITEM: CallableSource(lookup)})
    with serve(app) as url, httpx.Client() as http:
        provider = Provider(url=url, store=RecordStore(config.store_path), http=http)
        response = provider.query(hub.request_token())
        provider.store.close()

    assert response.json()["record"] == {"street": "Callable 1", "city": SUBJECT}


def test_answers_source_unavailable_when_the_source_fails(tmp_path: Path, hub: HubDouble) -> None:
    def broken(item: str, subject: str) -> dict[str, Any] | None:
        raise ConnectionError("legacy system down")

    config = load_config(write_config(tmp_path, hub_url=hub.url))
    app = create_provider_app(config, sources={ITEM: CallableSource(broken)})
    with serve(app) as url, httpx.Client() as http:
        response = http.post(
            f"{url}/v1/items/{ITEM}/records/query",
            json={"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1},
            headers={"Authorization": f"Bearer {hub.request_token()}"},
        )

    assert_problem(response, 503, "source-unavailable")


def test_a_source_record_with_no_canonical_form_is_a_bad_gateway_problem(
    tmp_path: Path, hub: HubDouble
) -> None:
    """A record the schema admits (an integer floor) but RFC 8785 cannot write for its
    commitment (past 2**53) is refused as the source's fault, a problem document, not
    a plain 500."""

    def lookup(item: str, subject: str) -> dict[str, Any] | None:
        return {"street": "Pikk 1", "city": "Tallinn", "floor": 2**60}

    config = load_config(write_config(tmp_path, hub_url=hub.url))
    app = create_provider_app(config, sources={ITEM: CallableSource(lookup)})
    with serve(app) as url, httpx.Client() as http:
        provider = Provider(url=url, store=RecordStore(config.store_path), http=http)
        problem = assert_problem(provider.query(hub.request_token()), 502, "source-invalid-record")
        provider.store.close()
    assert "canonical JSON" in problem["detail"]


def test_a_served_log_that_cannot_be_written_answers_a_problem_and_no_record(
    tmp_path: Path, hub: HubDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No answer and no refusal leaves without its served-log entry: the store's write
    fails (as a full disk would make it), so the caller gets 503, not the record."""
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    with RecordStore(config.store_path) as store:
        store.put(ITEM, SUBJECT, RECORD)

    def full_disk(self: RecordStore, entries: object) -> list[None]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RecordStore, "spend_and_record", full_disk)
    with serve(create_provider_app(config)) as url, httpx.Client() as http:
        provider = Provider(url=url, store=RecordStore(config.store_path), http=http)
        answered = provider.query(hub.request_token())
        refused = http.post(f"{url}/v1/items/{ITEM}/records/query", json={})
        not_found = provider.query(
            hub.request_token(subject="nobody"),
            {"subject": "nobody", "purpose": PURPOSE, "consumer": CONSUMER, "version": 1},
        )
        provider.store.close()
    assert_problem(answered, 503, "unavailable")
    assert "Pikk" not in answered.text
    assert_problem(not_found, 503, "unavailable")  # its token held: it needs its entry
    assert_problem(refused, 401, "invalid-token")  # no token: no entry to write (0030)
