"""The OAuth endpoints' rate limits on the wire (decision 0051, docs/protocol.md §2.9):
429 ``slow_down`` with ``Retry-After``, a client's budget that nobody else can spend,
an address's budget for its refused requests at the token, introspection and
revocation endpoints, and one audit entry per address a minute. One hub
per database serves the module, on a clock the tests move; each test has its own
client and its own loopback source addresses (127.0.0.N)."""

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from prometheus_client.parser import text_string_to_metric_families

from onceonly.adapters import public_jwks
from onceonly.hub.config import Settings
from onceonly.hub.kit.clock import ManualClock

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    added_audit_entries,
    audit_entry_for,
    module_database,
    problem_type,
    running_hub,
)

DEPARTMENT = "social-welfare"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BURST = 3  # of both budgets; each refills one a second
SOURCES = (f"127.0.0.{n}" for n in itertools.count(10))  # a fresh address per use


@dataclass
class LimitWorld:
    hub: RunningHub
    clock: ManualClock


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LimitWorld]:
    clock = ManualClock()
    with running_hub(
        database_url=module_database(request, tmp_path_factory, catalogued=True),
        data_dir=tmp_path_factory.mktemp("hub"),
        clock=clock,
        require_dpop=False,  # the limits come before any proof: unbound tokens suffice
        token_client_burst=BURST,
        token_client_per_minute=60,
        token_address_burst=BURST,
        token_address_per_minute=60,
    ) as hub:
        yield LimitWorld(hub=hub, clock=clock)


@dataclass
class Client:
    client_id: str
    key: ECKey


def registered(world: LimitWorld) -> Client:
    client = Client(f"limited-{uuid.uuid4().hex[:8]}", ECKey.generate_key("P-256", auto_kid=True))
    with world.hub.admin() as admin:
        admin.put_client(client.client_id, department=DEPARTMENT, jwks=public_jwks(client.key))
    return client


