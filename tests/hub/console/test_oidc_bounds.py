"""OpenID Connect sign-ins are bounded (decision 0068): what a callback makes the hub ask
of the identity provider, staff's and citizens' alike, over real HTTP on loopback.

- A callback the hub did not start in this browser (no login cookie, or another
  login's) is refused before the provider is asked anything: the test provider counts
  the requests it gets.
- At most ``oidc_calls_at_once`` sign-ins talk to a provider at once and at most
  ``oidc_calls_waiting`` more wait; any other is told the hub is busy (429,
  ``Retry-After``), audited, and costs the provider nothing.
- The provider has ``Provider.deadline`` seconds in all: one that drips its answer
  does not hold a sign-in (and its turn) for as long as it likes.
- ID tokens naming a key the provider does not publish, and a JWKS that fails, make
  the hub fetch the keys at most once in ``oidc.MIN_REFETCH`` seconds, however many
  sign-ins come at once.

Each test takes a hub of its own (its provider's documents not yet fetched), on SQLite:
the bounds are the process's, not the database's.
"""

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from onceonly.hub.people import oidc
from onceonly.hub.runtime import hub_of

from tests.hub.oidc_provider import CLIENT_ID, CLIENT_SECRET, Behaviour, Provider, running_provider
from tests.hub_testing import RunningHub, added_audit_entries, migrated_sqlite, running_hub

BUSY = "The hub is busy checking other sign-ins: try again in a moment"
CLAIM = "national_id"


@dataclass(frozen=True)
class Flow:
    """A sign-in flow of the console: where it starts and comes back, its audit action."""

    name: str
    start: str
    callback: str
    action: str


STAFF = Flow("staff", "/sign-in/oidc", "/sign-in/oidc/callback", "person.sign-in")
CITIZEN = Flow("citizen", "/citizen/sign-in", "/citizen/sign-in/callback", "citizen.sign-in")
FLOWS = [pytest.param(STAFF, id="staff"), pytest.param(CITIZEN, id="citizen")]


@dataclass
class Bounded:
    hub: RunningHub
    app: FastAPI
    providers: dict[str, Provider]

    def provider(self, flow: Flow) -> Provider:
        return self.providers[flow.name]

    def hub_provider(self, flow: Flow) -> oidc.Provider:
        hub = hub_of(self.app)
        found = hub.oidc_provider if flow is STAFF else hub.citizen_oidc_provider
        assert found is not None
        return found


@pytest.fixture(scope="module")
def providers() -> Iterator[dict[str, Provider]]:
    with running_provider() as staff, running_provider() as citizens:
        yield {"staff": staff, "citizen": citizens}


@pytest.fixture
def bounded(
    sqlite_template: Path, tmp_path: Path, providers: dict[str, Provider]
) -> Callable[..., AbstractContextManager[Bounded]]:
    """A hub of its own with both providers and ``settings`` (a fresh cache of their
    documents); alice is linked to the staff provider's subject."""

    @contextmanager
    def started(**settings: Any) -> Iterator[Bounded]:
        apps: list[FastAPI] = []
        for provider in providers.values():
            provider.behaviour = Behaviour(claims={CLAIM: "49001080001"})
        with running_hub(
            database_url=migrated_sqlite(sqlite_template, tmp_path),
            data_dir=tmp_path / "hub",
            adjust=apps.append,
            oidc_issuer=providers["staff"].url,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
            citizen_oidc_issuer=providers["citizen"].url,
            citizen_oidc_client_id=CLIENT_ID,
            citizen_oidc_client_secret=CLIENT_SECRET,
            citizen_identifier_claim=CLAIM,
            **settings,
        ) as hub:
            providers["staff"].redirect_uris.add(hub.url + STAFF.callback)
            providers["citizen"].redirect_uris.add(hub.url + CITIZEN.callback)
            with hub.admin() as admin:
                body = {"oidc_subject": "sub-alice", "roles": [{"role": "auditor"}]}
                admin.call("PUT", "/v1/admin/people/alice", body)
            for provider in providers.values():
                provider.reset_counts()
            yield Bounded(hub=hub, app=apps[0], providers=providers)

    return started


