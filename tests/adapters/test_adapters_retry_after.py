"""The consumer SDK waits as the hub's ``Retry-After`` asks (RFC 9110 §10.2.3) before
sending a request that is safe to repeat again, within one budget per call, and hands
the value to the caller on the error when it stops (decision 0053).

On the wire: the adapters suite's hub double on loopback, behind a middleware that
answers scripted refusals (``503``, ``429``, a DPoP nonce challenge) before the double
sees the request, and notes when each request arrived. Waits are measured there,
between two arrivals, so a retry that came early shows."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate
from itertools import pairwise
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import pytest
from fastapi import Request, Response
from fastapi.responses import JSONResponse
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AsyncHubClient,
    HubClient,
    OnceonlyError,
    RateLimited,
    RecordResult,
    RecordStore,
    UpstreamError,
)
from onceonly.adapters._events import ChangePublisher
from onceonly.adapters._retry import retry_after

from tests.adapters.adapter_testing import (
    CLIENT_ID,
    ITEM,
    PURPOSE,
    RECORD,
    SUBJECT,
    HubDouble,
    serve,
)
from tests.adapters.test_adapters_client_tokens import _fetch_together, _records

TOKEN = "/oauth/token"
DISCOVERY = "/.well-known/oauth-authorization-server"
QUERY = f"/v1/items/{ITEM}/records/query"
WRITE = "/v1/test/notes"  # a POST route that is not safe to repeat
EVENTS = f"/v1/items/{ITEM}/events"
NOW = 1_767_225_600.0  # Thu, 01 Jan 2026 00:00:00 GMT
ADAPTERS_DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
# docs/adapters.md's SDK examples (its source examples are test_adapters_sources_docs.py's)
_EXAMPLE = re.compile(r"<!-- sdk-example: (?P<name>[\w-]+) -->\n```python\n(?P<text>.*?)```", re.S)


# --- the field's value ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        ("0", 0.0),
        (" 120 ", 120.0),  # field values are trimmed (RFC 9110 §5.5)
        ("007", 7.0),
        ("00000000005", 5.0),  # leading zeros add no time, however many
        ("0" * 40 + "120", 120.0),
        ("0" * 40, 0.0),
        ("99999999999999999999999", 9_999_999_999.0),  # years away: capped, not an error
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),  # IMF-fixdate
        ("Thursday, 01-Jan-26 00:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Thu Jan  1 00:00:10 2026", 10.0),  # obsolete asctime form
        ("Wed, 31 Dec 2025 23:59:00 GMT", 0.0),  # a date passed: at once
    ],
)
def test_reads_delay_seconds_and_each_http_date_form(value: str, seconds: float) -> None:
    assert retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "soon",
        "-1",
        "+5",
        "1.5",
        "5 s",
        "5, 10",  # a list: Retry-After is one value
        "0x10",
        "Thu, 01 Jan 2026 00:00:30 +0000",  # a date, but not in GMT as HTTP-date says
        "Thu, 1 Jan 2026 00:00:30 GMT",  # IMF-fixdate's day has two digits
        "thu, 01 jan 2026 00:00:30 gmt",  # HTTP-date is case-sensitive
        "Thu, 31 Feb 2026 00:00:30 GMT",  # no such day
        "Thu, 01 Jan 2026 24:00:00 GMT",
        "2026-01-01T00:00:30Z",  # RFC 3339 is not an HTTP-date
        "\u0665",  # ARABIC-INDIC DIGIT FIVE: a digit, but not an ASCII one
    ],
)
def test_a_malformed_or_absent_value_is_none(value: str | None) -> None:
    assert retry_after(value, now=NOW) is None


def test_a_two_digit_year_more_than_50_years_ahead_is_in_the_past() -> None:
    # RFC 9110 §5.6.7: in 2026, "-80" is 1980, not 2080; "-76" is 2076
    assert retry_after("Tuesday, 01-Jan-80 00:00:00 GMT", now=NOW) == 0.0
    assert retry_after("Tuesday, 01-Jan-76 00:00:00 GMT", now=NOW) == pytest.approx(
        50 * 365.25 * 86400, rel=1e-3
    )


# --- on the wire -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A refusal the middleware gives instead of the double's answer."""

    status: int
    retry_after: str | None = None
    nonce: str | None = None  # a 401 use_dpop_nonce challenge with this DPoP-Nonce


