"""Keys that rotate without downtime: the hub's signing keys (published ahead, signing
after a delay, retired after their last token) and a department's client keys, each
rotated while a department keeps fetching records; plus EdDSA and PS256 client keys
end to end."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from onceonly.adapters import DPoPKey, HubClient, public_jwks
from onceonly.hub import signing_keys
from onceonly.hub.cli import main
from onceonly.hub.kit.clock import ManualClock
from onceonly.hub.signing_keys import SigningKeys

from tests.hub.audit.copied_worlds import copied_exchange_world
from tests.hub.audit.hub_copies import Copies
from tests.hub.exchange_world import (
    ADDRESS,
    CONSUMER,
    CONSUMER_CLIENT,
    PURPOSE,
    SUBJECT,
    World,
)
from tests.hub_testing import DATABASES, module_database, problem_type

# --- the hub's key ring, on a clock we control --------------------------------------------


def test_rotation_publishes_at_once_signs_later_and_retires_after_the_last_token(
    tmp_path: Path,
) -> None:
    clock = ManualClock(datetime(2030, 1, 2, tzinfo=UTC))
    directory = tmp_path / "signing"
    signing_keys.ensure(directory, create=True, now=int(clock.time()))
    ring = SigningKeys(directory, reload_interval=0.0, clock=clock)
    old = ring.signing().kid
    new = signing_keys.rotate(
        directory, activate_after=100, retire_margin=50, now=int(clock.time())
    )
    ring.reload()
    assert {k["kid"] for k in ring.public_jwks()["keys"]} == {old, new.kid}
    assert ring.signing().kid == old
    clock.advance(100)
    assert ring.signing().kid == new.kid
    assert {k["kid"] for k in ring.public_jwks()["keys"]} == {old, new.kid}
    clock.advance(50)
    assert [k["kid"] for k in ring.public_jwks()["keys"]] == [new.kid]
    assert [key.kid for key in ring.verification_keys()] == [new.kid]


def test_a_second_rotation_drops_retired_key_files(tmp_path: Path) -> None:
    directory = tmp_path / "signing"
    signing_keys.ensure(directory, create=True, now=0)
    first = signing_keys.read_state(directory)[0].kid
    signing_keys.rotate(directory, activate_after=0, retire_margin=0, now=10)
    signing_keys.rotate(directory, activate_after=0, retire_margin=0, now=20)
    assert not (directory / f"{first}.jwk").exists()
    assert len(signing_keys.read_state(directory)) == 2


def test_every_replica_sees_a_rotation_on_an_unknown_kid(tmp_path: Path) -> None:
    directory = tmp_path / "signing"
    signing_keys.ensure(directory, create=True, now=int(time.time()))
    one = SigningKeys(directory, reload_interval=3600)
    other = SigningKeys(directory, reload_interval=3600)
    new = signing_keys.rotate(directory, activate_after=0, retire_margin=60, now=int(time.time()))
    other.reload()  # the replica that signs with it already
    assert other.signing().kid == new.kid
    assert new.kid in {key.kid for key in one.verification_keys(new.kid)}


def test_keys_rotate_command_uses_the_default_delay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
    assert main(["keys", "init"]) == 0  # a rotation makes no keys (a9b2caf)
    capsys.readouterr()
    assert main(["keys", "rotate"]) == 0
    first, new = signing_keys.read_state(tmp_path / "keys" / "signing")
    delay = 300 + 60 + 10 + 5  # access + request token lifetimes + skew + reload
    assert new.active_from - int(time.time()) in range(delay - 2, delay + 1)
    assert first.retire_at == new.active_from + delay
    assert new.kid in capsys.readouterr().out
    assert main(["keys", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [k["kid"] for k in shown["keys"]] == [first.kid, new.kid]


# --- rotations under load -----------------------------------------------------------------


class JumpingClock:
    """The system clock, jumped ahead when a test says so: a hub on it lives on real time
    (as its clients and adapters do), but a delay that only the hub waits for passes at
    once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ahead = 0.0

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def time(self) -> float:
        with self._lock:
            return time.time() + self._ahead

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._ahead

    def jump(self, seconds: float) -> None:
        with self._lock:
            self._ahead += seconds


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Copies:
    return Copies(tmp_path_factory.mktemp("copies"))


@pytest.fixture
def clock() -> JumpingClock:
    return JumpingClock()


@pytest.fixture
def world(
    copies: Copies, database_url: str, tmp_path: Path, clock: JumpingClock
) -> Iterator[World]:
    """A world of the test's own (each rotates a key), copied from the module's (its
    catalogue, client and grant built once per database), on a clock the test jumps."""
    # 30 s tokens: the SDK fetches a new token before every query, so that the load
    # signs client assertions and access tokens all the time.
    with copied_exchange_world(
        copies, database_url=database_url, tmp_path=tmp_path, access_token_lifetime=30, clock=clock
    ) as built:
        yield built