def came_back(browser: httpx.Client, flow: Flow) -> str:
    """Start a sign-in in ``browser`` and pass the provider: the callback URL."""
    started = browser.get(flow.start)
    assert started.status_code == 302, started.text
    authorized = httpx.get(started.headers["location"])
    assert authorized.status_code == 302, authorized.text
    return str(authorized.headers["location"])


def callbacks_at_once(world: Bounded, flow: Flow, count: int) -> list[httpx.Response]:
    """``count`` browsers, each through the provider, then all back at the hub at once."""
    browsers = [httpx.Client(base_url=world.hub.url, timeout=30) for _ in range(count)]
    try:
        urls = [came_back(browser, flow) for browser in browsers]
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(httpx.Client.get, browsers, urls))
    finally:
        for browser in browsers:
            browser.close()


@pytest.mark.parametrize("flow", FLOWS)
def test_a_callback_the_hub_did_not_start_asks_the_provider_nothing(
    bounded: Callable[..., AbstractContextManager[Bounded]], flow: Flow
) -> None:
    with bounded() as world, httpx.Client(base_url=world.hub.url) as browser:
        provider = world.provider(flow)
        forged = f"{flow.callback}?state=made-up&code=made-up"
        with added_audit_entries(world.hub, action=flow.action) as added:
            refused = [browser.get(forged) for _ in range(5)]  # no login cookie at all
            came_back(browser, flow)  # a login of this browser, with another state
            provider.reset_counts()
            refused += [browser.get(forged) for _ in range(5)]
        assert [answer.status_code for answer in refused] == [400] * 10
        assert "The sign-in took too long, or was already used" in refused[-1].text
        assert provider.requests == {}  # neither the token endpoint, nor its keys
        assert [(e["outcome"], e["reason"]) for e in added] == [
            ("refused", "oidc-state-invalid")
        ] * 10


@pytest.mark.parametrize("flow", FLOWS)
def test_sign_ins_beyond_the_bound_are_told_the_hub_is_busy(
    bounded: Callable[..., AbstractContextManager[Bounded]], flow: Flow
) -> None:
    with bounded(oidc_calls_at_once=1, oidc_calls_waiting=1) as world:
        provider = world.provider(flow)
        provider.behaviour.token_delay = 1.0
        with added_audit_entries(world.hub, action=flow.action) as added:
            answers = callbacks_at_once(world, flow, 3)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 200, 429], [a.text for a in answers]
        (busy,) = [answer for answer in answers if answer.status_code == 429]
        assert busy.headers["retry-after"] == "1"
        assert BUSY in busy.text
        assert provider.requests["/token"] == 2  # the busy one asked nothing
        assert provider.most_at_once == 1
        outcomes = sorted((e["outcome"], e.get("reason")) for e in added)
        assert ("refused", "sign-in-throttled") in outcomes
        assert len(outcomes) == 3
        # The turns are given back: the next sign-in goes through.
        provider.behaviour.token_delay = 0.0
        (again,) = callbacks_at_once(world, flow, 1)
        assert again.status_code == 200, again.text


def test_the_api_callback_beyond_the_bound_is_a_problem(
    bounded: Callable[..., AbstractContextManager[Bounded]],
) -> None:
    api = Flow("staff", "/v1/people/oidc/start", oidc.CALLBACK_PATH, "person.sign-in")
    with bounded(oidc_calls_at_once=1, oidc_calls_waiting=0) as world:
        world.providers["staff"].redirect_uris.add(world.hub.url + oidc.CALLBACK_PATH)
        world.providers["staff"].behaviour.token_delay = 1.0
        with added_audit_entries(world.hub, action=api.action) as added:
            answers = callbacks_at_once(world, api, 2)
        (busy,) = [answer for answer in answers if answer.status_code == 429]
        assert busy.headers["content-type"] == "application/problem+json"
        assert busy.json()["type"].endswith(":sign-in-throttled")
        assert busy.headers["retry-after"] == "1"
        assert world.providers["staff"].requests["/token"] == 1
        assert sorted((e["outcome"], e.get("reason")) for e in added) == [
            ("ok", "oidc"),
            ("refused", "sign-in-throttled"),
        ]