@dataclass
class Arrival:
    path: str
    at: float  # time.monotonic()
    wall: float  # time.time()
    dpop: str | None
    assertion: str | None  # a scripted token request's client assertion


@dataclass
class Outage:
    """Scripted refusals per path (``None``: let that request through), and every
    request's arrival."""

    script: dict[str, list[Answer | None]] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)

    def at(self, path: str) -> list[Arrival]:
        return [arrival for arrival in self.arrivals if arrival.path == path]

    def gaps(self, path: str) -> list[float]:
        times = [arrival.at for arrival in self.at(path)]
        return [later - earlier for earlier, later in pairwise(times)]

    async def answer(self, request: Request) -> Response | None:
        script = self.script.get(request.url.path)
        assertion = None
        if script and request.url.path == TOKEN:
            form = parse_qs((await request.body()).decode())
            assertion = form["client_assertion"][0]
        self.arrivals.append(
            Arrival(
                request.url.path,
                time.monotonic(),
                time.time(),
                request.headers.get("dpop"),
                assertion,
            )
        )
        scripted = script.pop(0) if script else None
        return None if scripted is None else _refusal(scripted)


def _refusal(answer: Answer) -> Response:
    headers = {} if answer.retry_after is None else {"Retry-After": answer.retry_after}
    slugs = {401: "invalid-token", 429: "rate-limited", 503: "database-unavailable"}
    slug = slugs.get(answer.status, "refused")
    if answer.nonce is not None:
        headers["DPoP-Nonce"] = answer.nonce
        headers["WWW-Authenticate"] = 'DPoP error="use_dpop_nonce"'
        slug = "use-dpop-nonce"
    body = {"type": f"urn:onceonly:problem:{slug}", "title": slug, "status": answer.status}
    body["detail"] = "scripted"
    return JSONResponse(
        body, status_code=answer.status, headers=headers, media_type="application/problem+json"
    )


@dataclass
class World:
    hub: HubDouble
    outage: Outage
    key: ECKey

    def client(self, **options: float) -> HubClient:
        return HubClient(self.hub.url, client_id=CLIENT_ID, key=self.key, timeout=5.0, **options)

    def async_client(self, **options: float) -> AsyncHubClient:
        url, key = self.hub.url, self.key
        return AsyncHubClient(url, client_id=CLIENT_ID, key=key, timeout=5.0, **options)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[HubDouble, Outage]]:
    hub, outage = HubDouble(), Outage()
    app = hub.app()

    @app.post(WRITE)
    def write() -> dict[str, str]:
        return {"status": "written"}

    @app.post(EVENTS)
    def publish() -> JSONResponse:
        return JSONResponse({"event_id": uuid.uuid4().hex}, status_code=202)

    @app.middleware("http")
    async def scripted(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        return await outage.answer(request) or await call_next(request)

    with serve(app) as url:
        hub.url = url
        yield hub, outage


@pytest.fixture
def world(served: tuple[HubDouble, Outage]) -> World:
    hub, outage = served
    hub.reset()
    outage.script.clear()
    outage.arrivals.clear()
    key = ECKey.generate_key("P-256", auto_kid=True)
    hub.clients[CLIENT_ID] = key
    return World(hub, outage, key)


def _claims(token: str | None) -> dict[str, object]:
    assert token is not None
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "==")))


def test_waits_the_seconds_retry_after_names_then_sends_the_query_again(world: World) -> None:
    world.outage.script[QUERY] = [Answer(503, "1")]

    with world.client() as hub_client:
        result = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert result.record == RECORD
    (gap,) = world.outage.gaps(QUERY)
    assert 1.0 <= gap < 3.0