@contextmanager
def load(client: HubClient) -> Iterator[list[int]]:
    """Fetch in a loop in a thread; yields [successes]; raises the first failure."""
    counts, failures, stop = [0], list[BaseException](), threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
                counts[0] += 1
            except BaseException as error:  # every failure counts
                failures.append(error)
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not failures, failures[0]


def wait_for(counts: list[int], more: int) -> None:
    target, deadline = counts[0] + more, time.monotonic() + 20
    while counts[0] < target:
        assert time.monotonic() < deadline, "the load stalled"
        time.sleep(0.02)


def test_hub_signing_key_rotation_under_load_fails_no_request(
    world: World, clock: JumpingClock
) -> None:
    keys = world.hub.keys
    old_kid = keys.kid
    with world.client() as client, load(client) as counts:
        wait_for(counts, 5)
        new = signing_keys.rotate(
            keys.ring.directory, activate_after=3, retire_margin=3, now=int(clock.time())
        )
        keys.ring.reload()
        assert new.kid in {
            k["kid"] for k in httpx.get(f"{world.hub.url}/.well-known/jwks.json").json()["keys"]
        }
        # The delay passes on real time: it is what lets the owner's adapter, which
        # refetches the JWKS for an unknown kid at most every 2 s, know the new key.
        while keys.kid != new.kid:
            wait_for(counts, 1)
        wait_for(counts, 5)  # the owner's adapter accepted request tokens of the new key
        clock.jump(3.5)  # the margin passes at once: the old key retires (no cache waits)
        wait_for(counts, 5)
    published = httpx.get(f"{world.hub.url}/.well-known/jwks.json").json()["keys"]
    assert [k["kid"] for k in published] == [new.kid]
    assert old_kid != new.kid


def test_token_from_a_retired_kid_is_refused(world: World) -> None:
    keys = world.hub.keys
    old = keys.signing
    signing_keys.rotate(
        keys.ring.directory, activate_after=0, retire_margin=0, now=int(time.time())
    )
    keys.ring.reload()
    dpop = DPoPKey.generate()
    now = int(time.time())
    claims = {
        "iss": world.hub.settings.issuer,
        "aud": world.hub.settings.issuer,
        "sub": CONSUMER_CLIENT,
        "client_id": CONSUMER_CLIENT,
        "department": CONSUMER,
        "scope": f"read:{ADDRESS}",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 30,
        "cnf": {"jkt": dpop.thumbprint},
    }
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": old.kid}, claims, old)
    url = f"{world.hub.url}/v1/items/{ADDRESS}/records/query"
    body = {"subject": SUBJECT, "purpose": PURPOSE}
    response = httpx.post(url, json=body, headers=dpop.headers("POST", url, token))
    assert response.status_code == 401
    assert problem_type(response) == "invalid-token"


def test_client_key_rotation_under_load_fails_no_request(world: World) -> None:
    new_key = ECKey.generate_key("P-256", auto_kid=True)
    with world.client() as client, load(client) as counts:
        wait_for(counts, 5)
        assert client.rotate_key(new_key) == [new_key.kid]
        wait_for(counts, 10)
    with world.hub.admin() as admin:
        refused = admin.audit_entries(action="token.issue", outcome="refused")["entries"]
    # an assertion signed with the old key just before the switch may be refused
    # once; the SDK then signs it again with the new key (the caller sees nothing)
    assert len(refused) <= 1


# --- every algorithm the hub accepts for clients --------------------------------------------


@pytest.fixture(scope="module", params=DATABASES)
def shared_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, copies: Copies
) -> Iterator[World]:
    """One world per module and database for the tests that only register the client's
    key (each its own) and fetch; the rotations above keep worlds of their own. It too
    is a copy of the module's saved world, on a database of its own."""
    with copied_exchange_world(
        copies,
        database_url=module_database(request, tmp_path_factory),
        tmp_path=tmp_path_factory.mktemp("world"),
        access_token_lifetime=30,
    ) as built:
        yield built


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: OKPKey.generate_key("Ed25519", auto_kid=True),
        lambda: RSAKey.generate_key(2048, auto_kid=True),
        lambda: ECKey.generate_key("P-256", auto_kid=True),
    ],
    ids=["EdDSA", "PS256", "ES256"],
)
def test_every_client_algorithm_works_end_to_end(shared_world: World, make_key: object) -> None:
    world, key = shared_world, make_key()  # type: ignore[operator]
    with world.hub.admin() as admin:
        admin.put_client(CONSUMER_CLIENT, department=CONSUMER, jwks=public_jwks(key))
    client = HubClient(world.hub.url, client_id=CONSUMER_CLIENT, key=key, retries=0)
    with client:
        assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record["city"] == "Tallinn"
    rsa = RSAKey.generate_key(2048)
    proof_client = HubClient(
        world.hub.url, client_id=CONSUMER_CLIENT, key=key, retries=0, dpop_key=DPoPKey(rsa)
    )
    with proof_client:  # a PS256 DPoP key too
        assert proof_client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record