@contextmanager
def sender(source: str) -> Iterator[httpx.Client]:
    """An HTTP client whose connections come from ``source`` (any of 127.0.0.0/8)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport) as http:
        yield http


TOKEN, INTROSPECT, REVOKE = "/oauth/token", "/oauth/introspect", "/oauth/revoke"
ACTIONS = {TOKEN: "token.issue", INTROSPECT: "token.introspect", REVOKE: "token.revoke"}


def ask(
    world: LimitWorld,
    http: httpx.Client,
    client: Client,
    *,
    key: ECKey | None = None,
    endpoint: str = TOKEN,
) -> httpx.Response:
    """A request by ``client`` to ``endpoint`` (a token request by default; the others
    ask about a token that is not one), its assertion signed by ``key`` (default: its
    own)."""
    form = request_form(world, client, key=key, endpoint=endpoint)
    return http.post(f"{world.hub.url}{endpoint}", data=form)


def request_form(
    world: LimitWorld, client: Client, *, key: ECKey | None = None, endpoint: str = TOKEN
) -> dict[str, str]:
    now = int(world.clock.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": world.hub.settings.issuer,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    signed = jwt.encode({"alg": "ES256", "kid": client.key.kid}, claims, key or client.key)
    form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
    if endpoint == TOKEN:
        form["grant_type"] = "client_credentials"
    else:
        form["token"] = "not-a-token"  # answered 200 all the same (RFC 7662 §2.2, RFC 7009 §2.2)
    return form


def statuses(answers: list[httpx.Response]) -> list[int]:
    return [answer.status_code for answer in answers]


def throttled_count(world: LimitWorld, budget: str) -> float:
    text = world.hub.metrics().text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "onceonly_oauth_token_throttled_total" and sample.labels == {
                "budget": budget
            }:
                return sample.value
    raise AssertionError("no onceonly_oauth_token_throttled_total series for " + budget)


def assert_slow_down(answer: httpx.Response, *, retry_after: str = "1") -> None:
    assert answer.status_code == 429, answer.status_code
    assert problem_type(answer) == "oauth-slow-down"
    assert answer.json()["error"] == "slow_down"
    assert answer.json()["error_description"]
    assert answer.headers["retry-after"] == retry_after
    assert answer.headers["cache-control"] == "no-store"


def test_a_client_past_its_burst_is_told_to_slow_down_until_retry_after(
    world: LimitWorld,
) -> None:
    client = registered(world)
    with sender(next(SOURCES)) as http:
        assert statuses([ask(world, http, client) for _ in range(BURST)]) == [200] * BURST
        refused = ask(world, http, client)
        assert_slow_down(refused)
        entry = audit_entry_for(world.hub, refused, action="token.issue")
        assert (entry["outcome"], entry["reason"]) == ("refused", "oauth-slow-down")
        assert (entry["client"], entry["department"]) == (client.client_id, DEPARTMENT)
        world.clock.advance(1)
        assert ask(world, http, client).status_code == 200


def test_forged_assertions_naming_a_client_leave_it_its_tokens(world: LimitWorld) -> None:
    victim, forger = registered(world), ECKey.generate_key("P-256", auto_kid=True)
    with (
        sender(next(SOURCES)) as attacker,
        added_audit_entries(world.hub, action="token.issue") as entries,
    ):
        answers = [ask(world, attacker, victim, key=forger) for _ in range(BURST + 5)]
    assert statuses(answers) == [401] * BURST + [429] * 5
    assert_slow_down(answers[-1])
    throttled = [entry for entry in entries if entry["reason"] == "oauth-slow-down"]
    assert len(throttled) == 1  # the address's first refusal, naming the client it named
    assert throttled[0]["client"] == victim.client_id
    with sender(next(SOURCES)) as owner:
        assert statuses([ask(world, owner, victim) for _ in range(BURST)]) == [200] * BURST


def test_a_throttled_client_is_told_so_only_once_it_has_authenticated(
    world: LimitWorld,
) -> None:
    """A 429 for a client's budget would tell anyone that the client id exists: a
    request that names a throttled client but cannot authenticate as it is refused 401,
    as one naming a made-up id is, and neither spends the client's budget nor prolongs
    its wait."""
    client, forger = registered(world), ECKey.generate_key("P-256", auto_kid=True)
    made_up = Client(f"made-up-{uuid.uuid4().hex[:8]}", forger)
    with sender(next(SOURCES)) as owner:
        assert statuses([ask(world, owner, client) for _ in range(BURST)]) == [200] * BURST
        with sender(next(SOURCES)) as attacker:
            forged = ask(world, attacker, client, key=forger)
            unknown = ask(world, attacker, made_up)
        assert statuses([forged, unknown]) == [401, 401]
        assert forged.json() == unknown.json()
        assert_slow_down(ask(world, owner, client))
        world.clock.advance(1)
        assert ask(world, owner, client).status_code == 200


def test_a_clients_refusals_are_audited_each_and_its_addresss_once_a_minute(
    world: LimitWorld,
) -> None:
    """A client over its budget is refused after it authenticated, in its request's own
    audit entry; each such refusal spends its address's budget (it was verified), and
    once that is spent too, the address's refusals are audited once a minute."""
    client = registered(world)
    with sender(next(SOURCES)) as http:
        assert statuses([ask(world, http, client) for _ in range(BURST)]) == [200] * BURST
        before = throttled_count(world, "client"), throttled_count(world, "address")
        with added_audit_entries(world.hub, action="token.issue") as entries:
            assert statuses([ask(world, http, client) for _ in range(10)]) == [429] * 10
        assert [entry["reason"] for entry in entries] == ["oauth-slow-down"] * (BURST + 1)
        assert {entry["client"] for entry in entries} == {client.client_id}
        after = throttled_count(world, "client"), throttled_count(world, "address")
        assert after == (before[0] + BURST, before[1] + 10 - BURST)
        world.clock.advance(60)
        assert statuses([ask(world, http, client) for _ in range(BURST)]) == [200] * BURST
        refused = ask(world, http, client)
        assert_slow_down(refused)
        assert audit_entry_for(world.hub, refused, action="token.issue")["reason"] == (
            "oauth-slow-down"
        )


IN_FLIGHT = 30


@pytest.fixture(scope="module", params=DATABASES)
def crowd(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LimitWorld]:
    """A hub whose address budget leaves room for IN_FLIGHT requests at once; the
    client's budget is BURST, and the clock stands still (nothing refills)."""
    clock = ManualClock()
    with running_hub(
        database_url=module_database(request, tmp_path_factory, catalogued=True),
        data_dir=tmp_path_factory.mktemp("hub"),
        clock=clock,
        require_dpop=False,
        token_client_burst=BURST,
        token_client_per_minute=60,
        token_address_burst=10 * IN_FLIGHT,
        token_address_per_minute=60,
    ) as hub:
        yield LimitWorld(hub=hub, clock=clock)


def test_token_requests_sent_at_once_get_no_more_tokens_than_the_budget(
    crowd: LimitWorld,
) -> None:
    """Before: the budget was only read when a request came in and spent once its token
    was issued, so every request in flight while one token was left got a token."""
    client = registered(crowd)

    async def all_at_once() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=IN_FLIGHT)
        async with httpx.AsyncClient(limits=limits, timeout=60) as http:
            url = f"{crowd.hub.url}{TOKEN}"
            forms = [request_form(crowd, client) for _ in range(IN_FLIGHT)]
            return list(await asyncio.gather(*(http.post(url, data=form) for form in forms)))

    answers = asyncio.run(all_at_once())
    assert sorted(statuses(answers)) == [200] * BURST + [429] * (IN_FLIGHT - BURST)
    assert_slow_down(next(answer for answer in answers if answer.status_code == 429))