def test_waits_until_the_http_date_retry_after_names(world: World) -> None:
    until = math.ceil(time.time()) + 2  # HTTP-dates name whole seconds
    world.outage.script[QUERY] = [Answer(503, formatdate(until, usegmt=True))]

    with world.client() as hub_client:
        result = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert result.record == RECORD
    _, again = world.outage.at(QUERY)
    assert until <= again.wall < until + 2


def test_a_429_at_the_token_endpoint_is_retried_with_a_fresh_assertion_and_proof(
    world: World,
) -> None:
    world.hub.token_type = "DPoP"
    world.outage.script[TOKEN] = [Answer(429, "1")]

    with world.client() as hub_client:
        result = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert result.record == RECORD
    refused, accepted = world.outage.at(TOKEN)
    assert accepted.at - refused.at >= 1.0
    assert world.hub.token_requests == 1  # the refused one never reached the double
    (accepted_assertion,) = world.hub.seen_jti
    assert _claims(refused.assertion)["jti"] != accepted_assertion
    accepted_proof = world.hub.proofs[0]
    assert _claims(refused.dpop)["jti"] != _claims(accepted_proof)["jti"]
    assert _claims(accepted_proof)["htu"] == f"{world.hub.url}{TOKEN}"


def test_the_number_of_repeats_is_capped_and_the_error_carries_retry_after(
    world: World,
) -> None:
    world.outage.script[QUERY] = [Answer(503, "0")] * 5

    with world.client(retries=2) as hub_client, pytest.raises(UpstreamError) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert len(world.outage.at(QUERY)) == 3
    error = caught.value
    assert (error.status, error.problem_type, error.retry_after) == (
        503,
        "database-unavailable",
        0.0,
    )


def test_a_wait_past_max_retry_wait_is_not_waited(world: World) -> None:
    world.outage.script[QUERY] = [Answer(503, "60")]
    started = time.monotonic()

    with world.client() as hub_client, pytest.raises(UpstreamError) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert time.monotonic() - started < 5
    assert len(world.outage.at(QUERY)) == 1
    assert caught.value.retry_after == 60.0


def test_the_waits_of_a_call_add_up_to_max_retry_wait_at_most(world: World) -> None:
    world.outage.script[QUERY] = [Answer(503, "1")] * 3

    with world.client(max_retry_wait=1.5) as hub_client, pytest.raises(UpstreamError) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    (gap,) = world.outage.gaps(QUERY)  # waited 1 s once; a second 1 s would pass 1.5
    assert gap >= 1.0
    assert caught.value.retry_after == 1.0


def test_retries_0_switches_repeats_off(world: World) -> None:
    world.outage.script[QUERY] = [Answer(503, "0")]

    with world.client(retries=0) as hub_client, pytest.raises(UpstreamError) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert len(world.outage.at(QUERY)) == 1
    assert caught.value.retry_after == 0.0


@pytest.mark.parametrize("value", [None, "soon", "1.5", "5, 10", "Thu, 01 Jan 2026 00:00:30"])
def test_a_429_without_a_valid_retry_after_is_not_retried(world: World, value: str | None) -> None:
    world.outage.script[QUERY] = [Answer(429, value)]

    with world.client() as hub_client, pytest.raises(RateLimited) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert len(world.outage.at(QUERY)) == 1
    assert (caught.value.status, caught.value.retry_after) == (429, None)


def test_a_503_with_a_malformed_retry_after_waits_as_if_it_had_none(world: World) -> None:
    world.outage.script[QUERY] = [Answer(503, "2.5")] * 3

    with world.client() as hub_client, pytest.raises(UpstreamError) as caught:
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    first, second = world.outage.gaps(QUERY)  # the backoff: 0.1 s, then 0.2 s
    assert 0.1 <= first < 1.0
    assert 0.2 <= second < 1.0
    assert caught.value.retry_after is None


