"""What the hub and the adapters log never holds a personal code, a token or a password.

Everything runs in this process (hub and adapter servers on loopback threads), so
every log record reaches the capture through a whole day's work: exchanges granted
and refused, a sign-in that fails and one that works, an access request, an
auditor's search by person. What counts is what a deployment can write out: the
hub's own loggers (``onceonly.*``) at every level, down to DEBUG, and any library's
warnings and errors (with their tracebacks). Libraries' DEBUG chatter (aiosqlite
echoes SQL parameters) is not something a deployment turns on.
"""

import logging
from pathlib import Path

import httpx
import pytest

from onceonly.adapters import AccessDenied

from tests.hub.access_world import PASSWORD, access_world
from tests.hub.exchange_world import ADDRESS, PURPOSE, SUBJECT


def _written(record: logging.LogRecord) -> bool:
    return record.name.startswith("onceonly") or record.levelno >= logging.WARNING


def test_a_days_work_logs_no_personal_code_token_or_password(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets: list[str] = [SUBJECT, PASSWORD]
    with caplog.at_level(logging.DEBUG):
        with access_world(database_url=database_url, tmp_path=tmp_path, log_level="DEBUG") as aw:
            url = aw.world.hub.url
            presented = TokenRecorder()
            with aw.world.client(transport=presented) as client:
                assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record
                with pytest.raises(AccessDenied):
                    client.fetch(ADDRESS, SUBJECT, purpose="tax-audit")
                assert presented.tokens
                secrets.extend(presented.tokens)
            wrong = httpx.post(
                f"{url}/v1/people/sign-in",
                json={"username": "sam.welfare", "password": PASSWORD + "x"},
            )
            assert wrong.status_code == 401
            sam = aw.people["sam.welfare"]
            assert sam.token is not None
            secrets += [sam.token, PASSWORD + "x"]
            assert sam.request(purpose="statistics").status_code == 201
            auditor = aw.people["alma.auditor"]
            found = auditor.call("GET", "/v1/audit/entries", subject=SUBJECT)
            assert found.status_code == 200, found.text
            assert found.json()["entries"]
    hub_lines = [
        record.getMessage() + (record.exc_text or "") + str(record.__dict__)
        for record in caplog.records
        if _written(record)
    ]
    # the capture did see the hub's own logging (its access log names every request)
    assert any(r.name == "onceonly.access" for r in caplog.records if _written(r))
    leaked = [(s[:6], line) for s in secrets for line in hub_lines if s in line]
    assert leaked == []


class TokenRecorder(httpx.HTTPTransport):
    """A real transport that notes each access token the client presents."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _, _, token = request.headers.get("authorization", "").partition(" ")
        if token:
            self.tokens.append(token)
        return super().handle_request(request)