def test_junk_from_one_address_is_refused_cheaply_and_not_audited(world: LimitWorld) -> None:
    client = registered(world)
    url = f"{world.hub.url}/oauth/token"
    with (
        sender(next(SOURCES)) as junk,
        added_audit_entries(world.hub, action="token.issue") as entries,
    ):
        answers = [junk.post(url, content=b"not a form") for _ in range(BURST + 2)]
    assert statuses(answers) == [400] * BURST + [429] * 2
    assert_slow_down(answers[-1])
    assert entries == []  # a request that names no client is counted, never audited
    with sender(next(SOURCES)) as other:
        assert ask(world, other, client).status_code == 200


HOLDER_ENDPOINTS = pytest.mark.parametrize("endpoint", [INTROSPECT, REVOKE])


@HOLDER_ENDPOINTS
def test_forged_assertions_at_introspection_and_revocation_are_told_to_slow_down(
    world: LimitWorld, endpoint: str
) -> None:
    victim, forger = registered(world), ECKey.generate_key("P-256", auto_kid=True)
    with (
        sender(next(SOURCES)) as attacker,
        added_audit_entries(world.hub, action=ACTIONS[endpoint]) as entries,
    ):
        answers = [
            ask(world, attacker, victim, key=forger, endpoint=endpoint) for _ in range(BURST + 5)
        ]
    assert statuses(answers) == [401] * BURST + [429] * 5
    assert_slow_down(answers[-1])
    throttled = [entry for entry in entries if entry["reason"] == "oauth-slow-down"]
    assert len(throttled) == 1  # the address's first refusal, naming the client it named
    assert (throttled[0]["client"], throttled[0]["outcome"]) == (victim.client_id, "refused")
    with sender(next(SOURCES)) as owner:
        assert ask(world, owner, victim, endpoint=endpoint).status_code == 200


@HOLDER_ENDPOINTS
def test_junk_at_introspection_and_revocation_is_refused_cheaply_and_not_audited(
    world: LimitWorld, endpoint: str
) -> None:
    with (
        sender(next(SOURCES)) as junk,
        added_audit_entries(world.hub, action=ACTIONS[endpoint]) as entries,
    ):
        url = f"{world.hub.url}{endpoint}"
        answers = [junk.post(url, content=b"not a form") for _ in range(BURST + 2)]
    assert statuses(answers) == [400] * BURST + [429] * 2
    assert_slow_down(answers[-1])
    assert entries == []


def test_the_three_endpoints_share_an_addresss_budget_for_refusals(world: LimitWorld) -> None:
    client, forger = registered(world), ECKey.generate_key("P-256", auto_kid=True)
    with sender(next(SOURCES)) as http:
        refused = [
            ask(world, http, client, key=forger, endpoint=endpoint)
            for endpoint in (INTROSPECT, REVOKE, INTROSPECT)
        ]
        assert statuses(refused) == [401] * BURST
        for endpoint in (TOKEN, INTROSPECT, REVOKE):
            assert_slow_down(ask(world, http, client, endpoint=endpoint))
        world.clock.advance(1)
        assert ask(world, http, client).status_code == 200


def test_answered_introspections_and_revocations_cost_nothing(world: LimitWorld) -> None:
    """An answer gives its address's token back, and spends none of the client's
    tokens: a department may introspect and revoke as often as it needs."""
    client = registered(world)
    with sender(next(SOURCES)) as http:
        for endpoint in (INTROSPECT, REVOKE):
            answers = [ask(world, http, client, endpoint=endpoint) for _ in range(3 * BURST)]
            assert statuses(answers) == [200] * (3 * BURST)
        assert statuses([ask(world, http, client) for _ in range(BURST)]) == [200] * BURST


def test_the_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "TOKEN_CLIENT_BURST": "7",
        "TOKEN_CLIENT_PER_MINUTE": "12.5",
        "TOKEN_ADDRESS_BURST": "9",
        "TOKEN_ADDRESS_PER_MINUTE": "30",
        "TOKEN_LIMIT_KEYS": "500",
    }.items():
        monkeypatch.setenv(f"ONCEONLY_{name}", value)
    settings = Settings()
    assert (
        settings.token_client_burst,
        settings.token_client_per_minute,
        settings.token_address_burst,
        settings.token_address_per_minute,
        settings.token_limit_keys,
    ) == (7, 12.5, 9, 30, 500)