def test_a_request_not_safe_to_repeat_is_not_sent_again(world: World) -> None:
    """Every request the SDK sends is safe to repeat (decision 0053); a POST that is not
    marked so, as a route added later would be, is sent once whatever the hub says."""
    world.outage.script[WRITE] = [Answer(503, "0"), Answer(503, "0")]

    with world.client() as hub_client:
        session = hub_client._session
        with pytest.raises(UpstreamError) as caught:
            hub_client._run(session.post_flow(WRITE, {"note": "x"}, repeatable=False))
        assert len(world.outage.at(WRITE)) == 1
        assert caught.value.retry_after == 0.0
        answer = hub_client._run(session.post_flow(WRITE, {"note": "x"}, repeatable=True))

    assert answer == {"status": "written"}
    assert len(world.outage.at(WRITE)) == 3  # the repeatable one: refused once, then sent


def test_a_dpop_nonce_challenge_and_retry_after_share_one_budget(world: World) -> None:
    world.hub.token_type = "DPoP"
    world.outage.script[QUERY] = [
        Answer(503, "0"),
        Answer(401, nonce="nonce-1"),
        Answer(503, "0"),
        Answer(503, "0"),
    ]

    with world.client(retries=2) as hub_client, pytest.raises(UpstreamError):
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    # one repeat for the first 503, the nonce's own resend, one repeat for the next 503
    queries = world.outage.at(QUERY)
    assert len(queries) == 4
    assert [_claims(query.dpop).get("nonce") for query in queries] == [
        None,
        None,
        "nonce-1",
        "nonce-1",
    ]


def test_a_call_cancelled_while_it_waits_for_a_token_gives_the_turn_back(
    world: World,
) -> None:
    """The call renewing the token holds the client's token lock while it waits out the
    token endpoint's ``Retry-After``; cancelled there, it lets the next call renew."""
    world.outage.script[TOKEN] = [Answer(429, "5")]

    async def scenario() -> object:
        async with world.async_client() as hub_client:
            with anyio.move_on_after(1.0) as waiting:
                await hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
            assert waiting.cancelled_caught
            with anyio.fail_after(5):
                return (await hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)).record

    assert asyncio.run(scenario()) == RECORD
    assert len(world.outage.at(TOKEN)) == 2


def test_a_query_is_sent_at_most_as_often_as_the_documentation_says(world: World) -> None:
    """docs/adapters.md §9 counts the most times a ``fetch`` sends its query with the
    default budget: the protocol's resends (a nonce challenge with each of two tokens)
    and ``retries`` repeats. The hub below asks for all of them, then still refuses."""
    world.hub.token_type = "DPoP"
    world.outage.script[QUERY] = [
        Answer(503, "0"),  # a repeat
        Answer(401, nonce="nonce-1"),  # the nonce's resend
        Answer(503, "0"),  # the second repeat
        Answer(401),  # invalid-token: a new token, and the query once more
        Answer(401, nonce="nonce-2"),  # the nonce's resend
        Answer(503, "0"),  # no repeat left
    ]

    with world.client() as hub_client, pytest.raises(UpstreamError):
        hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    doc = ADAPTERS_DOC.read_text()
    documented = re.search(r"sent at\s+most (\d+) times", doc)
    assert documented is not None
    assert len(world.outage.at(QUERY)) == int(documented[1]) == 6


def test_retries_0_still_answers_a_nonce_challenge_and_an_invalid_token(world: World) -> None:
    """``retries=0`` switches repeats off, not the protocol's own resends (§9)."""
    world.hub.token_type = "DPoP"
    world.outage.script[QUERY] = [Answer(401, nonce="nonce-1"), Answer(401)]

    with world.client(retries=0) as hub_client:
        result = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert result.record == RECORD
    assert len(world.outage.at(QUERY)) == 3
    assert world.hub.token_requests == 2


def test_a_dpop_nonce_challenge_after_a_retry_after_still_gets_the_record(world: World) -> None:
    world.hub.token_type = "DPoP"
    world.outage.script[QUERY] = [Answer(503, "0"), Answer(401, nonce="nonce-1")]

    with world.client() as hub_client:
        result = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert result.record == RECORD
    assert _claims(world.hub.proofs[-1])["nonce"] == "nonce-1"


