"""Remembered access-token verifications (onceonly.hub.auth.tokens.VerifiedTokens): a
remembered token is accepted exactly as long as verifying it anew would accept it."""

import pytest
from joserfc.jwk import ECKey, KeySet

from onceonly.hub.auth.exceptions import InvalidToken
from onceonly.hub.auth.tokens import AccessClaims, VerifiedTokens, issue_access_token

ISSUER = "https://hub.example.gov"
NOW, LIFETIME, SKEW = 1_800_000_000, 300, 10


def _key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)


def _ring(*keys: ECKey) -> KeySet:
    return KeySet([ECKey.import_key(key.as_dict(private=False)) for key in keys])


def _token(key: ECKey, *, now: int = NOW, client_id: str = "c1") -> str:
    return issue_access_token(
        key=key,
        issuer=ISSUER,
        client_id=client_id,
        department="d1",
        scopes=frozenset({"records:read"}),
        now=now,
        lifetime=LIFETIME,
        confirmation={"jkt": "thumb"},
    )


def _verify(cache: VerifiedTokens, token: str, ring: KeySet, *, now: int = NOW) -> AccessClaims:
    return cache.verify(token, key_ring=lambda _kid: ring, issuer=ISSUER, now=now, skew=SKEW)


def test_a_remembered_token_gives_the_same_claims() -> None:
    key, cache = _key("k1"), VerifiedTokens()
    token, ring = _token(key), _ring(key)
    first = _verify(cache, token, ring)
    assert token in cache
    assert _verify(cache, token, ring, now=NOW + 60) == first
    assert first.client_id == "c1"
    assert first.jkt == "thumb"


def test_a_remembered_token_stops_when_its_key_leaves_the_ring() -> None:
    old, new, cache = _key("k1"), _key("k2"), VerifiedTokens()
    token = _token(old)
    _verify(cache, token, _ring(old, new))
    with pytest.raises(InvalidToken):
        _verify(cache, token, _ring(new))


def test_a_remembered_token_stops_when_its_key_id_names_another_key() -> None:
    key, impostor, cache = _key("k1"), _key("k1"), VerifiedTokens()
    token = _token(key)
    _verify(cache, token, _ring(key))
    with pytest.raises(InvalidToken):
        _verify(cache, token, _ring(impostor))


def test_a_reloaded_ring_with_the_same_key_keeps_accepting() -> None:
    key, cache = _key("k1"), VerifiedTokens()
    token = _token(key)
    _verify(cache, token, _ring(key))
    assert _verify(cache, token, _ring(key)).client_id == "c1"  # new key objects, same key


def test_a_remembered_token_expires_with_the_token() -> None:
    key, cache = _key("k1"), VerifiedTokens()
    token, ring = _token(key), _ring(key)
    _verify(cache, token, ring)
    _verify(cache, token, ring, now=NOW + LIFETIME + SKEW - 1)
    with pytest.raises(InvalidToken, match="expired"):
        _verify(cache, token, ring, now=NOW + LIFETIME + SKEW)
    assert len(cache) == 0


def test_a_token_issued_in_the_future_is_refused_when_remembered_too() -> None:
    key, cache = _key("k1"), VerifiedTokens()
    token, ring = _token(key, now=NOW + 100), _ring(key)
    _verify(cache, token, ring, now=NOW + 100)
    with pytest.raises(InvalidToken, match="future"):
        _verify(cache, token, ring, now=NOW)


def test_a_remembered_token_is_not_accepted_for_another_issuer() -> None:
    key, cache = _key("k1"), VerifiedTokens()
    token, ring = _token(key), _ring(key)
    _verify(cache, token, ring)
    with pytest.raises(InvalidToken):
        cache.verify(
            token, key_ring=lambda _: ring, issuer="https://other.example", now=NOW, skew=SKEW
        )


