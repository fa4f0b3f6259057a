"""Key separation (docs/decisions/0017): the hub publishes the pseudonym of any subject a
department asks about, so no key it uses may be computable as a pseudonym. Every key is
derived from ``derivation.key`` (HKDF-SHA-256, one label each); the root rotates, with
every TOTP secret re-sealed under the new one, and TOTP secrets sealed by earlier
versions (under the key that the audit log published) are re-sealed at start-up.
"""

import base64
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import col

from onceonly.adapters import DPoPKey, OnceonlyError
from onceonly.hub.app import create_app
from onceonly.hub.audit import leaves
from onceonly.hub.cli import main
from onceonly.hub.cli.servers import loopback_socket, serve_in_thread
from onceonly.hub.config import Settings
from onceonly.hub.db import make_engine, make_sync_engine
from onceonly.hub.keys import HubKeys, KeyLabel
from onceonly.hub.kit.clock import utcnow
from onceonly.hub.people import credentials, oidc, service
from onceonly.hub.people.models import Person

from tests.hub.exchange_world import ADDRESS, PURPOSE, World, exchange_world
from tests.hub_testing import TEST_PASSWORD, RunningHub, audit_entry_for, running_hub

# The labels under which earlier versions computed keys as HMAC(pseudonym key, label),
# that is, as the pseudonym of the label (the sign-in failure label began a message).
OLD_LABELS = (
    "onceonly dpop-nonce v1",
    "onceonly totp-seal v1",
    "onceonly oidc-login v1",
    "onceonly oidc-code v1",
    "onceonly sign-in-failure v1",
)


def label_subjects() -> list[str]:
    """Every label, as a department could send it as a subject: its text, its bytes'
    repr and hex, its name; and the labels of earlier versions."""
    subjects = list(OLD_LABELS)
    for label in KeyLabel:
        subjects += [label.value.decode(), str(label.value), label.value.hex(), label.name]
    return subjects


def written_forms(key: bytes) -> set[str]:
    """How a key can be written in text: hex, base64, base64url, padded or not."""
    forms = {
        key.hex(),
        key.hex().upper(),
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode(),
    }
    return forms | {form.rstrip("=") for form in forms}


def derived_keys(keys: HubKeys) -> dict[KeyLabel, bytes]:
    return {label: keys.derived(label) for label in KeyLabel}


# --- every label, every subject --------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> HubKeys:
    return HubKeys.load(tmp_path_factory.mktemp("keys"), create=True)


def test_labels_are_distinct_and_name_the_version() -> None:
    values = [label.value for label in KeyLabel]
    assert len(set(values)) == len(values)
    assert all(value.startswith(b"onceonly/v1/") for value in values)


@settings(max_examples=300, deadline=None)
@given(subject=st.one_of(st.sampled_from(label_subjects()), st.text(max_size=300)))
def test_no_derived_key_is_the_pseudonym_of_any_subject(keys: HubKeys, subject: str) -> None:
    pseudonym = keys.pseudonym(subject)
    for label, key in derived_keys(keys).items():
        assert bytes.fromhex(pseudonym) != key, label
        assert pseudonym not in written_forms(key), label
        assert not any(form in pseudonym for form in written_forms(key)), label


def test_derived_keys_come_from_the_derivation_root_alone(tmp_path: Path) -> None:
    one = HubKeys.load(tmp_path / "one", create=True)
    (tmp_path / "two").mkdir()
    shutil.copy(tmp_path / "one" / "derivation.key", tmp_path / "two" / "derivation.key")
    two = HubKeys.load(tmp_path / "two", create=True)  # its own pseudonym key
    assert derived_keys(two) == derived_keys(one)
    assert two.pseudonym("38001085718") != one.pseudonym("38001085718")
    (tmp_path / "three").mkdir()
    shutil.copy(tmp_path / "one" / "pseudonym.key", tmp_path / "three" / "pseudonym.key")
    three = HubKeys.load(tmp_path / "three", create=True)  # its own derivation root
    assert three.pseudonym("38001085718") == one.pseudonym("38001085718")
    assert set(derived_keys(three).values()).isdisjoint(derived_keys(one).values())


def test_rotation_changes_every_derived_key_and_no_pseudonym(tmp_path: Path) -> None:
    keys = HubKeys.load(tmp_path, create=True)
    before, pseudonyms = derived_keys(keys), [keys.pseudonym(s) for s in label_subjects()]
    keys.rotate_derivation()
    after = derived_keys(keys)
    assert all(before[label] != after[label] for label in KeyLabel)
    assert [keys.pseudonym(s) for s in label_subjects()] == pseudonyms


