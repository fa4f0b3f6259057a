"""The Node.js reference client (docs/examples/node) against a hub on loopback.

The client is run as a department runs it: ``node query.mjs`` in a copy of its
folder, with its pinned dependencies installed by ``npm ci`` from its lockfile. The
hub requires DPoP nonces, so every run goes through the nonce retry at the token
endpoint. Outside CI the module skips when ``node`` or ``npm`` is missing; in CI it
fails instead.

The installed ``node_modules`` is kept under the system's temporary folder, keyed
by the hash of package.json and package-lock.json, so only the first run pays for
``npm ci``; nothing is written into the repository.
"""

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from onceonly.adapters import (
    AdapterConfig,
    RecordStore,
    StoreItem,
    create_provider_app,
    public_jwks,
)
from onceonly.hub.cli.servers import loopback_socket

from tests.hub_testing import RunningHub, migrated_sqlite, running_hub, serve

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "node"

# Exit codes, as docs/examples/node/README.md documents them.
EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_TOKEN = 0, 1, 2, 3

OWNER, CONSUMER, OTHER = "civil-registry", "social-welfare", "tax"
CONSUMER_CLIENT, OTHER_CLIENT = "social-welfare-node", "tax-node"
ED25519_CLIENT, RSA_CLIENT = "social-welfare-node-ed25519", "social-welfare-node-rsa"
ADDRESS, PURPOSE, SUBJECT = "person.residential-address", "benefit-eligibility", "38001085718"
ADDRESS_RECORD = {
    "street": "Pikk 1",
    "city": "Tallinn",
    "postal_code": "10123",
    "country": "ND",
    "municipality": "Tallinn",
    "registered_since": "2019-05-01",
}
GRANTED = ["city", "country", "municipality", "postal_code", "street"]  # not registered_since


@dataclass
class World:
    hub: RunningHub
    client_dir: Path
    key_jwk: Path  # the consumer's private P-256 key as a JWK (with its registered kid)
    key_pem: Path  # the same key as PKCS#8 PEM (no kid: the client uses the thumbprint)
    ed25519_pem: Path  # another client of the consumer's, with an Ed25519 key
    rsa_jwk: Path  # and one with an RSA key
    other_key: Path  # the key of a client whose department holds no grant
    wrong_key: Path  # a key the hub never saw, named with the consumer's kid


@functools.cache
def _node_version(node: str) -> int:
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    return int(done.stdout.strip().lstrip("v").split(".")[0] or 0)


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None or _node_version(node) < 20:
        reason = "the Node.js reference client needs node (20 or later) and npm on PATH"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must provide them")
        pytest.skip(reason)
    return node, npm


def _installed_node_modules(npm: str) -> Path:
    """``npm ci`` of the example's lockfile, once per lockfile, in a stable temp folder."""
    manifest = [(EXAMPLE / name).read_bytes() for name in ("package.json", "package-lock.json")]
    digest = hashlib.sha256(b"\0".join(manifest)).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"onceonly-node-client-{digest}"
    modules = cache / "node_modules"
    if (modules / "jose" / "package.json").exists():
        return modules
    cache.mkdir(exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=cache, prefix="npm-ci-"))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(EXAMPLE / name, build / name)
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=build,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}{done.stderr}"
        try:
            (build / "node_modules").rename(modules)  # atomic: workers may race here
        except OSError:
            assert (modules / "jose" / "package.json").exists()  # another one won
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return modules


def _write_jwk(path: Path, key: ECKey | RSAKey, **members: str) -> Path:
    path.write_text(json.dumps({**key.as_dict(private=True), **members}))
    return path