def test_the_async_client_waits_and_stops_as_the_sync_one(world: World) -> None:
    async def scenario() -> tuple[object, OnceonlyError]:
        async with world.async_client(max_retry_wait=1.5) as hub_client:
            world.outage.script[QUERY] = [Answer(503, "1")]
            result = await hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
            world.outage.script[QUERY] = [Answer(429, "1")] * 3
            with pytest.raises(RateLimited) as caught:
                await hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)
            return result.record, caught.value

    record, error = asyncio.run(scenario())

    assert record == RECORD
    assert [gap >= 1.0 for gap in world.outage.gaps(QUERY)] == [True, False, True]
    assert len(world.outage.at(QUERY)) == 4  # 503, its repeat, 429, its one repeat
    assert error.retry_after == 1.0


def test_fetch_many_stops_once_the_hub_asks_to_come_back_later(world: World) -> None:
    """One budget for the call: the first subject spends it (two waits of 1 s, within
    ``max_retry_wait=2``), and the rest are not sent, each told when to come back."""
    subjects = [f"{SUBJECT[:-1]}{digit}" for digit in range(5)]
    world.outage.script[QUERY] = [Answer(503, "1")] * 20
    started = time.monotonic()

    with world.client(max_retry_wait=2.0) as hub_client:
        results = hub_client.fetch_many(ITEM, subjects, purpose=PURPOSE)

    assert time.monotonic() - started < 4.0  # 10 s before: 2 s for each subject
    assert len(world.outage.at(QUERY)) == 3  # the first subject's, twice repeated
    assert list(results) == subjects
    assert all(isinstance(error, UpstreamError) for error in results.values())
    assert {error.retry_after for error in results.values()} == {1.0}  # type: ignore[union-attr]
    assert [error.status for error in results.values()] == [503] * 5  # type: ignore[union-attr]
    not_sent = [results[subject] for subject in subjects[1:]]
    assert [error.request_id for error in not_sent] == [None] * 4  # type: ignore[union-attr]


def test_the_subjects_of_fetch_many_share_one_budget(world: World) -> None:
    """The first subject waits 1 s of ``max_retry_wait=1.5``; the second may not wait
    its 1 s more, and the third is not sent."""
    subjects = [SUBJECT, f"{SUBJECT[:-1]}9", f"{SUBJECT[:-1]}7"]
    for subject in subjects:
        world.hub.records[subject] = dict(RECORD)
    world.outage.script[QUERY] = [Answer(503, "1"), None, Answer(503, "1")]

    with world.client(max_retry_wait=1.5) as hub_client:
        results = hub_client.fetch_many(ITEM, subjects, purpose=PURPOSE)

    first, second, third = (results[subject] for subject in subjects)
    assert isinstance(first, RecordResult)
    assert first.record == RECORD
    assert isinstance(second, UpstreamError)
    assert isinstance(third, UpstreamError)
    assert (second.retry_after, third.retry_after) == (1.0, 1.0)
    assert len(world.outage.at(QUERY)) == 3  # the first's two, the second's one


def test_the_async_fetch_many_waits_once_for_the_whole_call(world: World) -> None:
    subjects = [f"{SUBJECT[:-2]}{number:02}" for number in range(20)]
    world.outage.script[QUERY] = [Answer(503, "1")] * 40

    async def scenario() -> dict[str, RecordResult | OnceonlyError]:
        async with world.async_client(max_retry_wait=2.0) as hub_client:
            return await hub_client.fetch_many(ITEM, subjects, purpose=PURPOSE, concurrency=4)

    started = time.monotonic()
    results = asyncio.run(scenario())

    assert time.monotonic() - started < 4.0  # 10 s before: 2 s for each 4 subjects
    assert sorted(results) == sorted(subjects)
    assert all(isinstance(error, UpstreamError) for error in results.values())
    assert {error.retry_after for error in results.values()} == {1.0}  # type: ignore[union-attr]
    assert len(world.outage.at(QUERY)) < 10  # the first four's, and two repeats


def test_a_negative_budget_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="retries"):
        world.client(retries=-1)
    with pytest.raises(ValueError, match="max_retry_wait"):
        world.client(max_retry_wait=-1.0)


