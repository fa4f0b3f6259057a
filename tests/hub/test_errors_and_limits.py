"""Request edges over real HTTP on loopback, on SQLite and PostgreSQL: an unexpected
error is one JSON log record and a 500 problem on a connection that stays open;
oversized request headers get 431; the hub's request ids are its own.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from onceonly.hub.cli.servers import MAX_HEAD_BYTES
from onceonly.hub.keys import HubKeys
from onceonly.hub.middleware import MAX_HEADER_BYTES

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    added_audit_entries,
    module_database,
    problem_type,
    raw_exchange,
    running_hub,
)

# A hub served as `onceonly serve` serves it (JSON logs on stderr, uvicorn at warning),
# with one audited route that fails in a way no handler expects.
FAILING_HUB = """
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse

from onceonly.hub.app import create_app_from_environment
from onceonly.hub.audit.dependencies import audited
from onceonly.hub.cli.servers import loopback_socket, server_options


def failing_hub() -> FastAPI:  # a factory, loaded after uvicorn set up its logging
    app = create_app_from_environment()

    @app.get("/test/fails", dependencies=[Depends(audited("test.fails"))])
    async def fails() -> None:
        raise RuntimeError("a fault that no handler takes")

    @app.get("/test/fails-midway")
    async def fails_midway() -> StreamingResponse:
        async def lines():
            yield b"the first line\\n"
            raise RuntimeError("a fault in the middle of an answer")

        return StreamingResponse(lines())

    return app


