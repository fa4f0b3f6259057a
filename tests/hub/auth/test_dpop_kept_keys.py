"""Kept DPoP proof keys (decision 0050): a client's proof key is imported once per
process, and nothing a caller sends without a token the hub bound to a key pushes
the kept keys out.

Whether a key was imported again is counted on joserfc's ``ECKey.import_key`` (the
call goes through): a kept key is not imported, a key pushed out is.
"""

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from onceonly.adapters import DPoPKey
from onceonly.hub.auth import callers
from onceonly.hub.auth.callers import ResourceRequest
from onceonly.hub.auth.dpop import PresentedToken, Proof, ProofError, b64url_sha256, verify_proof
from onceonly.hub.auth.exceptions import InvalidDpopProofGrant
from onceonly.hub.auth.tokens import issue_access_token
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit.clock import SYSTEM_CLOCK

ISSUER = "https://hub.example.gov"
URL = f"{ISSUER}/v1/items/person.identity/records/query"
TOKEN_URL = f"{ISSUER}/oauth/token"
HUB_KEY = ECKey.generate_key("P-256", parameters={"kid": "hub-1"}, private=True)
# More than the 1,024 keys the cache held before and holds now: a flood that pushes out
# the least recently used reaches every key kept before it.
FLOOD = 1100


