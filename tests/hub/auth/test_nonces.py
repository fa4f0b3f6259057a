"""Stateless DPoP nonces (RFC 9449 §8): fresh in their window and the next, and read
only as the hub wrote them (unpadded base64url, onceonly.hub.kit.base64url)."""

import pytest

from onceonly.hub.auth.nonces import current_nonce, is_fresh

KEY = bytes.fromhex("20954e3fef2ac524d528b07c69efb3a55e2a64141699b677f1d5f49c7e10f2f4")
NOW, LIFETIME = 1_800_000_000, 300
# Handed out by the hub before base64url had one copy: a nonce already out stays fresh.
WRITTEN_BEFORE = "AAAAAABbjYAXU2VFlF3dS23u7Vbzbdds"


def test_the_nonce_is_the_one_the_hub_has_always_written() -> None:
    assert current_nonce(KEY, now=NOW, lifetime=LIFETIME) == WRITTEN_BEFORE


@pytest.mark.parametrize(("later", "fresh"), [(0, True), (LIFETIME, True), (2 * LIFETIME, False)])
def test_a_nonce_is_fresh_in_its_window_and_the_next(later: int, fresh: bool) -> None:
    nonce = current_nonce(KEY, now=NOW, lifetime=LIFETIME)
    assert is_fresh(nonce, KEY, now=NOW + later, lifetime=LIFETIME) is fresh
    assert not is_fresh(nonce, bytes(32), now=NOW, lifetime=LIFETIME)


@pytest.mark.parametrize(
    "spelling",
    [
        WRITTEN_BEFORE + "=",
        WRITTEN_BEFORE + "==",
        WRITTEN_BEFORE[:-1] + "+",
        WRITTEN_BEFORE[:8] + "!" + WRITTEN_BEFORE[8:],
        WRITTEN_BEFORE[:-4],
        "",
        None,
        "A" * 65,
    ],
)
def test_anything_but_the_nonce_as_written_is_refused(spelling: str | None) -> None:
    assert not is_fresh(spelling, KEY, now=NOW, lifetime=LIFETIME)