sock = loopback_socket()
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(failing_hub, factory=True, log_level="warning", **server_options())
uvicorn.Server(config).run(sockets=[sock])
"""


def started(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the hub did not start"
        time.sleep(0.1)


@pytest.fixture
def failing_hub(database_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    environment = {
        **os.environ,
        "ONCEONLY_DATA_DIR": str(tmp_path),
        "ONCEONLY_DATABASE_URL": database_url,
        "ONCEONLY_LOG_LEVEL": "WARNING",
        "ONCEONLY_LOG_JSON": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", FAILING_HUB],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = f"http://127.0.0.1:{process.stdout.readline().strip()}"
        started(url)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def local_port(response: httpx.Response) -> int:
    """The client's port of the connection that carried ``response``."""
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def test_an_unexpected_error_is_one_json_record_and_keeps_the_connection(
    failing_hub: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    url, process = failing_hub
    with httpx.Client(base_url=url) as client:
        failed = client.get("/test/fails")
        failed_on = local_port(failed)
        after = client.get("/healthz")
        assert local_port(after) == failed_on  # the same keep-alive connection
    assert failed.status_code == 500
    assert problem_type(failed) == "internal-error"
    assert "fault" not in failed.text  # nothing of the cause reaches the caller
    assert failed.headers.get("connection") != "close"
    assert after.status_code == 200

    admin = {"Authorization": f"Bearer {HubKeys.load(tmp_path / 'keys', create=False).admin_token}"}
    entries = httpx.get(f"{url}/v1/audit/entries", params={"limit": 1000}, headers=admin).json()
    (entry,) = [e["entry"] for e in entries["entries"] if e["entry"]["action"] == "test.fails"]
    assert (entry["outcome"], entry["reason"]) == ("failed", "internal-error")

    process.terminate()
    _, stderr = process.communicate(timeout=30)
    (line,) = stderr.splitlines()  # one record: no second, plain traceback
    record = json.loads(line)
    assert (record["level"], record["message"]) == ("error", "unexpected error")
    assert record["request_id"] == failed.headers["x-request-id"] == entry["request_id"]
    assert "RuntimeError: a fault that no handler takes" in record["exception"]


def test_an_error_in_the_middle_of_an_answer_ends_the_connection_and_logs_json_only(
    failing_hub: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = failing_hub
    with httpx.Client(base_url=url) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/test/fails-midway")  # a truncated answer must not look whole
    assert httpx.get(f"{url}/healthz").status_code == 200

    process.terminate()
    _, stderr = process.communicate(timeout=30)
    records = [json.loads(line) for line in stderr.splitlines()]  # JSON lines only
    (traceback,) = [record["exception"] for record in records if "exception" in record]
    assert "RuntimeError: a fault in the middle of an answer" in traceback


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    """One hub per module and database: each test finds the entries its requests left."""
    database_url = module_database(request, tmp_path_factory)
    with running_hub(database_url=database_url, data_dir=tmp_path_factory.mktemp("hub")) as hub:
        yield hub


NAMED = {"grant_type": "client_credentials", "client_id": "nobody-adapter"}  # audited refusal


def test_request_headers_over_the_limit_get_431_before_any_route(hub: RunningHub) -> None:
    fits = {"X-Padding": "a" * (MAX_HEADER_BYTES - 1024)}
    assert httpx.get(f"{hub.url}/healthz", headers=fits).status_code == 200
    headers = {f"X-Padding-{n}": "a" * 1000 for n in range(40)}  # 40 KB in all
    with added_audit_entries(hub, action="token.issue") as entries:
        refused = httpx.post(f"{hub.url}/oauth/token", data=NAMED, headers=headers)
        assert refused.status_code == 431
        assert problem_type(refused) == "request-header-fields-too-large"
        assert len(refused.headers["x-request-id"]) == 32
        audited = httpx.post(f"{hub.url}/oauth/token", data=NAMED)  # the same, within limits
    (entry,) = entries  # refused before the (audited) route ran: no entry
    assert entry["request_id"] == audited.headers["x-request-id"]


def test_two_authorization_fields_are_refused_before_any_route(hub: RunningHub) -> None:
    """A proxy that reads the last Authorization field and a hub that reads the first
    would see two different credentials: two are refused (RFC 6750 §3.1)."""
    token = hub.keys.admin_token
    one = httpx.get(f"{hub.url}/v1/admin/people", headers={"Authorization": f"Bearer {token}"})
    assert one.status_code == 200
    two = httpx.get(
        f"{hub.url}/v1/admin/people",
        headers=[("Authorization", f"Bearer {token}"), ("Authorization", "Bearer other")],
    )
    assert two.status_code == 400, two.text
    assert problem_type(two) == "invalid-request"
    assert "more than one Authorization" in two.json()["detail"]


@pytest.mark.parametrize("coding", ["gzip", "deflate, identity", "br"])
def test_a_body_with_a_content_coding_is_refused_not_read_as_plain(
    hub: RunningHub, coding: str
) -> None:
    """A body sent as gzip, which is not, was read as plain JSON and answered 200."""
    plain = {"grant_type": "client_credentials", "client_id": "nobody-adapter"}
    refused = httpx.post(f"{hub.url}/oauth/token", data=plain, headers={"Content-Encoding": coding})
    assert refused.status_code == 415, refused.text
    assert problem_type(refused) == "unsupported-content-encoding"
    assert refused.headers["accept-encoding"] == "identity"
    identity = httpx.post(
        f"{hub.url}/oauth/token", data=plain, headers={"Content-Encoding": "identity"}
    )
    assert identity.status_code == 401  # read, and refused for what it says


@pytest.mark.parametrize("path", ["/v1/audit/checkpoint/", "/v1/items/x.y/records/query/"])
def test_a_trailing_slash_is_not_found_not_redirected_to_the_host_field(
    hub: RunningHub, path: str
) -> None:
    """Starlette redirected /path/ to /path (307, the method and body kept), with a
    Location built from the Host field: a request with Host: evil.example was sent on
    there, body and all."""
    answer = httpx.post(f"{hub.url}{path}", json={}, headers={"Host": "evil.example"})
    assert answer.status_code in (404, 405), answer.headers
    assert "location" not in answer.headers
    assert problem_type(answer) in ("not-found", "method-not-allowed")


def test_a_head_far_over_the_limit_is_refused_by_the_server_itself(hub: RunningHub) -> None:
    padding = b"a" * (MAX_HEAD_BYTES + 1024)
    answer = raw_exchange(hub.url, b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Padding: " + padding)
    assert answer.startswith(b"HTTP/1.1 431 ")  # the head was not even finished
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["type"] == "urn:onceonly:problem:request-header-fields-too-large"


def test_eight_megabytes_of_headers_are_never_taken(hub: RunningHub) -> None:
    padding = b"a" * (8 * 1024 * 1024)
    head = b"GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Padding: " + padding + b"\r\n\r\n"
    answer = raw_exchange(hub.url, head)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    assert httpx.get(f"{hub.url}/healthz").status_code == 200  # and the server goes on


def test_the_hub_makes_its_own_request_ids(hub: RunningHub) -> None:
    """Every answer carries an id the hub made, never the caller's; which caller's id an
    entry keeps beside it is tests/hub/test_request_ids.py's (decision 0070)."""
    offered = {"X-Request-Id": "batch-7.retry_1"}
    answers = [httpx.post(f"{hub.url}/oauth/token", data=NAMED, headers=offered) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [401, 401]  # no such client
    ours = [answer.headers["x-request-id"] for answer in answers]
    assert len(set(ours)) == 2
    assert "batch-7.retry_1" not in ours
    with hub.admin() as admin:
        page = admin.audit_entries(limit=1000)
    requests = {e["entry"]["request_id"] for e in page["entries"]}
    assert set(ours) <= requests


def test_a_chunked_body_over_the_limit_is_refused_and_audited(hub: RunningHub) -> None:
    """No Content-Length to refuse on the head alone: the body is found too large while
    the audited route reads it, and the refusal is that route's entry."""
    limit = hub.settings.max_body_bytes
    chunk = b"a" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 2))
    head = (
        b"PUT /v1/admin/departments/chunked-dept HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n"
        b"Authorization: Bearer %s\r\n"
        % hub.keys.admin_token.encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    with added_audit_entries(hub, action="registry.department.put") as entries:
        answer = raw_exchange(hub.url, head + chunks + b"0\r\n\r\n")
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413 "), answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert json.loads(body)["type"] == "urn:onceonly:problem:payload-too-large"
    request_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in headers.split(b"\r\n")
        if line.lower().startswith(b"x-request-id:")
    )
    (entry,) = entries
    assert (entry["request_id"], entry["outcome"], entry["reason"]) == (
        request_id,
        "refused",
        "payload-too-large",
    )