# --- a department asks about every label --------------------------------------------------


class Recording(httpx.BaseTransport):
    """The SDK's transport, keeping every answer the hub gave it."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.answers: list[httpx.Response] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        response.read()
        self.answers.append(response)
        return response

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def nonce_world(database_url: str, tmp_path: Path) -> Iterator[World]:
    with exchange_world(database_url=database_url, tmp_path=tmp_path, dpop_nonce=True) as built:
        yield built


def all_audit_text(hub: RunningHub) -> str:
    """Every audit entry the hub holds, as an auditor reads it, with its decoded leaf."""
    parts, cursor = [], None
    with hub.admin() as admin:
        while True:
            page = admin.audit_entries(limit=1000, cursor=cursor)
            for found in page["entries"]:
                parts += [json.dumps(found), base64.b64decode(found["leaf"]).decode()]
            cursor = page["next_cursor"]
            if cursor is None:
                return "\n".join(parts)


def test_no_derived_key_appears_in_what_a_query_about_its_label_publishes(
    nonce_world: World,
) -> None:
    world, recording, keys = nonce_world, Recording(), nonce_world.hub.keys
    with world.client(transport=recording) as client:
        for subject in label_subjects():
            for purpose in (PURPOSE, "not-granted"):  # asked of the owner, and refused
                with pytest.raises(OnceonlyError):
                    client.fetch(ADDRESS, subject, purpose=purpose)
    published = all_audit_text(world.hub)
    for answer in recording.answers:
        published += "\n" + answer.text + "\n" + json.dumps(dict(answer.headers))
    queries = [a for a in recording.answers if a.request.url.path.endswith("/records/query")]
    for subject in label_subjects():  # what the test reads holds what the log published
        assert keys.pseudonym(subject) in published
    assert len(queries) >= 2 * len(label_subjects())
    entry = audit_entry_for(world.hub, queries[-1], action="record.query")
    # refused before the owner was asked: the leaf commits to the pseudonym (decision 0069)
    assert leaves.commits_to(entry, keys.pseudonym(label_subjects()[-1]))
    for label, key in derived_keys(keys).items():
        for form in written_forms(key):
            assert form not in published, (label, form)


# --- TOTP secrets: re-sealed under the current root --------------------------------------


def legacy_sealed(keys: HubKeys, secret: str, *, person_id: str) -> str:
    """A TOTP secret as versions before decision 0017 stored it: AES-GCM under
    HMAC(pseudonym key, "onceonly totp-seal v1"), which is that label's pseudonym."""
    key = bytes.fromhex(keys.pseudonym("onceonly totp-seal v1"))
    nonce = os.urandom(12)
    box = AESGCM(key).encrypt(nonce, secret.encode(), person_id.encode())
    return base64.urlsafe_b64encode(nonce + box).decode()


def sealed_now(keys: HubKeys, secret: str, *, person_id: str) -> str:
    root = keys.root()
    key = keys.derived(KeyLabel.TOTP_SEAL, root=root)
    return credentials.seal(key, secret, root_id=root.id, person_id=person_id)


def add_person(url: str, username: str) -> str:
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        person_id = uuid.uuid4().hex
        conn.execute(sa.insert(Person).values(id=person_id, username=username, created_at=utcnow()))
    engine.dispose()
    return person_id


def set_totp(url: str, person_id: str, sealed: str) -> None:
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.update(Person)
            .where(col(Person.id) == person_id)
            .values(totp_secret=sealed, totp_confirmed_at=utcnow())
        )
    engine.dispose()


def stored_totp(url: str, username: str) -> tuple[str, str]:
    """(person id, sealed TOTP secret) of ``username``, as the database holds them."""
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        query = sa.select(col(Person.id), col(Person.totp_secret)).where(
            col(Person.username) == username
        )
        person_id, sealed = conn.execute(query).one()
    engine.dispose()
    return str(person_id), str(sealed)


def opened(keys: HubKeys, sealed: str, *, person_id: str) -> str:
    root = keys.root(credentials.sealed_root(sealed))
    key = keys.derived(KeyLabel.TOTP_SEAL, root=root)
    return credentials.unseal(key, sealed, person_id=person_id)


async def reseal(url: str, keys: HubKeys) -> service.Resealed:
    engine = make_engine(url)
    try:
        return await service.reseal_totp_secrets(engine, keys=keys)
    finally:
        await engine.dispose()


