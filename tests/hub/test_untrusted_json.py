"""JSON the hub did not write is parsed under a depth limit
(onceonly.hub.kit.untrusted_json.load_json): an owner's answer, a file given to the
command line. Nesting 100,000 levels deep is refused with a clear error, never a
RecursionError (a 500, or a traceback)."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Response

from onceonly.adapters import UpstreamError
from onceonly.hub.kit import base64url
from onceonly.hub.kit.untrusted_json import JsonTooDeep, UnsafeJson, load_json

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    OWNER,
    PURPOSE,
    SUBJECT,
    World,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, audit_entry_for, serve

DEEP = 100_000


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize(
    ("raw", "refusal"),
    [
        (nested(DEEP), JsonTooDeep),
        (b'{"a":' * DEEP + b"1" + b"}" * DEEP, JsonTooDeep),
        (nested(33), JsonTooDeep),  # parses, then fails the depth check
        (b'{"a": 1, "a": 2}', UnsafeJson),
        (b"{not json", UnsafeJson),
        (b"\xff\xfe\x00", UnsafeJson),
    ],
    ids=["deep-arrays", "deep-objects", "just-too-deep", "duplicate-key", "not-json", "bytes"],
)
def test_load_json_refuses_what_it_cannot_take(raw: bytes, refusal: type[Exception]) -> None:
    with pytest.raises(refusal):
        load_json(raw, max_depth=32)


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b'{"n": ' + b"1" * 4301 + b"}", "a number has more than 4300 digits"),
        (b'{"subject": "380\xff01085718"}', "not valid UTF-8"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"38001085718": 1, "38001085718": 2}', "a duplicate key"),
        (b'{"a": ', "line 1 column 7"),
    ],
    ids=["digits", "not-utf-8", "duplicate-key", "duplicate-identifier", "where"],
)
def test_a_refusal_says_what_is_wrong_in_its_own_words(raw: bytes, said: str) -> None:
    """RFC 9457 §5: a problem's detail shows no implementation detail. Python's own
    messages named ``sys.set_int_max_str_digits()`` and the 'utf-8' codec with the
    offending byte's position."""
    with pytest.raises(UnsafeJson) as refused:
        load_json(raw, max_depth=32)
    assert said in str(refused.value)
    assert "38001085718" not in str(refused.value)
    assert "sys." not in str(refused.value)
    assert "codec" not in str(refused.value)


def test_load_json_takes_json_at_the_limit() -> None:
    assert isinstance(load_json(nested(32), max_depth=32), list)
    assert load_json(b'{"a": [1, {"b": null}]}', max_depth=4) == {"a": [1, {"b": None}]}


def raw_owner(record: bytes) -> FastAPI:
    """An owner without the SDK, answering every query with ``record`` (JSON text) as it is."""
    app = FastAPI()

    @app.post("/v1/items/{item}/records/query")
    async def answer(item: str) -> Response:
        body = b'{"item": "' + item.encode() + b'", "version": 1, "record": ' + record + b"}"
        return Response(body, media_type="application/json")

    return app


def refused_with_this_owner(world: World, owner_app: FastAPI) -> UpstreamError:
    """The consumer's query answered through ``owner_app`` in place of the owner's
    adapter (put back after): its refusal, checked to be the owner's invalid answer, 502,
    audited so."""
    with serve(owner_app) as owner, world.hub.admin() as admin:
        admin.put_department(OWNER, name="Civil Registry Office", adapter_url=owner)
        try:
            with world.client() as client, pytest.raises(UpstreamError) as failed:
                client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        finally:
            admin.put_department(OWNER, name="Civil Registry Office", adapter_url=world.owner_url)
    last = audit_entry_for(world.hub, failed.value, action="record.query")
    assert failed.value.status == 502
    assert failed.value.problem_type == "owner-invalid-response"
    assert (last["outcome"], last["reason"]) == ("failed", "owner-invalid-response")
    return failed.value


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per module and database: a test finds its audit entry by request id and
    puts back the owner's adapter it replaces."""
    with module_exchange_world(request, tmp_path_factory) as built:
        yield built


def test_an_owner_answer_nested_100000_deep_is_an_invalid_response(world: World) -> None:
    refused = refused_with_this_owner(world, raw_owner(b'{"street": ' + nested(DEEP) + b"}"))
    assert "nested deeper than" in str(refused)


@pytest.mark.parametrize("record", [{"street": "Pikk \ud800"}, {"x\ud800": "1"}])
def test_an_owner_record_with_a_lone_surrogate_is_an_invalid_response(
    world: World, record: dict[str, str]
) -> None:
    """helper-147: a value passed its schema, then its commitment (RFC 8785, which has
    no form for a lone surrogate) raised: a 500. helper-156: a member's name made the
    validator raise, a 500 too. Both are the owner's invalid answer. (Spelled as JSON's
    escapes allow: valid JSON, but not text.)"""
    refused_with_this_owner(world, raw_owner(json.dumps({**ADDRESS_RECORD, **record}).encode()))


def onceonly(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it; nothing listens at the hub URL (a file
    that cannot be read must be refused before the hub is asked)."""
    environment = {**os.environ, "ONCEONLY_HUB_URL": "http://127.0.0.1:9", "ONCEONLY_TOKEN": "t"}
    command = [sys.executable, "-m", "onceonly.hub", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "command",
    [
        ["items", "register", "{file}"],
        ["items", "version", "person.identity", "{file}"],
        ["client", "put", "x-adapter", "--department", "tax", "--jwks", "{file}"],
    ],
    ids=["items-register", "items-version", "client-put"],
)
def test_the_cli_refuses_a_deeply_nested_file_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_bytes(nested(DEEP))
    done = onceonly(*(part.replace("{file}", str(deep)) for part in command))
    assert done.returncode == 1
    assert done.stderr.strip() == f"{deep} is nested deeper than 256 levels"


def test_a_catalogue_with_a_deeply_nested_file_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "departments.json").write_bytes(b'{"departments": ' + nested(DEEP) + b"}")
    done = onceonly("catalogue", "import", str(tmp_path))
    assert done.returncode == 1
    assert (
        done.stderr.strip() == f"{tmp_path / 'departments.json'} is nested deeper than 256 levels"
    )


@pytest.mark.parametrize("part", ["claims", "header"])
def test_a_client_assertion_or_token_nested_deep_is_refused_not_a_500(
    world: World, part: str
) -> None:
    """A JWT of 2,500 levels fits the 8 KiB a JWT may have, and no client is needed to
    send one: to the token endpoint as a client assertion, to any route as a token."""
    deep = b'{"a":' + nested(2_500) + b"}"
    header, claims = (deep, b"{}") if part == "header" else (b'{"alg":"ES256"}', deep)
    jwt = f"{base64url.encode(header)}.{base64url.encode(claims)}.{base64url.encode(b'signature')}"
    token = httpx.post(
        f"{world.hub.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": jwt,
        },
    )
    assert token.status_code in (400, 401), token.text
    assert token.headers["content-type"].startswith("application/problem+json")
    record = httpx.post(
        f"{world.hub.url}/v1/items/{ADDRESS}/records/query",
        json={"subject": SUBJECT, "purpose": PURPOSE},
        headers={"Authorization": f"DPoP {jwt}", "DPoP": jwt},
    )
    assert record.status_code == 401, record.text