def test_a_token_altered_by_one_character_is_verified_anew() -> None:
    key, cache = _key("k1"), VerifiedTokens()
    token, ring = _token(key), _ring(key)
    _verify(cache, token, ring)
    altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(InvalidToken):
        _verify(cache, altered, ring)


def test_a_token_that_does_not_verify_is_not_remembered() -> None:
    key, other, cache = _key("k1"), _key("k2"), VerifiedTokens()
    with pytest.raises(InvalidToken):
        _verify(cache, _token(key), _ring(other))
    assert len(cache) == 0


def test_keeps_at_most_max_entries_dropping_the_least_recently_used() -> None:
    key, cache = _key("k1"), VerifiedTokens(max_entries=2)
    ring = _ring(key)
    first, second, third = (_token(key) for _ in range(3))
    _verify(cache, first, ring)
    _verify(cache, second, ring)
    _verify(cache, first, ring)  # used again: second is now the least recent
    _verify(cache, third, ring)
    assert len(cache) == 2
    assert first in cache
    assert second not in cache
    assert third in cache


# --- each client's share (decision 0046) -------------------------------------------------


def _held(cache: VerifiedTokens, tokens: list[str]) -> int:
    return sum(token in cache for token in tokens)


def test_a_client_presenting_fresh_tokens_pushes_out_only_its_own() -> None:
    """A client gets a new token whenever it asks: before 0046, 4,096 of them pushed out
    every other client's, whose next requests each checked a signature again."""
    key, cache = _key("k1"), VerifiedTokens()  # the hub's bounds
    ring = _ring(key)
    honest = [_token(key, client_id=f"honest-{n}") for n in range(3)]
    for token in honest:
        _verify(cache, token, ring)
    flood = [_token(key, client_id="flooding") for _ in range(4100)]
    for token in flood:
        _verify(cache, token, ring)
    assert _held(cache, honest) == 3
    assert 0 < _held(cache, flood[-100:]) < 100  # its latest, as many as one client may keep
    assert len(cache) < 100


def test_a_client_at_its_bound_loses_its_own_least_recently_used_token() -> None:
    key, cache = _key("k1"), VerifiedTokens(max_entries=100, max_per_client=2)
    ring = _ring(key)
    other = _token(key, client_id="c2")
    first, second, third = (_token(key) for _ in range(3))
    for token in (other, first, second, first, third):  # first used again: second is oldest
        _verify(cache, token, ring)
    assert [token in cache for token in (first, second, third, other)] == [
        True,
        False,
        True,
        True,
    ]
    with pytest.raises(ValueError, match="at least 1"):
        VerifiedTokens(max_per_client=0)


def test_the_cache_stays_within_both_bounds_whatever_clients_present() -> None:
    key, cache = _key("k1"), VerifiedTokens(max_entries=6, max_per_client=2)
    ring = _ring(key)
    clients = {f"c{n}": [_token(key, client_id=f"c{n}") for _ in range(3)] for n in range(4)}
    for tokens in clients.values():
        for token in tokens:
            _verify(cache, token, ring)
            _verify(cache, token, ring)  # a hit takes no more room
            assert len(cache) <= 6
    assert [_held(cache, tokens) for tokens in clients.values()] == [0, 2, 2, 2]


def test_a_token_that_stopped_counting_is_dropped_and_frees_its_clients_room() -> None:
    old, new = _key("k1"), _key("k2")
    cache = VerifiedTokens(max_entries=100, max_per_client=2)
    expiring, retired = _token(new, now=NOW - LIFETIME), _token(old)
    _verify(cache, expiring, _ring(old, new), now=NOW - LIFETIME)
    _verify(cache, retired, _ring(old, new))
    with pytest.raises(InvalidToken, match="expired"):
        _verify(cache, expiring, _ring(old, new), now=NOW + SKEW)
    with pytest.raises(InvalidToken):
        _verify(cache, retired, _ring(new))  # its key left the ring
    assert len(cache) == 0  # neither holds a place in c1's share