@pytest.mark.anyio
async def test_reseal_moves_legacy_and_previous_root_secrets_to_the_current_root_once(
    database_url: str, tmp_path: Path
) -> None:
    keys = HubKeys.load(tmp_path, create=True)
    secrets = {name: credentials.new_totp_secret() for name in ("alice", "bob", "carol")}
    ids = {name: add_person(database_url, name) for name in [*secrets, "dave"]}
    set_totp(
        database_url, ids["alice"], legacy_sealed(keys, secrets["alice"], person_id=ids["alice"])
    )
    set_totp(database_url, ids["bob"], sealed_now(keys, secrets["bob"], person_id=ids["bob"]))
    keys.rotate_derivation()  # bob's secret is now under the previous root
    carol = sealed_now(keys, secrets["carol"], person_id=ids["carol"])
    set_totp(database_url, ids["carol"], carol)

    resealed = await reseal(database_url, keys)
    assert (resealed.root_id, resealed.count, resealed.unopened) == (keys.root().id, 2, [])
    for name, secret in secrets.items():
        person_id, sealed = stored_totp(database_url, name)
        assert sealed.startswith(credentials.sealed_prefix(keys.root().id))
        assert opened(keys, sealed, person_id=person_id) == secret
    assert stored_totp(database_url, "carol")[1] == carol  # already under the current root
    assert (await reseal(database_url, keys)).count == 0


@pytest.mark.anyio
async def test_an_interrupted_rotation_is_finished_by_running_it_again(
    database_url: str, tmp_path: Path
) -> None:
    keys = HubKeys.load(tmp_path, create=True)
    secret, person_id = credentials.new_totp_secret(), add_person(database_url, "alice")
    set_totp(database_url, person_id, sealed_now(keys, secret, person_id=person_id))
    keys.rotate_derivation()  # ... and the command died before it re-sealed anything
    engine = make_engine(database_url)
    try:
        resealed = await service.rotate_derivation(engine, keys=keys)
    finally:
        await engine.dispose()
    _, sealed = stored_totp(database_url, "alice")
    assert (resealed.count, credentials.sealed_root(sealed)) == (1, keys.root().id)
    assert opened(keys, sealed, person_id=person_id) == secret


@pytest.mark.anyio
async def test_a_secret_under_a_forgotten_root_is_named_and_left_as_it_is(
    database_url: str, tmp_path: Path
) -> None:
    keys = HubKeys.load(tmp_path, create=True)
    person_id = add_person(database_url, "alice")
    sealed = sealed_now(keys, credentials.new_totp_secret(), person_id=person_id)
    set_totp(database_url, person_id, sealed)
    keys.rotate_derivation()
    keys.rotate_derivation()  # two rotations without a re-seal: the root is gone
    resealed = await reseal(database_url, keys)
    assert (resealed.count, resealed.unopened) == (0, ["alice"])
    assert stored_totp(database_url, "alice")[1] == sealed


# --- sign-in across the upgrade and across a rotation --------------------------------------


def code_at(secret: str, step: int) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return credentials.hotp(key, step)


def sign_in(hub_url: str, username: str, totp: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"username": username, "password": TEST_PASSWORD}
    if totp is not None:
        body["totp"] = totp
    return httpx.post(f"{hub_url}/v1/people/sign-in", json=body)


def put_person(hub: RunningHub, username: str) -> None:
    with hub.admin() as admin:
        admin.call("PUT", f"/v1/admin/people/{username}", {"password": TEST_PASSWORD})


def test_a_person_enrolled_before_the_upgrade_still_signs_in_with_one_time_codes(
    database_url: str, tmp_path: Path
) -> None:
    secret = credentials.new_totp_secret()
    with running_hub(database_url=database_url, data_dir=tmp_path) as hub:
        put_person(hub, "alice")
        person_id, _ = stored_totp(database_url, "alice")
        set_totp(database_url, person_id, legacy_sealed(hub.keys, secret, person_id=person_id))
        step = credentials.totp_step(time.time())
        assert sign_in(hub.url, "alice").status_code == 401  # the code is required
        before = sign_in(hub.url, "alice", code_at(secret, step))
        assert before.status_code == 200, before.text  # a legacy value opens as it is
    with running_hub(database_url=database_url, data_dir=tmp_path) as hub:  # the upgrade
        _, sealed = stored_totp(database_url, "alice")
        assert credentials.sealed_root(sealed) == hub.keys.root().id  # re-sealed at start-up
        after = sign_in(hub.url, "alice", code_at(secret, step + 1))
        assert after.status_code == 200, after.text
        entry = audit_entry_for(hub, after, action="person.sign-in")
        assert (entry["outcome"], entry["reason"]) == ("ok", "totp")