def test_the_documented_example_is_told_when_to_come_back(world: World) -> None:
    world.hub.clients["social-welfare"] = world.key
    world.outage.script[QUERY] = [Answer(503, "60")]
    scheduled: list[float] = []
    names = {
        "hub_url": world.hub.url,
        "key": world.key,
        "subject": SUBJECT,
        "schedule_again": lambda *, after: scheduled.append(after),
    }

    doc = ADAPTERS_DOC.read_text()
    examples = {match["name"]: match["text"] for match in _EXAMPLE.finditer(doc)}
    exec(examples["retry-after"], names)

    assert scheduled == [60.0]
    assert len(world.outage.at(QUERY)) == 1


FAILED_503 = (
    "publishing changes failed: UpstreamError, status 503, problem type database-unavailable"
)


def _publish_twice(world: World, outbox: Path, **options: float) -> None:
    """Run a change publisher over an outbox of one change until the hub has seen two
    attempts to publish it."""

    async def scenario() -> None:
        with RecordStore(outbox) as store:
            store.put(ITEM, SUBJECT, dict(RECORD))
            async with world.async_client(retries=0) as client:
                publisher = ChangePublisher(store, client, interval=0.2, **options)
                async with anyio.create_task_group() as group:
                    group.start_soon(publisher.run)
                    with anyio.fail_after(10):
                        while len(world.outage.at(EVENTS)) < 2:
                            await anyio.sleep(0.05)
                    group.cancel_scope.cancel()

    asyncio.run(scenario())


