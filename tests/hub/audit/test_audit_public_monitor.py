"""A monitor outside the hub, with nothing but the public routes and the verifier key,
checks the whole log with an independent RFC 6962 / RFC 9162 reference
(tests/hub/rfc6962_reference.py) and an Ed25519 check of the C2SP signed note written
here from the C2SP text: no code of onceonly.hub.audit is used to verify."""

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.hub import rfc6962_reference as rfc
from tests.hub.exchange_world import ADDRESS, PURPOSE, SUBJECT, World, exchange_world
from tests.hub_testing import DATABASES, module_database


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    database_url = module_database(request, tmp_path_factory)
    path: Path = tmp_path_factory.mktemp("world")
    with exchange_world(
        database_url=database_url, tmp_path=path, checkpoint_interval=0.05
    ) as built:
        with built.client() as client:
            for _ in range(7):
                client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        yield built


def _signed_checkpoint(url: str) -> tuple[int, bytes]:
    """The checkpoint's size and root, its signature checked against the verifier key
    (C2SP signed-note: key hash = SHA-256(name ‖ "\\n" ‖ 0x01 ‖ key)[:4])."""
    verifier_key = httpx.get(f"{url}/v1/audit/verifier-key").text.strip()
    name, key_hash, key = verifier_key.split("+", 2)  # base64 may hold "+" too
    raw_key = base64.b64decode(key)
    assert raw_key[0] == 0x01  # Ed25519
    note = httpx.get(f"{url}/v1/audit/checkpoint").text
    body, _, signatures = note.partition("\n\n")
    body += "\n"
    for line in signatures.splitlines():
        signer, blob = line.removeprefix("\u2014 ").split(" ")
        signature = base64.b64decode(blob)
        if signer == name and signature[:4].hex() == key_hash:
            Ed25519PublicKey.from_public_bytes(raw_key[1:]).verify(signature[4:], body.encode())
            break
    else:
        raise AssertionError("no signature by the pinned key")
    origin, size, root = body.splitlines()
    assert origin == name
    expected = hashlib.sha256(name.encode() + b"\n" + raw_key).digest()[:4].hex()
    assert key_hash == expected
    return int(size), base64.b64decode(root)


def _leaf_hashes(url: str, size: int) -> list[bytes]:
    hashes: list[bytes] = []
    while len(hashes) < size:
        page = httpx.get(f"{url}/v1/audit/leaves", params={"start": len(hashes)}).json()
        for entry in page["entries"]:
            assert set(entry) == {"index", "leaf_hash"}  # no content for the public
            assert entry["index"] == len(hashes)
            hashes.append(base64.b64decode(entry["leaf_hash"]))
    return hashes[:size]


def _proof(url: str, path: str, **params: int) -> list[bytes]:
    response = httpx.get(f"{url}/v1/audit/proof/{path}", params=params)
    assert response.status_code == 200, response.text
    return [base64.b64decode(h) for h in response.json()["hashes"]]


def test_a_public_monitor_verifies_the_log_with_an_independent_reference(world: World) -> None:
    url = world.hub.url
    size, root = _signed_checkpoint(url)
    assert size >= 7
    hashes = _leaf_hashes(url, size)
    assert rfc.mth_of_leaf_hashes(hashes) == root
    for index in range(size):
        path = _proof(url, "inclusion", index=index, tree_size=size)
        assert rfc.verify_inclusion(index, size, hashes[index], path, root), index
    for old in range(1, size):
        proof = _proof(url, "consistency", **{"from": old, "to": size})
        old_root = rfc.mth_of_leaf_hashes(hashes[:old])
        assert rfc.verify_consistency(old, size, old_root, root, proof), old


def test_the_reference_notices_a_leaf_hash_that_is_not_the_logs(world: World) -> None:
    """The monitor's check can fail: one changed leaf hash breaks the root and its proof."""
    url = world.hub.url
    size, root = _signed_checkpoint(url)
    hashes = _leaf_hashes(url, size)
    forged = [*hashes[:2], hashlib.sha256(b"\x00forged").digest(), *hashes[3:]]
    assert rfc.mth_of_leaf_hashes(forged) != root
    path = _proof(url, "inclusion", index=2, tree_size=size)
    assert not rfc.verify_inclusion(2, size, forged[2], path, root)