@contextmanager
def following_hub(*, database_url: str, data_dir: Path, interval: float) -> Iterator[RunningHub]:
    """A hub that looks at its key files every ``interval`` seconds (as a replica does
    every ``signing_key_reload_interval``), with DPoP nonces required."""
    sock = loopback_socket()
    configured = Settings(
        data_dir=data_dir,
        database_url=database_url,
        issuer=f"http://127.0.0.1:{sock.getsockname()[1]}",
        log_json=False,
        dpop_nonce=True,
        signing_key_reload_interval=interval,
    )
    keys = HubKeys.load(configured.keys_dir, create=True, reload_interval=interval)
    with serve_in_thread(create_app(configured, keys=keys), sock) as url:
        yield RunningHub(url=url, settings=configured, keys=keys)


def enrol(hub: RunningHub, username: str) -> str:
    """``username`` sets up one-time codes; the secret."""
    token = sign_in(hub.url, username).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"password": TEST_PASSWORD}
    secret = str(
        httpx.post(f"{hub.url}/v1/people/me/totp", json=body, headers=headers).json()["secret"]
    )
    code = code_at(secret, credentials.totp_step(time.time()))
    confirm = httpx.post(
        f"{hub.url}/v1/people/me/totp/confirm", json={"code": code}, headers=headers
    )
    assert confirm.status_code == 200, confirm.text
    return secret


def token_endpoint_nonce(hub: RunningHub, *, nonce: str | None = None) -> httpx.Response:
    """A token request (unauthenticated, so never granted) that shows the nonce answer."""
    url = f"{hub.url}/oauth/token"
    proof = DPoPKey.generate().proof("POST", url, nonce=nonce)
    return httpx.post(url, data={"grant_type": "client_credentials"}, headers={"DPoP": proof})


def test_rotate_derivation_command_reseals_and_running_hubs_follow_it(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    interval = 0.3
    with following_hub(database_url=database_url, data_dir=tmp_path, interval=interval) as hub:
        put_person(hub, "alice")
        secret = enrol(hub, "alice")
        nonce = token_endpoint_nonce(hub).headers["dpop-nonce"]
        login = oidc.LoginState.new(cli_port=None, cli_state=None, now=int(time.time()))
        cookie = login.seal(hub.keys)
        pseudonym = hub.keys.pseudonym("38001085718")

        monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("ONCEONLY_DATABASE_URL", database_url)
        assert main(["keys", "rotate-derivation"]) == 0
        out = capsys.readouterr().out
        root_id = HubKeys.load(tmp_path / "keys", create=False).root().id
        assert f"new derivation root {root_id}" in out
        assert "1 one-time-code secrets re-sealed" in out
        _, sealed = stored_totp(database_url, "alice")
        assert credentials.sealed_root(sealed) == root_id

        # A value sealed under a root the hub has not read yet makes it look at once.
        code = code_at(secret, credentials.totp_step(time.time()) + 1)
        assert sign_in(hub.url, "alice", code).status_code == 200
        time.sleep(interval * 1.5)
        assert hub.keys.root().id == root_id
        refused = token_endpoint_nonce(hub, nonce=nonce)
        assert refused.json()["error"] == "use_dpop_nonce"  # the old nonce ended
        fresh = refused.headers["dpop-nonce"]
        assert token_endpoint_nonce(hub, nonce=fresh).json()["error"] != "use_dpop_nonce"
        with pytest.raises(oidc.OidcStateInvalid):
            oidc.LoginState.open(cookie, state=login.state, keys=hub.keys, now=int(time.time()))
        assert hub.keys.pseudonym("38001085718") == pseudonym


def test_production_needs_keys_init_to_create_the_derivation_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONCEONLY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ONCEONLY_MODE", "production")
    monkeypatch.setenv("ONCEONLY_ISSUER", "https://hub.example.gov")
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", "postgresql://hub@127.0.0.1:9/unused")
    monkeypatch.setenv("ONCEONLY_AUDIT_ORIGIN", "hub.example.gov/audit")
    assert main(["keys", "rotate-derivation"]) == 1
    assert "run `onceonly keys init`" in capsys.readouterr().err
    assert main(["keys", "init"]) == 0
    assert (tmp_path / "keys" / "derivation.key").stat().st_mode & 0o777 == 0o600