def count_imports(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """From now on, for the test: how often each EC key (by its ``x``) is imported."""
    imports: Counter[str] = Counter()
    original = ECKey.import_key

    def counted(value: Any, *args: Any, **kwargs: Any) -> ECKey:
        if isinstance(value, dict):
            imports[str(value.get("x"))] += 1
        return original(value, *args, **kwargs)

    monkeypatch.setattr(ECKey, "import_key", staticmethod(counted))
    return imports


@dataclass(frozen=True)
class Holder:
    """A client's DPoP key and an access token the hub issued it, as a caller that
    verified the token presents it to verify_proof (``presented``)."""

    dpop: DPoPKey
    x: str
    presented: PresentedToken
    key: ECKey

    @property
    def token(self) -> str:
        return self.presented.text

    def proof(self, url: str = URL, *, token: str | None = None) -> str:
        return self.dpop.proof("POST", url, access_token=token)

    def proof_adding(self, members: dict[str, Any]) -> str:
        """A resource request's proof with its token, whose jwk is the key's with
        ``members`` added (a kid, key_ops): the same key, the same thumbprint."""
        jwk = {**self.key.as_dict(private=False), **members}
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
        claims = {
            "jti": uuid.uuid4().hex,
            "htm": "POST",
            "htu": URL,
            "iat": int(time.time()),
            "ath": b64url_sha256(self.token),
        }
        return jws.serialize_compact(header, json.dumps(claims).encode(), self.key, ["ES256"])


def holder(client_id: str, *, bound_to: str | None = None, signer: ECKey = HUB_KEY) -> Holder:
    """A fresh key, with a token for ``client_id`` bound to it (or to ``bound_to``)."""
    key = ECKey.generate_key("P-256", private=True)
    dpop = DPoPKey(key)
    token = issue_access_token(
        key=signer,
        issuer=ISSUER,
        client_id=client_id,
        department="social-welfare",
        scopes=frozenset({"read:person.identity"}),
        now=int(time.time()),
        lifetime=300,
        confirmation={"jkt": bound_to or dpop.thumbprint},
    )
    jkt = bound_to or dpop.thumbprint
    x = str(key.as_dict(private=False)["x"])
    return Holder(dpop, x, PresentedToken(token, client_id, jkt), key)


def verify(proof: str, *, url: str = URL, token: PresentedToken | None = None) -> Proof:
    now = int(time.time())
    return verify_proof(
        proof, method="POST", url=url, now=now, max_age=60, skew=5, access_token=token
    )


def request(client: Holder) -> Proof:
    """A resource request's proof, with the client's token."""
    return verify(client.proof(token=client.token), token=client.presented)


def honest() -> Holder:
    return holder(f"honest-{uuid.uuid4().hex[:8]}")


def unsigned(proof: str) -> str:
    return proof.rpartition(".")[0] + "."


def resigned(proof: str) -> str:
    """The proof with the signature of another key's proof."""
    return proof.rpartition(".")[0] + "." + DPoPKey.generate().proof("POST", URL).rpartition(".")[2]


def refused(proof: str, **kwargs: Any) -> str:
    with pytest.raises(ProofError) as refusal:
        verify(proof, **kwargs)
    return str(refusal.value)


# --- honest clients -----------------------------------------------------------------------


def test_an_honest_clients_key_is_imported_once_for_all_its_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imports, client = count_imports(monkeypatch), honest()
    for _ in range(5):
        assert request(client).jkt == client.dpop.thumbprint
    at_token_endpoint = verify(client.proof(TOKEN_URL), url=TOKEN_URL)
    assert at_token_endpoint.jkt == client.dpop.thumbprint
    assert imports[client.x] == 1


def test_a_proof_at_the_token_endpoint_keeps_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """It comes before the client authenticates: its key is imported, and kept from the
    first resource request, which comes with a token bound to it."""
    imports, client = count_imports(monkeypatch), honest()
    for _ in range(2):
        assert verify(client.proof(TOKEN_URL), url=TOKEN_URL).jkt == client.dpop.thumbprint
    assert imports[client.x] == 2
    request(client)
    request(client)
    assert imports[client.x] == 3


def answer(client: Holder, spoil: Callable[[str], str], **options: Any) -> str:
    """What verify_proof says of the client's request proof, spoiled: the refusal, or
    that it names the client's key."""
    token = options.pop("token", client.presented)
    if token is ANOTHER:
        token = replace(client.presented, text="another")
    try:
        proof = verify(spoil(client.proof(token=client.token)), token=token, **options)
    except ProofError as refusal:
        return str(refusal)
    return "its key" if proof.jkt == client.dpop.thumbprint else proof.jkt


def as_sent(proof: str) -> str:
    return proof


ANOTHER = object()  # the client's token with another text: its ath does not match


@pytest.mark.parametrize(
    ("spoil", "options", "said"),
    [
        (as_sent, {}, "its key"),
        (as_sent, {"token": None}, "its key"),  # the token endpoint's call
        (unsigned, {}, "the DPoP proof's signature does not verify with its jwk"),
        (resigned, {}, "the DPoP proof's signature does not verify with its jwk"),
        (as_sent, {"url": TOKEN_URL}, "the DPoP proof is for another URL (htu)"),
        (as_sent, {"token": ANOTHER}, "the DPoP proof's ath does not match the access token"),
    ],
    ids=["valid", "no-token", "unsigned", "another-signature", "other-url", "other-token"],
)
def test_a_kept_key_is_answered_as_a_new_one(
    monkeypatch: pytest.MonkeyPatch, spoil: Callable[[str], str], options: dict[str, Any], said: str
) -> None:
    imports, kept, new = count_imports(monkeypatch), honest(), honest()
    request(kept)
    assert answer(kept, spoil, **options) == answer(new, spoil, **options) == said
    assert imports[kept.x] == 1


# --- floods ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spoil", [unsigned, resigned], ids=["unsigned", "another-signature"])
def test_proofs_with_new_keys_and_bad_signatures_push_out_no_kept_key(
    monkeypatch: pytest.MonkeyPatch, spoil: Callable[[str], str]
) -> None:
    imports, client = count_imports(monkeypatch), honest()
    request(client)
    for _ in range(FLOOD):
        assert "signature does not verify" in refused(spoil(DPoPKey.generate().proof("POST", URL)))
    request(client)
    assert imports[client.x] == 1


def test_proofs_signed_by_new_keys_push_out_no_kept_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anyone can sign a proof with a new key: at the token endpoint, before the client
    authenticates, and at a resource with a token bound to another key (refused after
    verify_proof, when the caller compares the thumbprint with cnf.jkt)."""
    imports, client, other = count_imports(monkeypatch), honest(), holder("hostile")
    request(client)
    for _ in range(FLOOD // 2):
        verify(DPoPKey.generate().proof("POST", TOKEN_URL), url=TOKEN_URL)
        stranger = holder("stranger")
        proof = verify(stranger.proof(token=other.token), token=other.presented)
        assert proof.jkt == stranger.dpop.thumbprint != other.dpop.thumbprint
    request(client)
    assert imports[client.x] == 1
    verify(stranger.proof(token=other.token), token=other.presented)
    assert imports[stranger.x] == 2  # not kept for the client of a token bound to another


def test_a_client_with_many_bound_keys_pushes_out_its_own_not_another_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imports, client = count_imports(monkeypatch), honest()
    hostile_id = f"hostile-{uuid.uuid4().hex[:8]}"
    request(client)
    first, *_ = flood = [holder(hostile_id) for _ in range(FLOOD)]
    for each in flood:
        request(each)
    request(client)
    request(first)
    assert imports[client.x] == 1
    assert imports[first.x] == 2  # it went for the hostile client's later keys


def test_a_refused_proof_imports_its_key_once_and_keeps_it_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imports, client = count_imports(monkeypatch), honest()
    request(client)
    refused(unsigned(client.proof(token=client.token)), token=client.presented)
    assert imports[client.x] == 1  # a kept key: no import, the same refusal
    stranger = holder("stranger")
    proof = unsigned(stranger.proof(token=stranger.token))
    refused(proof, token=stranger.presented)
    assert imports[stranger.x] == 1  # as a new key's cost before
    refused(proof, token=stranger.presented)
    assert imports[stranger.x] == 2  # even with a token bound to it, never kept


# --- one key, written in many ways -------------------------------------------------------

# The bound over all kept keys (decision 0050): as many honest clients fill the cache.
KEPT = 1024
# More than one client's share of the cache (64)
SPELLINGS = 100


def test_one_token_keeps_its_key_once_whatever_members_its_jwk_adds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """helper-80: with the jwk's text as the cache's key, one token bound to one key
    filled its client's 64 entries, each kid a new entry with the same thumbprint."""
    imports, hostile_id = count_imports(monkeypatch), f"hostile-{uuid.uuid4().hex[:8]}"
    own, bound = holder(hostile_id), holder(hostile_id)
    request(own)
    for i in range(SPELLINGS):
        proof = verify(bound.proof_adding({"kid": f"k{i}", "x-n": i}), token=bound.presented)
        assert proof.jkt == bound.dpop.thumbprint
    request(own)
    assert imports[own.x] == 1  # the client's other key is still kept
    last = imports[bound.x]
    verify(
        bound.proof_adding({"kid": f"k{SPELLINGS - 1}", "x-n": SPELLINGS - 1}),
        token=bound.presented,
    )
    assert imports[bound.x] == last  # kept as last written


def test_one_token_pushes_out_at_most_one_other_clients_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imports = count_imports(monkeypatch)
    others = [honest() for _ in range(KEPT)]
    for each in others:
        request(each)  # the cache holds these and nothing else, the first the oldest
    bound = holder(f"hostile-{uuid.uuid4().hex[:8]}")
    for i in range(SPELLINGS):
        verify(bound.proof_adding({"kid": f"k{i}"}), token=bound.presented)
    request(others[63])
    request(others[1])
    assert imports[others[63].x] == imports[others[1].x] == 1  # only others[0] went


def test_a_kept_key_written_with_key_ops_without_verify_is_refused_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The kept entry answers only for the jwk it was imported from: another spelling
    is imported as written, and joserfc's checks of its members hold."""
    imports, client = count_imports(monkeypatch), honest()
    request(client)
    spoiled = client.proof_adding({"key_ops": ["sign"]})
    assert "does not verify" in refused(spoiled, token=client.presented)
    request(client)
    assert imports[client.x] == 2  # the refused spelling's import; the kept key stays


@pytest.mark.parametrize("x", [["a", "list"], {"an": "object"}, 7, None], ids=repr)
def test_a_jwk_whose_thumbprint_member_is_not_a_string_is_not_a_key(x: object) -> None:
    """Refused as its import refused it, not failing as a key no cache can hold."""
    client = honest()
    assert refused(client.proof_adding({"x": x}), token=client.presented) == (
        "the DPoP proof's jwk is not a valid public key"
    )


# --- the contract: the token as its caller verified it ---------------------------------------


def test_a_key_is_kept_on_the_callers_word_the_tokens_text_only_hashed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """verify_proof takes the client and cnf.jkt from its caller, which verified the
    token; it never reads the token's text, which can then be anything."""
    imports, client = count_imports(monkeypatch), honest()
    opaque = replace(client.presented, text="an opaque token")
    for _ in range(3):
        assert verify(client.proof(token=opaque.text), token=opaque).jkt == client.dpop.thumbprint
    assert imports[client.x] == 1


@pytest.mark.parametrize("jkt", ["another-keys-thumbprint", None], ids=["other-key", "unbound"])
def test_a_key_is_not_kept_if_the_caller_did_not_verify_it_as_bound(
    monkeypatch: pytest.MonkeyPatch, jkt: str | None
) -> None:
    """Whatever the token's text says (here: bound to the proof's key)."""
    imports, client = count_imports(monkeypatch), honest()
    presented = replace(client.presented, jkt=jkt)
    for _ in range(2):
        assert verify(client.proof(token=client.token), token=presented).jkt == (
            client.dpop.thumbprint
        )
    assert imports[client.x] == 2


def test_a_key_is_kept_for_the_client_the_caller_names_not_the_one_the_text_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tokens whose text names a victim's client, verified by the caller as another's:
    their keys count against the other's share, and the victim's key stays."""
    imports, victim = count_imports(monkeypatch), honest()
    request(victim)
    hostile_id = f"hostile-{uuid.uuid4().hex[:8]}"
    for _ in range(FLOOD):
        each = holder(victim.presented.client_id)
        presented = replace(each.presented, client_id=hostile_id)
        verify(each.proof(token=each.token), token=presented)
    request(victim)
    assert imports[victim.x] == 1


# --- through the caller check ---------------------------------------------------------------


def test_a_flood_at_the_token_endpoint_leaves_the_callers_kept_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, issuer=ISSUER, require_dpop=True, dpop_nonce=False)
    keys = HubKeys.load(tmp_path / "keys", create=True)
    imports = count_imports(monkeypatch)
    client = holder(f"honest-{uuid.uuid4().hex[:8]}", signer=keys.signing)

    def resource_request() -> callers.Caller:
        request = ResourceRequest(
            authorization=f"DPoP {client.token}",
            dpop_proofs=[client.proof(token=client.token)],
            method="POST",
            url=URL,
        )
        return callers.caller_from_request(
            request, settings=settings, keys=keys, scope=None, clock=SYSTEM_CLOCK
        )

    def at_token_endpoint(proof: str) -> None:
        callers.check_proof(
            [proof],
            method="POST",
            url=TOKEN_URL,
            access_token=None,
            settings=settings,
            keys=keys,
            error=InvalidDpopProofGrant,
            clock=SYSTEM_CLOCK,
        )

    resource_request()
    for _ in range(FLOOD // 2):
        at_token_endpoint(DPoPKey.generate().proof("POST", TOKEN_URL))
        with pytest.raises(InvalidDpopProofGrant, match="signature does not verify"):
            at_token_endpoint(unsigned(DPoPKey.generate().proof("POST", TOKEN_URL)))
    assert resource_request().proof_key is not None
    assert imports[client.x] == 1
