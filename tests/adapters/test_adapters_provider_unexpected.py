"""An exception that no refusal accounts for, anywhere in the provider app: a 500
``internal-error`` problem with the request's ``X-Request-Id``, logged once with its
traceback and never with its message (which may quote a subject), over loopback HTTP
and in process."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt
from starlette.types import Message

from onceonly.adapters import CallableSource, RecordStore, create_provider_app, load_config
from onceonly.adapters.logs import JsonFormatter

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    OWNER,
    PURPOSE,
    SUBJECT,
    HubDouble,
    serve,
    sha256_b64url,
    write_config,
)
from tests.adapters.test_adapters_provider import assert_problem

BODY = {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
QUERY = f"/v1/items/{ITEM}/records/query"
GENERIC = "the adapter could not complete the request; it has been logged"


class UnreadableRecord(dict[str, Any]):
    """A record read lazily (a mapping over a department system's row, say) whose read
    fails after the source has returned it, quoting the subject as such errors do."""

    def values(self) -> Any:
        raise RuntimeError(f"the row of {SUBJECT} could not be read")


def unreadable(item: str, subject: str) -> dict[str, Any]:
    return UnreadableRecord(street="Pikk 1", city="Tallinn")


def provider_app(tmp_path: Path, hub: HubDouble, **options: Any) -> Any:
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    return create_provider_app(config, sources={ITEM: CallableSource(unreadable)}, **options)


def in_process(app: FastAPI, path: str, **options: Any) -> httpx.Response:
    """``POST path`` to ``app`` in this process, its lifespan run around it; httpx's
    ASGI transport raises whatever the app lets escape."""

    async def post() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
            async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as http:
                return await http.post(path, **options)

    return anyio.run(post)


def faults(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


def assert_logged_once_without_secrets(
    caplog: pytest.LogCaptureFixture, *secrets: str, trace_id: str
) -> None:
    (fault,) = faults(caplog)
    assert fault.exc_info is not None
    assert "RuntimeError" in fault.getMessage()
    assert trace_id in fault.getMessage()
    lines = caplog.text + JsonFormatter().format(fault)
    assert "RuntimeError (message withheld)" in lines  # the type, in the traceback
    for secret in (SUBJECT, *secrets):
        assert secret not in lines


def assert_internal_error(response: httpx.Response, *secrets: str, trace_id: str) -> None:
    body = assert_problem(response, 500, "internal-error")
    assert body["detail"] == GENERIC
    assert response.headers["X-Request-Id"] == trace_id
    for secret in (SUBJECT, *secrets, "RuntimeError", "Traceback"):
        assert secret not in response.text


def test_a_fault_in_a_record_query_is_a_problem_over_http(
    tmp_path: Path, hub: HubDouble, caplog: pytest.LogCaptureFixture
) -> None:
    """The source's record fails as it is checked: past the source's own errors (503),
    so before this it left as Starlette's text/plain 500 with no trace id, and the
    server logged the error's message, the subject in it."""
    token = hub.request_token(request_id="hub-req-500")
    headers = {"Authorization": f"Bearer {token}", "X-Request-Id": "trace-500"}
    app = provider_app(tmp_path, hub)
    with caplog.at_level(logging.INFO), serve(app) as url, httpx.Client() as http:
        response = http.post(f"{url}{QUERY}", json=BODY, headers=headers)
        after = http.get(f"{url}/healthz")  # the connection and the app still serve

    assert_internal_error(response, token, trace_id="trace-500")
    assert after.status_code == 200
    assert_logged_once_without_secrets(caplog, token, trace_id="trace-500")
    with RecordStore(load_config(tmp_path / "adapter.toml").store_path) as store:
        (entry,) = store.served_entries()  # its token held: the hub audits it, so does the trail
    assert (entry.request_id, entry.outcome, entry.reason) == (
        "hub-req-500",
        "failed",
        "internal-error",
    )


def test_a_fault_in_a_record_query_is_a_problem_in_process(
    tmp_path: Path, hub: HubDouble, caplog: pytest.LogCaptureFixture
) -> None:
    """The ASGI transport raises whatever the app lets escape: nothing does."""
    token = hub.request_token()
    headers = {"Authorization": f"Bearer {token}"}
    with caplog.at_level(logging.INFO):
        response = in_process(provider_app(tmp_path, hub), QUERY, json=BODY, headers=headers)

    trace_id = response.headers["X-Request-Id"]  # one the adapter made
    assert len(trace_id) == 32
    assert_internal_error(response, token, trace_id=trace_id)
    assert_logged_once_without_secrets(caplog, token, trace_id=trace_id)


def event_token(hub: HubDouble, event: dict[str, str], **extra: Any) -> str:
    """The hub's event token for ``event``; ``extra`` claims replace its own."""
    now = int(time.time())
    claims = {
        "iss": hub.url,
        "aud": OWNER,
        "sub": event["owner"],
        "event_id": event["event_id"],
        "item": event["item"],
        "kind": event["kind"],
        "subject_sha256": sha256_b64url(event["subject"]),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 60,
        **extra,
    }
    key = hub.keys[0]
    header = {"alg": "ES256", "kid": key.kid, "typ": "onceonly-event+jwt"}
    return jwt.encode(header, claims, key)


@pytest.mark.parametrize("over_http", [False, True])
def test_a_fault_in_the_department_event_handler_is_a_problem(
    tmp_path: Path, hub: HubDouble, caplog: pytest.LogCaptureFixture, over_http: bool
) -> None:
    """A route the framework serves: the department's own handler fails, quoting the
    event's subject."""

    def on_event(event: Any) -> None:
        raise RuntimeError(f"no such person {event.subject}")

    event = {
        "event_id": "ev-1",
        "item": ITEM,
        "kind": "changed",
        "subject": SUBJECT,
        "owner": "tax",
        "published_at": "2026-12-06T10:00:00Z",
    }
    token = event_token(hub, event)
    headers = {"Authorization": f"Bearer {token}", "X-Request-Id": "trace-ev"}
    app = provider_app(tmp_path, hub, on_event=on_event)
    with caplog.at_level(logging.INFO):
        if over_http:
            with serve(app) as url:
                response = httpx.post(f"{url}/v1/events", json=event, headers=headers)
        else:
            response = in_process(app, "/v1/events", json=event, headers=headers)

    assert_internal_error(response, token, trace_id="trace-ev")
    assert_logged_once_without_secrets(caplog, token, trace_id="trace-ev")


def _hang_up(app: FastAPI, path: str, headers: dict[str, str]) -> list[Message]:
    """``POST path`` to ``app`` in this process whose client sends part of its body and
    goes away (``http.disconnect``); what the app sent back."""
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *raw],
        "client": ("127.0.0.1", 50000),
        "server": ("adapter", 80),
    }
    arriving = [
        {"type": "http.request", "body": b'{"subject": "', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return arriving.pop(0) if arriving else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def call() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    anyio.run(call)
    return sent


@pytest.mark.parametrize("route", ["query", "events"])
def test_a_client_that_goes_away_mid_body_is_no_fault(
    tmp_path: Path, hub: HubDouble, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    """A caller's timeout or a dropped connection while its body arrives: logged at
    INFO, not as an error with a traceback (a client that hangs up on purpose must not
    fill the log with faults); a query whose token held keeps its served-log entry, as
    a refusal of an incomplete request, not a failure of the adapter."""
    if route == "query":
        path, token = QUERY, hub.request_token(request_id="hub-req-gone")
    else:
        path, token = "/v1/events", event_token(hub, _EVENT)
    app = provider_app(tmp_path, hub)
    with caplog.at_level(logging.INFO):
        sent = _hang_up(app, path, {"Authorization": f"Bearer {token}", "X-Request-Id": "gone"})

    assert faults(caplog) == []
    assert any("went away" in record.getMessage() for record in caplog.records)
    (start,) = [message for message in sent if message["type"] == "http.response.start"]
    assert start["status"] == 400  # answered as a refusal, though nobody reads it
    if route == "query":
        with RecordStore(load_config(tmp_path / "adapter.toml").store_path) as store:
            (entry,) = store.served_entries()
        assert (entry.request_id, entry.outcome, entry.reason) == (
            "hub-req-gone",
            "refused",
            "invalid-request",
        )


_EVENT = {
    "event_id": "ev-gone",
    "item": ITEM,
    "kind": "changed",
    "subject": SUBJECT,
    "owner": "tax",
    "published_at": "2026-12-06T10:00:00Z",
}