@pytest.fixture(scope="module")
def world(
    catalogued_sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A hub requiring DPoP nonces, the civil registry's adapter with one address, the
    social-welfare client granted some of its fields, a tax client with no grant, and
    a copy of the Node client ready to run."""
    _, npm = _node_tools()
    client_dir = tmp_path_factory.mktemp("node") / "client"
    shutil.copytree(EXAMPLE, client_dir, ignore=shutil.ignore_patterns("node_modules"))
    (client_dir / "node_modules").symlink_to(_installed_node_modules(npm))

    tmp = tmp_path_factory.mktemp("world")
    consumer_key = ECKey.generate_key("P-256", auto_kid=True)
    other_key = ECKey.generate_key("P-256", auto_kid=True)
    ed25519_key = OKPKey.generate_key("Ed25519", auto_kid=True)
    rsa_key = RSAKey.generate_key(2048, auto_kid=True)
    key_pem, ed25519_pem = tmp / "consumer.pem", tmp / "ed25519.pem"
    key_pem.write_bytes(consumer_key.as_pem(private=True))
    ed25519_pem.write_bytes(ed25519_key.as_pem(private=True))
    database_url = migrated_sqlite(catalogued_sqlite_template, tmp_path_factory.mktemp("db"))
    with (
        running_hub(database_url=database_url, data_dir=tmp / "hub", dpop_nonce=True) as hub,
        hub.admin() as admin,
    ):
        admin.put_client(CONSUMER_CLIENT, department=CONSUMER, jwks=public_jwks(consumer_key))
        admin.put_client(ED25519_CLIENT, department=CONSUMER, jwks=public_jwks(ed25519_key))
        admin.put_client(RSA_CLIENT, department=CONSUMER, jwks=public_jwks(rsa_key))
        admin.put_client(OTHER_CLIENT, department=OTHER, jwks=public_jwks(other_key))
        config = AdapterConfig(
            department=OWNER,
            hub_url=hub.url,
            data_dir=tmp / "owner",
            items={ADDRESS: StoreItem()},
        )
        with RecordStore(config.store_path) as store:
            store.put(ADDRESS, SUBJECT, ADDRESS_RECORD)
        with serve(create_provider_app(config)) as owner_url:
            admin.put_department(OWNER, name="Civil Registry Office", adapter_url=owner_url)
            admin.create_grant(
                consumer=CONSUMER, item=ADDRESS, purpose=PURPOSE, legal_basis="test", fields=GRANTED
            )
            yield World(
                hub=hub,
                client_dir=client_dir,
                key_jwk=_write_jwk(tmp / "consumer.jwk", consumer_key),
                key_pem=key_pem,
                ed25519_pem=ed25519_pem,
                rsa_jwk=_write_jwk(tmp / "rsa.jwk", rsa_key),
                other_key=_write_jwk(tmp / "other.jwk", other_key),
                wrong_key=_write_jwk(
                    tmp / "wrong.jwk",
                    ECKey.generate_key("P-256"),
                    kid=str(consumer_key.kid),
                ),
            )


def _node(
    world: World, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    node, _ = _node_tools()
    return subprocess.run(
        [node, *args],
        cwd=world.client_dir,
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _query(
    world: World,
    *,
    key: Path | None = None,
    client_id: str = CONSUMER_CLIENT,
    purpose: str = PURPOSE,
    subject: str = SUBJECT,
    hub: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return _node(
        world,
        "query.mjs",
        *("--hub", hub or world.hub.url, "--client-id", client_id),
        *("--key", str(key or world.key_jwk), "--item", ADDRESS),
        *("--subject", subject, "--purpose", purpose),
    )


def _problem(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The problem members query.mjs prints on stderr (``  type:   urn:...`` lines)."""
    lines = (line.strip().split(":", 1) for line in done.stderr.splitlines()[1:])
    return {name.strip(): value.strip() for name, value in lines}


def test_prints_the_record_the_owner_holds_minimized_to_the_grant(world: World) -> None:
    done = _query(world)
    assert done.returncode == EXIT_OK, done.stderr
    answer = json.loads(done.stdout)
    assert answer["item"] == ADDRESS
    assert answer["version"] == 1
    assert answer["record"] == {name: ADDRESS_RECORD[name] for name in GRANTED}
    assert set(answer["receipt"]) >= {"index", "leaf_hash", "commitment", "commitment_key"}


def test_takes_its_configuration_from_the_environment(world: World) -> None:
    done = _node(
        world,
        "query.mjs",
        env={
            "ONCEONLY_HUB_URL": world.hub.url,
            "ONCEONLY_CLIENT_ID": CONSUMER_CLIENT,
            "ONCEONLY_KEY_FILE": str(world.key_jwk),
            "ONCEONLY_ITEM": ADDRESS,
            "ONCEONLY_SUBJECT": SUBJECT,
            "ONCEONLY_PURPOSE": PURPOSE,
        },
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["record"] == {name: ADDRESS_RECORD[name] for name in GRANTED}


@pytest.mark.parametrize(
    ("client_id", "key"),
    [(CONSUMER_CLIENT, "key_pem"), (ED25519_CLIENT, "ed25519_pem"), (RSA_CLIENT, "rsa_jwk")],
)
def test_signs_with_p256_ed25519_and_rsa_keys_as_jwk_or_pem(
    world: World, client_id: str, key: str
) -> None:
    done = _query(world, client_id=client_id, key=getattr(world, key))
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["record"] == {name: ADDRESS_RECORD[name] for name in GRANTED}


def test_retries_once_with_the_hubs_nonce_at_the_token_endpoint_and_the_resource(
    world: World,
) -> None:
    """A stale nonce before each request (as after the hub rotated its nonce): the
    client sends each request again, once, with the nonce the hub answered."""
    module = json.dumps((world.client_dir / "onceonly.mjs").as_uri())
    script = f"""
        import {{ readFile }} from 'node:fs/promises';
        import {{ HubClient, loadClientKey }} from {module};
        const seen = [];
        const fetched = globalThis.fetch;
        globalThis.fetch = async (url, init) => {{
          const response = await fetched(url, init);
          seen.push([init.method, new URL(url).pathname, response.status]);
          return response;
        }};
        const env = process.env;
        const key = await loadClientKey(await readFile(env.KEY, 'utf8'));
        const client = new HubClient(env.HUB, env.CLIENT, key);
        await client.discover();
        client.nonce = 'a-nonce-the-hub-no-longer-takes';
        await client.accessToken('read:' + env.ITEM);
        client.nonce = 'a-nonce-the-hub-no-longer-takes';
        const answer = await client.queryRecord(env.ITEM, env.SUBJECT, env.PURPOSE);
        console.log(JSON.stringify({{ seen, record: answer.record }}));
    """
    done = _node(
        world,
        "--input-type=module",
        "--eval",
        script,
        env={
            "HUB": world.hub.url,
            "CLIENT": CONSUMER_CLIENT,
            "KEY": str(world.key_jwk),
            "ITEM": ADDRESS,
            "SUBJECT": SUBJECT,
            "PURPOSE": PURPOSE,
        },
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    query = f"/v1/items/{ADDRESS}/records/query"
    assert result["seen"] == [
        ["GET", "/.well-known/oauth-authorization-server", 200],
        ["POST", "/oauth/token", 400],
        ["POST", "/oauth/token", 200],
        ["POST", query, 401],
        ["POST", query, 200],
    ]
    assert result["record"] == {name: ADDRESS_RECORD[name] for name in GRANTED}


@pytest.mark.parametrize(
    ("case", "problem_type", "status", "exit_code"),
    [
        ("another purpose", "no-grant", "403", EXIT_REFUSED),
        ("no record", "record-not-found", "404", EXIT_REFUSED),
        ("department without a grant", "oauth-invalid-scope", "400", EXIT_TOKEN),
        ("bad key", "oauth-invalid-client", "401", EXIT_TOKEN),
    ],
)
def test_prints_the_problem_and_exits_with_the_documented_code(
    world: World, case: str, problem_type: str, status: str, exit_code: int
) -> None:
    done = {
        "another purpose": lambda: _query(world, purpose="housing-benefit"),
        "no record": lambda: _query(world, subject="49002010965"),
        "department without a grant": lambda: _query(
            world, client_id=OTHER_CLIENT, key=world.other_key
        ),
        "bad key": lambda: _query(world, key=world.wrong_key),
    }[case]()
    assert done.returncode == exit_code, done.stdout + done.stderr
    assert done.stdout == ""
    problem = _problem(done)
    assert problem["type"] == f"urn:onceonly:problem:{problem_type}"
    assert problem["status"] == status
    assert problem["title"]
    assert problem["detail"]
    assert problem["request id"]


def test_an_unreachable_hub_exits_with_its_code(world: World) -> None:
    sock = loopback_socket()  # bound, never listening: connections are refused
    try:
        done = _query(world, hub=f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        sock.close()
    assert done.returncode == EXIT_UNREACHABLE, done.stdout + done.stderr
    assert "cannot reach" in done.stderr
