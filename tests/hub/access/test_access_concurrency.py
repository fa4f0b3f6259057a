"""Races on access requests and grants, with real threads released together by a
barrier, over real HTTP on SQLite and PostgreSQL.

Every change of a request or a grant is compare-and-set on its status, so a race
ends with exactly one winner; the loser is told the state the winner left. A
revocation takes effect on the next exchange request: every query that starts
after the revocation was answered is refused.
"""

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa

from onceonly.adapters import AccessDenied, HubClient
from onceonly.hub.db import make_sync_engine

from tests.hub.access_world import AccessWorld, access_world
from tests.hub.exchange_world import ADDRESS, ADDRESS_RECORD, CONSUMER_CLIENT, SUBJECT
from tests.hub_testing import DATABASES, module_database, problem_type, running_hub

ROUNDS = 4


@pytest.fixture(scope="module", params=DATABASES)
def aw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AccessWorld]:
    with access_world(
        database_url=module_database(request, tmp_path_factory),
        tmp_path=tmp_path_factory.mktemp("world"),
    ) as built:
        yield built


def race(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run ``calls`` in threads that start together; their responses, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def run(position: int, call: Callable[[], httpx.Response]) -> None:
        barrier.wait()
        results[position] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def one_winner(responses: list[httpx.Response]) -> tuple[httpx.Response, httpx.Response]:
    """The winner and the loser of a two-way race (the loser: 409 request-not-pending)."""
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
    winner, loser = sorted(responses, key=lambda r: r.status_code)
    return winner, loser


def grants_of(aw: AccessWorld, request_id: str) -> list[str]:
    listed = aw.people["alma.auditor"].call("GET", "/v1/grants").json()["grants"]
    return [g["id"] for g in listed if g["request_id"] == request_id]


def test_approve_and_withdraw_at_once_end_consistently(aw: AccessWorld) -> None:
    rita, sam = aw.people["rita.registry"], aw.people["sam.welfare"]
    for _ in range(ROUNDS):
        request_id = aw.pending(purpose="tax-audit")
        winner, loser = one_winner(
            race(
                lambda: rita.act(request_id, "approve", {}),  # noqa: B023  # joined in the loop
                lambda: sam.act(request_id, "withdraw"),  # noqa: B023
            )
        )
        final = sam.call("GET", f"/v1/access-requests/{request_id}").json()
        assert final["status"] == winner.json()["status"]
        assert problem_type(loser) == "request-not-pending"
        assert (loser.json()["status"], loser.json()["state"]) == (409, final["status"])
        if final["status"] == "approved":
            assert grants_of(aw, request_id) == [final["grant_id"]]
        else:
            assert final["status"] == "withdrawn"
            assert (final["grant_id"], grants_of(aw, request_id)) == (None, [])


def test_two_owner_stewards_approving_at_once_make_one_grant(aw: AccessWorld) -> None:
    rita, oskar = aw.people["rita.registry"], aw.people["oskar.registry"]
    for _ in range(ROUNDS):
        request_id = aw.pending(purpose="tax-assessment")
        winner, loser = one_winner(
            race(
                lambda: rita.act(request_id, "approve", {"fields": ["given_name"]}),  # noqa: B023
                lambda: oskar.act(request_id, "approve", {}),  # noqa: B023
            )
        )
        assert problem_type(loser) == "request-not-pending"
        assert (loser.json()["status"], loser.json()["state"]) == (409, "approved")
        assert winner.json()["decision"]["by"] in loser.json()["detail"]
        assert grants_of(aw, request_id) == [winner.json()["grant_id"]]


def test_two_revocations_at_once_one_wins(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="debt-collection")
    grant_id = aw.people["rita.registry"].act(request_id, "approve", {}).json()["grant_id"]
    path = f"/v1/grants/{grant_id}/revoke"
    responses = race(
        lambda: aw.people["rita.registry"].call("POST", path, {"reason": "owner"}),
        lambda: aw.people["sam.welfare"].call("POST", path, {"reason": "consumer"}),
    )
    assert sorted(r.status_code for r in responses) == [200, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert problem_type(loser) == "grant-not-active"


@dataclass(frozen=True)
class Attempt:
    started: float
    record: dict[str, object] | None  # None: refused with no-grant


def test_revoke_while_exchanges_are_in_flight(aw: AccessWorld) -> None:
    purpose = "statistics"
    request_id = aw.pending(item=ADDRESS, purpose=purpose, fields=["city"])
    approved = aw.people["rita.registry"].act(request_id, "approve", {})
    grant_id = approved.json()["grant_id"]
    workers, stop = 4, threading.Event()
    barrier = threading.Barrier(workers + 1)
    attempts: list[list[Attempt]] = [[] for _ in range(workers)]
    failures: list[BaseException] = []

    def consume(mine: list[Attempt]) -> None:
        with aw.world.client() as client:
            barrier.wait()
            while not stop.is_set():
                started = time.monotonic()
                try:
                    mine.append(
                        Attempt(started, client.fetch(ADDRESS, SUBJECT, purpose=purpose).record)
                    )
                except AccessDenied as denied:
                    if denied.problem_type != "no-grant":
                        failures.append(denied)
                    mine.append(Attempt(started, None))
                except Exception as error:  # reported below
                    failures.append(error)

    threads = [threading.Thread(target=consume, args=(a,)) for a in attempts]
    for thread in threads:
        thread.start()
    barrier.wait()

    def until(condition: Callable[[], bool]) -> None:  # bounded: a stuck worker fails below
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline and not failures:
            time.sleep(0.02)

    until(lambda: all(any(a.record is not None for a in mine) for mine in attempts))
    revoked = aw.people["sam.welfare"].call(
        "POST", f"/v1/grants/{grant_id}/revoke", {"reason": "survey finished"}
    )
    committed = time.monotonic()
    until(lambda: all(sum(a.started > committed for a in mine) >= 3 for mine in attempts))
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    assert revoked.status_code == 200, revoked.text
    assert failures == []
    every = [attempt for mine in attempts for attempt in mine]
    assert {tuple(sorted(a.record)) for a in every if a.record is not None} == {("city",)}
    assert all(a.record == {"city": ADDRESS_RECORD["city"]} for a in every if a.record)
    assert any(a.record is not None for a in every if a.started < committed)
    after = [a for a in every if a.started > committed]
    assert after
    assert all(a.record is None for a in after)


class Balancer(httpx.BaseTransport):
    """A load balancer in front of hub replicas that share one issuer: every request
    goes to ``backend`` (the URL, and so the DPoP ``htu``, stays the issuer's)."""

    def __init__(self, backend: str) -> None:
        self._inner = httpx.HTTPTransport()
        self.backend = httpx.URL(backend)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host=self.backend.host, port=self.backend.port)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def test_a_revocation_on_one_replica_holds_on_the_next_request_to_another(
    aw: AccessWorld,
) -> None:
    """Two hub processes behind one issuer, on one database and one key directory: the
    grant is revoked through the first, and the consumer's very next query, which the
    balancer sends to the second, is refused."""
    purpose = "housing-benefit"
    request_id = aw.pending(item=ADDRESS, purpose=purpose, fields=["city", "street"])
    grant_id = aw.people["rita.registry"].act(request_id, "approve", {}).json()["grant_id"]
    first = aw.world.hub
    settings = first.settings
    with running_hub(
        database_url=str(settings.database_url), data_dir=settings.data_dir, issuer=settings.issuer
    ) as second:
        balancer = Balancer(second.url)
        with HubClient(
            first.url,
            client_id=CONSUMER_CLIENT,
            key=aw.world.consumer_key,
            retries=0,
            transport=balancer,
        ) as client:
            record = client.fetch(ADDRESS, SUBJECT, purpose=purpose).record
            assert record == {"city": ADDRESS_RECORD["city"], "street": ADDRESS_RECORD["street"]}
            revoked = aw.people["rita.registry"].call(  # to the first replica
                "POST", f"/v1/grants/{grant_id}/revoke", {"reason": "moved to another scheme"}
            )
            assert revoked.status_code == 200, revoked.text
            with pytest.raises(AccessDenied) as refused:
                client.fetch(ADDRESS, SUBJECT, purpose=purpose)  # same token, second replica
            assert refused.value.problem_type == "no-grant"


def test_the_database_itself_keeps_one_pending_request_per_item_and_purpose(
    aw: AccessWorld,
) -> None:
    request_id = aw.pending(purpose="tax-audit")
    engine = make_sync_engine(aw.database_url)
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO access_requests (id, consumer_id, owner_id, item_id, version,"
                    " purpose, purpose_text, legal_basis, valid_from, status, requested_by,"
                    " requested_at, answer_due) SELECT :id, consumer_id, owner_id, item_id,"
                    " version, purpose, purpose_text, legal_basis, valid_from, status,"
                    " requested_by, requested_at, answer_due FROM access_requests WHERE id = :old"
                ),
                {"id": "f" * 32, "old": request_id},
            )
    finally:
        engine.dispose()