def test_the_adapters_change_publisher_comes_back_when_the_hub_asks(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The publisher's client does not repeat (``retries=0``): its next round waits the
    ``Retry-After`` instead of its own interval, when that is longer, and says so."""
    world.outage.script[EVENTS] = [Answer(503, "2")]

    with caplog.at_level(logging.WARNING, logger="onceonly.adapter.events"):
        _publish_twice(world, tmp_path / "outbox.db")

    (gap,) = world.outage.gaps(EVENTS)
    assert 2.0 <= gap < 4.0
    assert [
        record.getMessage() for record in caplog.records if record.name == "onceonly.adapter.events"
    ] == [FAILED_503 + "; the hub asked to come back in 2 s; publishing changes again in 2 s"]


def test_the_change_publisher_waits_no_longer_than_its_maximum(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``Retry-After`` of an hour (a proxy's maintenance page, a mistaken header) does
    not stop the outbox for an hour: the publisher waits ``max_wait`` at most."""
    world.outage.script[EVENTS] = [Answer(503, "3600")]

    with caplog.at_level(logging.WARNING, logger="onceonly.adapter.events"):
        _publish_twice(world, tmp_path / "outbox.db", max_wait=1.0)

    (gap,) = world.outage.gaps(EVENTS)
    assert 1.0 <= gap < 3.0
    assert [
        record.getMessage() for record in caplog.records if record.name == "onceonly.adapter.events"
    ] == [FAILED_503 + "; the hub asked to come back in 3600 s; publishing changes again in 1 s"]


# --- a renewal or a discovery, shared by the calls that wait for it (decision 0057) ----


def _fetch_from_threads(hub_client: HubClient, calls: int) -> list[RecordResult | BaseException]:
    """``calls`` fetches of ``hub_client`` at once, one thread each: each one's record, or
    the error that ended it."""
    with ThreadPoolExecutor(max_workers=calls) as pool:
        fetches = [
            pool.submit(hub_client.fetch, ITEM, SUBJECT, purpose=PURPOSE) for _ in range(calls)
        ]
        return [fetch.exception(timeout=60) or fetch.result() for fetch in fetches]


def _together_then_one_more(
    world: World,
) -> tuple[list[RecordResult | BaseException], RecordResult]:
    """10 fetches of a new async client at once, each one's record or error; then the
    record of one fetch more, made after they ended."""

    async def scenario() -> tuple[list[RecordResult | BaseException], RecordResult]:
        async with world.async_client() as hub_client:
            together = await _fetch_together(hub_client, calls=10)
            return together, await hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    return asyncio.run(scenario())


def test_calls_that_waited_for_a_renewal_refused_429_fail_with_its_error(world: World) -> None:
    """The first call's token request is refused twice, the second time for longer than
    its budget: the calls that waited for that renewal fail with its error (told how long
    is left of its ``Retry-After``) instead of each asking in turn. A call made after
    the failure asks again."""
    world.outage.script[TOKEN] = [Answer(429, "1"), Answer(429, "60")]

    waited, later = _together_then_one_more(world)

    assert _records(waited) == ["RateLimited"] * 10  # before: one, and 9 records
    come_back = [error.retry_after or 0.0 for error in waited]  # type: ignore[union-attr]
    assert all(55.0 < seconds <= 60.0 for seconds in come_back)
    assert later.record == RECORD
    assert len(world.outage.at(TOKEN)) == 3  # the renewal's two, and the later call's


def test_threads_that_waited_for_a_renewal_refused_503_fail_with_its_error(
    world: World,
) -> None:
    world.outage.script[TOKEN] = [Answer(503, "1"), Answer(503, "60")]

    with world.client() as hub_client:
        waited = _fetch_from_threads(hub_client, calls=8)
        later = hub_client.fetch(ITEM, SUBJECT, purpose=PURPOSE)

    assert _records(waited) == ["UpstreamError"] * 8
    assert {error.status for error in waited} == {503}  # type: ignore[union-attr]
    assert later.record == RECORD
    assert len(world.outage.at(TOKEN)) == 3


def test_threads_that_waited_for_a_renewal_refused_invalid_client_fail_with_its_error(
    world: World,
) -> None:
    """The hub refuses the client (it is not registered); the first renewal is held 1 s by
    a ``429`` so that every thread waits for it."""
    del world.hub.clients[CLIENT_ID]
    world.outage.script[TOKEN] = [Answer(429, "1")]

    with world.client() as hub_client:
        waited = _fetch_from_threads(hub_client, calls=8)

    assert _records(waited) == ["AuthenticationFailed"] * 8
    assert len(world.outage.at(TOKEN)) == 2  # before: 9, each thread asked in its turn


def test_a_renewal_failure_that_may_not_repeat_is_not_shared(world: World) -> None:
    """A ``400`` that is no refusal of the client: the next call that waited asks itself."""
    world.outage.script[TOKEN] = [Answer(429, "1"), Answer(400)]

    async def scenario() -> list[RecordResult | BaseException]:
        async with world.async_client() as hub_client:
            return await _fetch_together(hub_client, calls=8)

    results = asyncio.run(scenario())

    assert _records(results) == ["InvalidRequest"] + [RECORD] * 7
    assert len(world.outage.at(TOKEN)) == 3  # the first call's two, the next call's one


def test_concurrent_first_calls_discover_the_hub_once(world: World) -> None:
    """Discovery (RFC 8414 metadata) is held 1 s by a ``503`` so that every call waits
    for it: one fetch for all (before: one each)."""
    world.outage.script[DISCOVERY] = [Answer(503, "1")]

    async def scenario() -> list[RecordResult | BaseException]:
        async with world.async_client() as hub_client:
            return await _fetch_together(hub_client, calls=10)

    assert _records(asyncio.run(scenario())) == [RECORD] * 10
    assert len(world.outage.at(DISCOVERY)) == 2  # the 503, and its repeat
    assert world.hub.token_requests == 1


def test_concurrent_threads_discover_the_hub_once(world: World) -> None:
    world.outage.script[DISCOVERY] = [Answer(503, "1")]

    with world.client() as hub_client:
        assert _records(_fetch_from_threads(hub_client, calls=8)) == [RECORD] * 8

    assert len(world.outage.at(DISCOVERY)) == 2


def test_calls_that_waited_for_a_failed_discovery_fail_with_its_error(world: World) -> None:
    """A failed discovery is not kept: a call made after it discovers again."""
    world.outage.script[DISCOVERY] = [Answer(503, "1"), Answer(503, "60")]

    waited, later = _together_then_one_more(world)

    assert _records(waited) == ["UpstreamError"] * 10
    assert later.record == RECORD
    assert len(world.outage.at(DISCOVERY)) == 3