@pytest.mark.parametrize("flow", FLOWS)
def test_a_provider_that_drips_its_answer_is_given_up_on(
    bounded: Callable[..., AbstractContextManager[Bounded]], flow: Flow
) -> None:
    with bounded() as world:
        world.hub_provider(flow).deadline = 1.5
        world.provider(flow).behaviour.token_drip = 0.2  # httpx's timeouts never trip
        began = time.monotonic()
        (answer,) = callbacks_at_once(world, flow, 1)
        assert time.monotonic() - began < 6
        assert answer.status_code == 502
        assert "The identity provider is not answering" in answer.text


@pytest.mark.parametrize("flow", FLOWS)
def test_sign_ins_at_once_with_an_unknown_key_fetch_the_keys_once(
    bounded: Callable[..., AbstractContextManager[Bounded]], flow: Flow
) -> None:
    with bounded(oidc_calls_at_once=4) as world:
        provider = world.provider(flow)
        provider.behaviour.kid = "a-key-the-provider-does-not-publish"
        provider.behaviour.token_delay = 0.3  # the sign-ins are at the provider together
        provider.behaviour.jwks_delay = 0.5  # and ask for its keys together
        answers = callbacks_at_once(world, flow, 4)
        assert [answer.status_code for answer in answers] == [401] * 4
        assert provider.requests["/jwks"] == 1
        assert provider.most_at_once > 1  # they were at the provider together
        answers = callbacks_at_once(world, flow, 2)  # again, within the interval
        assert [answer.status_code for answer in answers] == [401] * 2
        assert provider.requests["/jwks"] == 1


@pytest.mark.parametrize("flow", FLOWS)
def test_a_failing_jwks_is_asked_for_once_in_the_interval(
    bounded: Callable[..., AbstractContextManager[Bounded]], flow: Flow
) -> None:
    with bounded() as world:
        provider = world.provider(flow)
        provider.behaviour.jwks_status = 500
        answers = [callbacks_at_once(world, flow, 1)[0] for _ in range(3)]
        assert [answer.status_code for answer in answers] == [502] * 3
        assert provider.requests["/jwks"] == 1
        assert provider.requests["/token"] == 3  # each code is still exchanged, in turn


def test_the_keys_are_asked_for_again_once_the_interval_passed(
    providers: dict[str, Provider],
) -> None:
    """The provider's client alone, on a clock the test moves: an unknown kid refetches
    the JWKS once per interval, and a failed fetch is not retried within it."""
    provider = providers["staff"]
    provider.behaviour = Behaviour()
    now = [1000.0]

    async def run() -> list[int]:
        fetches = []
        async with httpx.AsyncClient() as http:
            client = oidc.Provider(
                issuer=provider.url,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                http=http,
                require_https=False,
                monotonic=lambda: now[0],
            )
            provider.reset_counts()
            for step in (0.0, 1.0, oidc.MIN_REFETCH, 1.0):
                now[0] += step
                keys = [client.key_for("unknown") for _ in range(5)]
                answers = await asyncio.gather(*keys, return_exceptions=True)
                assert all(isinstance(a, oidc.OidcIdTokenInvalid) for a in answers), answers
                fetches.append(provider.requests["/jwks"])
            provider.behaviour.jwks_status = 500
            now[0] += oidc.MIN_REFETCH
            with pytest.raises(oidc.OidcProviderUnavailable):
                await client.key_for("unknown")
            for _ in range(3):
                with pytest.raises(oidc.OidcIdTokenInvalid):  # the keys kept, not asked again
                    await client.key_for("unknown")
            fetches.append(provider.requests["/jwks"])
            return fetches

    # First fetch, kept within the interval; once it passed, one more; then a refetch
    # that failed, not tried again within the interval.
    assert asyncio.run(run()) == [1, 1, 2, 2, 3]
