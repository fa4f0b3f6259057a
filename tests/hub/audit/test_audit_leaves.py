"""Audit leaves: RFC 8785 canonical bytes and RFC 6962 leaf hashes."""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onceonly.hub.audit import leaves
from onceonly.hub.kit import base64url
from onceonly.hub.kit.jcs import canonical_json

JCS = Path(__file__).resolve().parents[4] / "shared" / "testdata" / "jcs" / "testdata"


def _vectors() -> list[str]:
    if not (JCS / "input").is_dir():
        return []
    return sorted(p.name for p in (JCS / "input").glob("*.json"))


@pytest.mark.skipif(not _vectors(), reason=f"RFC 8785 vectors not found at {JCS} (../shared)")
@pytest.mark.parametrize("name", _vectors())
def test_canonical_json_matches_the_rfc8785_vectors(name: str) -> None:
    value = json.loads((JCS / "input" / name).read_text(encoding="utf-8"))
    expected = (JCS / "output" / name).read_bytes()
    assert canonical_json(value) == expected


def test_leaf_hash_is_sha256_of_zero_byte_and_leaf() -> None:
    leaf = b'{"a":1}'
    assert leaves.leaf_hash(leaf) == hashlib.sha256(b"\x00" + leaf).digest()


def test_entry_leaves_out_members_without_value_and_refuses_unknown_ones() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    entry = leaves.build_entry(
        time=moment, action="record.query", outcome="ok", item=None, purpose="p"
    )
    salt = entry.pop("salt")
    assert entry == {
        "v": 2,
        "time": "2026-01-02T03:04:05.678Z",
        "action": "record.query",
        "outcome": "ok",
        "purpose": "p",
    }
    assert len(base64url.decode(salt)) == 16
    with pytest.raises(ValueError, match="unknown audit entry fields"):
        leaves.build_entry(time=moment, action="x", outcome="ok", subject_raw="38001085718")


def test_two_entries_of_the_same_content_have_different_leaf_hashes() -> None:
    """The salt: a leaf hash cannot be tested against a guessed entry."""
    moment = datetime(2026, 1, 2, tzinfo=UTC)
    built = [
        leaves.build_entry(time=moment, action="record.query", outcome="ok", purpose="p")
        for _ in range(50)
    ]
    hashes = {leaves.leaf_hash(leaves.leaf_bytes(entry)) for entry in built}
    assert len(hashes) == 50


def test_leaf_bytes_do_not_depend_on_member_order() -> None:
    assert leaves.leaf_bytes({"b": 1, "a": [1, "é"]}) == leaves.leaf_bytes({"a": [1, "é"], "b": 1})


def test_commitment_is_an_hmac_of_the_canonical_json_under_the_exchange_key() -> None:
    key = leaves.new_commitment_key()
    record = {"street": "Pikk 1", "city": "Tallinn"}
    mac = hmac.new(key, b'{"city":"Tallinn","street":"Pikk 1"}', hashlib.sha256).digest()
    assert leaves.commitment(key, record) == "hmac-sha256:" + base64url.encode(mac)
    assert len(key) == 32
    assert leaves.commitment(leaves.new_commitment_key(), record) != leaves.commitment(key, record)


PSEUDONYM = "a" * 64


def _sealed(**fields: object) -> dict[str, object]:
    return leaves.build_entry(
        time=datetime(2026, 12, 7, tzinfo=UTC),
        action="record.query",
        outcome="refused",
        sealed_subject=PSEUDONYM,
        **fields,
    )


def test_a_sealed_subject_is_committed_to_in_the_leaf_and_indexed_in_the_row() -> None:
    """Decision 0069: the leaf holds sha256:base64url(SHA-256(salt bytes ‖ pseudonym))."""
    entry = _sealed()
    leaf = leaves.leaf_bytes(entry)
    assert PSEUDONYM.encode() not in leaf
    digest = hashlib.sha256(base64url.decode(str(entry["salt"])) + PSEUDONYM.encode()).digest()
    decoded = json.loads(leaf)
    assert "subject" not in decoded
    assert decoded["subject_commitment"] == "sha256:" + base64url.encode(digest)
    assert leaves.indexed_subject(entry) == PSEUDONYM
    assert leaves.commits_to(decoded, PSEUDONYM)
    assert not leaves.commits_to(decoded, "b" * 64)
    assert not leaves.commits_to({**decoded, "salt": "not base64url!"}, PSEUDONYM)


def test_a_named_subject_wins_over_a_sealed_one() -> None:
    entry = _sealed(subject=PSEUDONYM)
    assert "subject_commitment" not in entry
    decoded = leaves.leaf_bytes(entry)
    assert b'"subject":"' + PSEUDONYM.encode() in decoded
    assert leaves.indexed_subject(entry) == PSEUDONYM
