"""The consumer SDK: fetch records through the hub (docs/protocol.md §2, §3).

`HubClient` and `AsyncHubClient` share one sans-I/O core, `_Session`: it builds
every request and parses every response as a generator that yields steps (a request
builder, and whether the request is safe to repeat) and receives ``httpx.Response``
objects, so the two clients differ only in how they send. A builder is called for
every attempt, so that a retried request carries a fresh DPoP proof and a fresh client
assertion (both are single-use).

What the session does for a department: discovery (RFC 8414), client assertions
(``private_key_jwt``, RFC 7523), DPoP proofs on every token and resource request
(RFC 9449, with ``ath`` and server nonces: one retry on ``use_dpop_nonce``), token
caching and refresh, and rotation of the client's own key with no failed request.
When the hub answers ``503`` or ``429`` with ``Retry-After`` (RFC 9110 §10.2.3), a
request that is safe to repeat waits what it says and is sent again, within one budget
per call (`_retry`).

A client discovers the hub and renews its token for one call at a time: a flow that
finds no metadata or no valid token yields a `_Turn` to take, and the client holds its
lock of that kind (one for discovery, one for renewals) until the flow yields the turn
to give back (or ends). The flow looks again once it has the turn, so calls that found
nothing together send one request, not one each; a call that finds what it needs takes
no turn and never waits. When that request fails in a way that asking again at once
would repeat (`_repeats_now`), the calls that waited for it fail with its error instead
of each asking in turn (`_Shared`); a call made after the failure asks again (decision
0057).
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread
import httpx
from joserfc import jwt

from . import _commitment
from ._dpop import DPoPKey
from ._errors import PROBLEM_PREFIX, HubUnavailable, OnceonlyError, error_for_status
from ._keys import SigningKey, algorithm_of, public_jwks
from ._reqtoken import subject_digest
from ._retry import Retries, retry_after
from ._store import ReceiptRow, RecordStore

__all__ = ["AsyncHubClient", "HubClient", "Receipt", "RecordResult"]

T = TypeVar("T")

_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_ASSERTION_LIFETIME = 60
_TOKEN_MARGIN = 30.0
# What the hub takes inside the Idempotency-Key sf-string (docs/events.md)
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._~:+/=-]{1,128}")
# Items whose publish a session remembers being refused for want of the scope: forgetting
# one costs one more token request for it, never a change (decision 0065)
_SCOPE_REFUSALS_KEPT = 1024
# A record query refused for want of the scope asks for a new token only if the refused
# one is at least this old (seconds): a grant approved since then is in the new one, and
# a query the department has no grant for costs one token request per interval at most
_FETCH_SCOPE_RENEWAL_AGE = 10.0


@dataclass(frozen=True)
class _Step:
    """One request of a flow: ``build`` makes each attempt's request (fresh proofs), and
    ``repeatable`` says whether the request may be sent again after the hub answered
    or may have received it: a read, a token request, a ``PUT`` or ``DELETE`` (idempotent,
    RFC 9110 §9.2.2), or a request that carries an ``Idempotency-Key``."""

    build: Callable[[], httpx.Request]
    repeatable: bool


@dataclass(frozen=True)
class _Turn:
    """Not a request: a flow's mark that it starts (``take``) or ends asking the hub for
    what all the client's calls use (``of``: `_DISCOVERY`, `_RENEWAL`), which one call at
    a time may do (the client's lock of that kind)."""

    take: bool
    of: str


# Each its own lock: a call waiting for the discovery does not hold back a renewal
_DISCOVERY, _RENEWAL = "discovery", "token renewal"
_TURNS = (_DISCOVERY, _RENEWAL)

# A flow yields requests and turns; the client answers a request with its response, or
# with the error that kept it from getting one (the hub could not be reached)
_Flow = Generator[_Step | _Turn, httpx.Response | OnceonlyError | None, T]
# RFC 6749 §5.2 codes (as the hub's problem types name them too, oauth-invalid-client)
# that refuse the client itself: its next token request would be refused the same way
_CLIENT_REFUSED = frozenset({"invalid_client", "unauthorized_client"})


class _Shared:
    """What one call at a time asks the hub for on behalf of the client's calls (its
    metadata, a token), and how the last such request ended.

    A call notes `ended` before it waits for its turn. If a request ended meanwhile and
    failed in a way that asking again at once would repeat (`_repeats_now`), the call
    fails with that error (`_shared_failure`) instead of sending its own. Only the last
    failure is kept, and only calls that were waiting when it happened share it: a call
    made afterwards asks again."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.take_turn, self.give_turn = _Turn(take=True, of=name), _Turn(take=False, of=name)
        self.ended = 0  # requests of this kind that ended, failed or not
        self._failure: tuple[OnceonlyError, float] | None = None  # with its monotonic time

    def asked(self, flow: _Flow[T], *, waited_since: int) -> _Flow[T]:
        """``flow``'s outcome, unless one that ended after ``waited_since`` failed so."""
        if self.ended != waited_since and self._failure is not None:
            raise _shared_failure(*self._failure, name=self._name)
        try:
            outcome = yield from flow
        except OnceonlyError as error:
            self._ended(error if _repeats_now(error) else None)
            raise
        self._ended(None)
        return outcome

    def _ended(self, failure: OnceonlyError | None) -> None:
        self.ended += 1
        self._failure = None if failure is None else (failure, time.monotonic())


@dataclass(frozen=True)
class Receipt:
    """The hub's audit-log entry for an access: its index and base64 RFC 6962 leaf hash,
    and for a record, the entry's commitment to it with the one key that opens it (keep
    the key with the record to prove later what was delivered; the hub does not keep it).
    """

    index: int
    leaf_hash: str
    commitment: str | None = None
    commitment_key: str | None = None


@dataclass(frozen=True)
class RecordResult:
    """A record fetched through the hub, with the receipt of its audit entry."""

    item: str
    version: int
    record: dict[str, Any]
    receipt: Receipt
    request_id: str | None
    deprecation: str | None = None  # the ``Deprecation`` header (RFC 9745), e.g. "@1767225600"

    @property
    def deprecated(self) -> bool:
        """The hub marked the item deprecated: plan to move to its successor."""
        return self.deprecation is not None


@dataclass(frozen=True)
class _Metadata:
    issuer: str
    token_endpoint: str


@dataclass(frozen=True)
class _Token:
    """An access token as the session keeps it: ``asked`` is the session's tick
    (`_Session._ticks`) taken when it was asked for, so that a call can tell a token
    asked for after something it saw (a refusal) from one asked for before."""

    scheme: str
    value: str
    expires: float  # time.monotonic()
    asked: int
    got: float  # time.monotonic()


class _Session:
    """Discovery, token and query logic shared by both clients (no I/O here)."""

    def __init__(
        self, hub_url: str, *, client_id: str, key: SigningKey, dpop_key: DPoPKey | None
    ) -> None:
        self._hub_url = hub_url.rstrip("/")
        self._client_id = client_id
        self._key = key
        self._dpop = dpop_key or DPoPKey.generate()
        self._nonce: str | None = None
        self._metadata: _Metadata | None = None
        self._token: _Token | None = None
        self._discovery, self._renewal = _Shared(_DISCOVERY), _Shared(_RENEWAL)
        self._ticks = itertools.count(1)  # orders token requests and scope refusals
        # item -> the tick of the first refusal of its publish for want of the scope
        self._scope_refusals: OrderedDict[str, int] = OrderedDict()

    def fetch_flow(
        self, item: str, subject: str, *, purpose: str, version: int | None = None
    ) -> _Flow[RecordResult]:
        url = f"{self._hub_url}/v1/items/{quote(item, safe='')}/records/query"
        body: dict[str, Any] = {"subject": subject, "purpose": purpose}
        if version is not None:
            body["version"] = version
        send = partial(self._authorized_flow, "POST", url, body, repeatable=True)  # a read
        response, token = yield from send()
        if _scope_refused(response) and time.monotonic() - token.got >= _FETCH_SCOPE_RENEWAL_AGE:
            # A token holds the read: scopes of the grants active when it was issued: one
            # asked for after it holds a grant approved since (decision 0065). Queries
            # refused with the same token share that one new token.
            response, _ = yield from send(after=token.asked)
        return _record_result(response)

    def publish_flow(self, item: str, subject: str, *, kind: str, key: str) -> _Flow[str]:
        """Announce that ``subject``'s record of ``item`` changed (docs/events.md). Every
        attempt carries the same ``Idempotency-Key`` (an sf-string, as in
        draft-ietf-httpapi-idempotency-key-header): the hub makes one event of them all,
        answering ``202`` for the first and ``200`` with the same event for a repeat.

        A token holds the ``publish:`` scopes of the items the department owned when it
        was issued. When the hub refuses the publish for want of the scope, it is sent
        once more with a token asked for after a refusal of ``item`` (renewed in the
        client's turn, as any renewal), unless the token refused was already one
        (`_scope_renewal`, decision 0065): never more than once per call."""
        url = f"{self._hub_url}/v1/items/{quote(item, safe='')}/events"
        body = {"subject": subject, "kind": kind}
        headers = {"Idempotency-Key": f'"{key}"'}
        send = partial(self._authorized_flow, "POST", url, body, headers=headers, repeatable=True)
        response, token = yield from send()
        if _scope_refused(response) and (after := self._scope_renewal(item, token)) is not None:
            response, _ = yield from send(after=after)
        if response.status_code not in (200, 202):
            raise _problem_error(response)
        return _typed(response.json(), "event_id", str)

    def _scope_renewal(self, item: str, token: _Token) -> int | None:
        """After ``token`` was refused the scope to publish ``item``: the tick that a token
        for the one retry must be asked for after; None if ``token`` was already asked
        for after a refusal of ``item``. The hub found ``item`` registered when it
        refused (it judges the item before the scope), and an item's owner never
        changes, so a token asked for after any refusal of ``item`` holds its scope if,
        and only if, the department owns it: the first refusal kept is the one to
        renew after, which the publishes refused at once share."""
        earlier = self._scope_refusals.get(item)
        if earlier is not None:
            return None if token.asked > earlier else earlier
        refused = self._scope_refusals[item] = next(self._ticks)
        if len(self._scope_refusals) > _SCOPE_REFUSALS_KEPT:
            self._scope_refusals.popitem(last=False)
        return refused

    def subscription_flow(self, item: str, *, subscribe: bool) -> _Flow[None]:
        url = f"{self._hub_url}/v1/items/{quote(item, safe='')}/subscription"
        method = "PUT" if subscribe else "DELETE"
        response = yield from self._resource_flow(method, url, None, repeatable=True)
        if response.status_code not in (200, 204):
            raise _problem_error(response)
        return None

    def get_flow(self, path: str, params: dict[str, str]) -> _Flow[dict[str, Any]]:
        """An authenticated GET of a hub route that answers a JSON object."""
        url = str(httpx.URL(f"{self._hub_url}{path}", params=params))
        return _json_object((yield from self._resource_flow("GET", url, None, repeatable=True)))

    def post_flow(
        self, path: str, body: dict[str, Any], *, repeatable: bool
    ) -> _Flow[dict[str, Any]]:
        """An authenticated POST of a JSON body to a hub route that answers a JSON object;
        ``repeatable`` when the route only reads (a POST that keeps a subject out of the URL)."""
        url = self._hub_url + path
        response = yield from self._resource_flow("POST", url, body, repeatable=repeatable)
        return _json_object(response)

    def rotate_key_flow(self, new_key: SigningKey) -> _Flow[list[str]]:
        """Register ``new_key`` beside the old one, sign with it, then retire the old."""
        yield from self.register_keys_flow(public_jwks(self._key, new_key))
        self._key = new_key
        return (yield from self.register_keys_flow(public_jwks(new_key)))

    def register_keys_flow(self, jwks: dict[str, Any]) -> _Flow[list[str]]:
        url = f"{self._hub_url}/v1/clients/self/jwks"
        response = yield from self._resource_flow("PUT", url, jwks, repeatable=True)
        kids = _json_object(response).get("kids")
        if not isinstance(kids, list):
            raise _protocol_error(response, "the hub's answer lacks the registered kids")
        return [str(kid) for kid in kids]

    def use_key(self, key: SigningKey) -> None:
        self._key = key

    def _resource_flow(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        *,
        repeatable: bool,
        headers: dict[str, str] | None = None,
    ) -> _Flow[httpx.Response]:
        """Get a token if needed, then send; on 401, drop the token and retry once."""
        send = self._authorized_flow(method, url, body, repeatable=repeatable, headers=headers)
        response, _ = yield from send
        return response

    def _authorized_flow(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        *,
        repeatable: bool,
        headers: dict[str, str] | None = None,
        after: int = 0,
    ) -> _Flow[tuple[httpx.Response, _Token]]:
        """`_resource_flow` with a token asked for after the tick ``after``; the response
        and the token that it answered."""
        metadata = yield from self._metadata_flow()
        for attempt in range(2):
            token = yield from self._token_flow(metadata, after=after)
            build = partial(self._resource_request, method, url, body, token=token, extra=headers)
            response = yield from self._with_nonce(_Step(build, repeatable=repeatable))
            if response.status_code != 401 or attempt == 1:
                break
            if self._token == token:  # not one another call got meanwhile
                self._token = None
        return response, token

    def _with_nonce(self, step: _Step) -> _Flow[httpx.Response]:
        """Send; if the hub asks for its DPoP nonce (RFC 9449 §8, §9), send once more."""
        response = yield from _sent(step)
        if self._remember_nonce(response) and _asks_for_nonce(response):
            response = yield from _sent(step)
            self._remember_nonce(response)
        return response

    def _remember_nonce(self, response: httpx.Response) -> bool:
        nonce = response.headers.get("dpop-nonce")
        if nonce:
            self._nonce = nonce
        return bool(nonce)

    def _metadata_flow(self) -> _Flow[_Metadata]:
        """The hub's metadata, discovered once for all calls (RFC 8414 §3)."""
        return (yield from self._in_turn(lambda: self._metadata, self._discovery, self._discover))

    def _discover(self) -> _Flow[_Metadata]:
        url = self._hub_url + "/.well-known/oauth-authorization-server"
        response = yield from _sent(_Step(lambda: httpx.Request("GET", url), repeatable=True))
        body = _json_object(response)
        issuer, endpoint = body.get("issuer"), body.get("token_endpoint")
        if not isinstance(issuer, str) or not isinstance(endpoint, str):
            raise _protocol_error(response, "the hub's metadata lacks issuer or token_endpoint")
        self._metadata = _Metadata(issuer=issuer, token_endpoint=endpoint)
        return self._metadata

    def _token_flow(self, metadata: _Metadata, *, after: int = 0) -> _Flow[_Token]:
        """The cached token while it is valid (and was asked for after the tick
        ``after``); else a new one, asked for in the client's turn, unless another call
        got one while this one waited for the turn."""
        cached = partial(self._valid_token, after=after)
        renew = partial(self._new_token_flow, metadata)
        return (yield from self._in_turn(cached, self._renewal, renew))

    def _in_turn(
        self, cached: Callable[[], T | None], shared: _Shared, ask: Callable[[], _Flow[T]]
    ) -> _Flow[T]:
        """``cached()`` when it holds a value; else, in the client's turn, ``cached()``
        again (another call got it while this one waited) or what ``ask`` gets from the
        hub, unless the request this call waited for failed so that asking again at once
        would only repeat it (`_Shared`)."""
        if (value := cached()) is not None:
            return value
        waited_since = shared.ended
        yield shared.take_turn
        value = cached()
        if value is None:
            value = yield from shared.asked(ask(), waited_since=waited_since)
        yield shared.give_turn
        return value

    def _valid_token(self, *, after: int = 0) -> _Token | None:
        token = self._token
        if token is not None and time.monotonic() < token.expires and token.asked > after:
            return token
        return None

    def _new_token_flow(self, metadata: _Metadata) -> _Flow[_Token]:
        """RFC 6749 §4.4 client credentials, authenticated per RFC 7523 §2.2, bound to
        the DPoP key (RFC 9449 §5). If the client's key changed while the request was
        on its way (a rotation), it is sent once more, signed with the new key."""
        asked, signed_with = next(self._ticks), self._key
        # Repeatable: each attempt is a new request, with a new assertion and proof
        step = _Step(lambda: self._token_request(metadata), repeatable=True)
        response = yield from self._with_nonce(step)
        if response.status_code == 401 and signed_with is not self._key:
            response = yield from self._with_nonce(step)
        body = _json_object(response)
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not isinstance(lifetime, int):
            raise _protocol_error(response, "the token response lacks access_token or expires_in")
        scheme = "DPoP" if str(body.get("token_type", "")).lower() == "dpop" else "Bearer"
        got = time.monotonic()
        expires = got + lifetime - _TOKEN_MARGIN
        self._token = _Token(scheme=scheme, value=token, expires=expires, asked=asked, got=got)
        return self._token

    def _token_request(self, metadata: _Metadata) -> httpx.Request:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": _ASSERTION_TYPE,
            "client_assertion": self._assertion(metadata.issuer),
        }
        proof = self._dpop.proof("POST", metadata.token_endpoint, nonce=self._nonce)
        return httpx.Request("POST", metadata.token_endpoint, data=form, headers={"DPoP": proof})

    def _assertion(self, issuer: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self._client_id,
            "sub": self._client_id,
            "aud": issuer,
            "iat": now,
            "exp": now + _ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        key = self._key
        header = {"alg": algorithm_of(key), "kid": key.kid or key.thumbprint()}
        return jwt.encode(header, claims, key, algorithms=[header["alg"]])

    def _resource_request(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        *,
        token: _Token,
        extra: dict[str, str] | None,
    ) -> httpx.Request:
        if token.scheme == "DPoP":
            headers = self._dpop.headers(method, url, token.value, nonce=self._nonce)
        else:
            headers = {"Authorization": f"Bearer {token.value}"}
        return httpx.Request(method, url, json=body, headers={**(extra or {}), **headers})


class HubClient:
    """Fetch records through the hub, synchronously.

    Example::

        key = load_or_create_key("var/adapters/social-welfare/client-key.jwk")
        with HubClient("https://hub.example.gov", client_id="social-welfare", key=key) as hub:
            result = hub.fetch("person.residential-address", "38001085718",
                               purpose="benefit-eligibility")
            result.record["city"], result.receipt.index

    A request that is safe to repeat (all that this client sends) is sent again after
    a connection failure, a ``503``, or a ``429`` with ``Retry-After``, waiting what
    ``Retry-After`` says (else 0.1 s, then twice that, ...): at most ``retries`` repeats
    and ``max_retry_wait`` seconds of waiting per call, in all. A wait that would pass
    that is not waited: the error is raised at once, with its ``retry_after``.
    ``retries=0`` switches repeats off.
    """

    def __init__(
        self,
        hub_url: str,
        *,
        client_id: str,
        key: SigningKey,
        timeout: float = 10.0,
        retries: int = 2,
        max_retry_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        dpop_key: DPoPKey | None = None,
        trail: RecordStore | None = None,
    ) -> None:
        self._session = _Session(hub_url, client_id=client_id, key=key, dpop_key=dpop_key)
        self._budget = _retry_budget(retries, max_retry_wait)
        self._http = httpx.Client(timeout=timeout, transport=transport)
        self._turn_locks = {kind: threading.Lock() for kind in _TURNS}  # one at a time (_Turn)
        self._trail = trail  # where receipts are kept, for onceonly adapter reconcile

    def fetch(
        self, item: str, subject: str, *, purpose: str, version: int | None = None
    ) -> RecordResult:
        """Fetch ``subject``'s record of ``item`` for ``purpose`` (in an earlier
        ``version`` of the item, if given: fields it does not define are dropped).

        :raises OnceonlyError: a subclass naming why (see the module ``_errors``).
        """
        flow = self._session.fetch_flow(item, subject, purpose=purpose, version=version)
        result = self._run(flow, self._budget())
        self._remember(result, subject=subject, purpose=purpose)
        return result

    def fetch_many(
        self, item: str, subjects: Iterable[str], *, purpose: str
    ) -> dict[str, RecordResult | OnceonlyError]:
        """Fetch many subjects' records in one call: each subject's result, or the error
        that refused it (a refusal of one subject does not stop the others).

        The call has one budget of repeats (``retries``, ``max_retry_wait``) for all its
        subjects. Once the hub asks it to come back later (a ``503`` or ``429`` with
        ``Retry-After`` that the budget left cannot wait out) or cannot be reached (a
        `HubUnavailable`, after the budget's repeats), the subjects not yet fetched are
        not sent: each gets an error of the same class, with the same ``retry_after``
        and a detail that starts "not sent" (`_not_sent`)."""
        retries = self._budget()  # one budget for the whole call
        results: dict[str, RecordResult | OnceonlyError] = {}
        come_back: OnceonlyError | None = None
        for subject in subjects:
            if come_back is not None:
                results[subject] = _not_sent(come_back)
                continue
            try:
                flow = self._session.fetch_flow(item, subject, purpose=purpose)
                results[subject] = result = self._run(flow, retries)
                self._remember(result, subject=subject, purpose=purpose)
            except OnceonlyError as error:
                results[subject] = error
                come_back = error if _stops_fetch_many(error) else None
        return results

    def publish(
        self,
        item: str,
        subject: str,
        *,
        kind: str = "changed",
        idempotency_key: str | None = None,
    ) -> str:
        """Tell the hub that ``subject``'s record of ``item`` (owned by this department)
        ``changed`` or was ``deleted``; returns the event id. No record data is sent.

        Publishing again with the same ``idempotency_key`` (1 to 128 of
        ``A-Z a-z 0-9 . _ ~ : + / = -``; anything else is a ``ValueError``) gives the same
        event id and no second event; keep the key with the change until the hub
        accepted it. Without one, a key is made for this call, so that its own retries
        never make two events. A publish refused ``403 insufficient-scope`` (the token
        predates the item) is sent once more with a new token (decision 0065)."""
        key = _idempotency_key(idempotency_key)
        return self._run(self._session.publish_flow(item, subject, kind=kind, key=key))

    def subscribe(self, item: str) -> None:
        """Be told of changes to ``item``'s records (needs an active grant)."""
        self._run(self._session.subscription_flow(item, subscribe=True))

    def unsubscribe(self, item: str) -> None:
        self._run(self._session.subscription_flow(item, subscribe=False))

    def department_entries(self, *, cursor: str | None = None) -> dict[str, Any]:
        """The hub's audit entries of this department's record queries and of those made
        of its items: one page (``{"entries": [...], "next_cursor": ...}``)."""
        params = {"cursor": cursor} if cursor else {}
        return self._run(self._session.get_flow("/v1/audit/department-entries", params))

    def audit_entry(self, index: int) -> dict[str, Any]:
        """One entry of the hub's audit log: its ``leaf_hash`` for anyone, and its ``leaf``
        and decoded ``entry`` when it names this department (docs/audit.md)."""
        return self._run(self._session.get_flow(f"/v1/audit/entries/{int(index)}", {}))

    def citizen_access_log(self, subject: str, *, limit: int = 200) -> list[dict[str, Any]]:
        """For a citizen portal's client: who read this person's records, when and why."""
        body = {"subject": subject, "limit": limit}
        flow = self._session.post_flow("/v1/citizen/access-log", body, repeatable=True)  # a read
        answer = self._run(flow)
        return list(answer.get("accesses", []))

    def _remember(self, result: RecordResult, *, subject: str, purpose: str) -> None:
        if self._trail is not None:
            self._trail.record_receipt(_receipt_row(result, subject=subject, purpose=purpose))

    def rotate_key(self, new_key: SigningKey) -> list[str]:
        """Replace the client's key with no failed request: register ``new_key`` beside
        the old one, sign with it from now on, then retire the old one. Returns the kids
        now registered. Save ``new_key`` (e.g. with `load_or_create_key`) first.
        """
        return self._run(self._session.rotate_key_flow(new_key))

    def register_keys(self, jwks: dict[str, Any]) -> list[str]:
        """Replace the client's registered public keys (``PUT /v1/clients/self/jwks``)."""
        return self._run(self._session.register_keys_flow(jwks))

    def use_key(self, key: SigningKey) -> None:
        """Sign client assertions with ``key`` from now on (it must be registered)."""
        self._session.use_key(key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, flow: _Flow[T], retries: Retries | None = None) -> T:
        """Drive ``flow``, within ``retries``, or a budget of its own (one per call)."""
        retries = retries or self._budget()
        holding: threading.Lock | None = None  # between the flow's taking a _Turn and giving it
        answer: httpx.Response | OnceonlyError | None = None
        try:
            while True:
                step = flow.send(answer)
                answer = None
                if isinstance(step, _Turn):
                    holding = self._turn(step)
                else:
                    answer = self._send(step, retries)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            if holding is not None:  # the flow or a request failed during its turn
                holding.release()

    def _turn(self, turn: _Turn) -> threading.Lock | None:
        """Take or give back the lock ``turn`` names; the lock held now, if any."""
        lock = self._turn_locks[turn.of]
        if not turn.take:
            lock.release()
            return None
        lock.acquire()
        return lock

    def _send(self, step: _Step, retries: Retries) -> httpx.Response | OnceonlyError:
        """The response to ``step``, repeated as ``retries`` allows; or `HubUnavailable`,
        handed to the flow (`_sent`)."""
        while True:
            try:
                outcome: httpx.Response | httpx.TransportError = self._http.send(step.build())
            except httpx.TransportError as error:
                outcome = error
            delay = retries.delay_after(outcome, repeatable=step.repeatable)
            if delay is None:
                return retries.settle(outcome)
            time.sleep(delay)


class AsyncHubClient:
    """Fetch records through the hub, asynchronously; the same contract as `HubClient`.

    Example::

        async with AsyncHubClient(hub_url, client_id="social-welfare", key=key) as hub:
            result = await hub.fetch("person.identity", "38001085718", purpose="benefits")

    Requests are repeated as `HubClient` describes (``retries``, ``max_retry_wait``).
    """

    def __init__(
        self,
        hub_url: str,
        *,
        client_id: str,
        key: SigningKey,
        timeout: float = 10.0,
        retries: int = 2,
        max_retry_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        dpop_key: DPoPKey | None = None,
        trail: RecordStore | None = None,
    ) -> None:
        self._session = _Session(hub_url, client_id=client_id, key=key, dpop_key=dpop_key)
        self._budget = _retry_budget(retries, max_retry_wait)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._turn_locks = {kind: anyio.Lock() for kind in _TURNS}  # one at a time (_Turn)
        self._trail = trail

    async def fetch(
        self, item: str, subject: str, *, purpose: str, version: int | None = None
    ) -> RecordResult:
        """Fetch ``subject``'s record of ``item`` for ``purpose`` (see `HubClient.fetch`)."""
        flow = self._session.fetch_flow(item, subject, purpose=purpose, version=version)
        return await self._fetched(flow, subject=subject, purpose=purpose, retries=self._budget())

    async def _fetched(
        self, flow: _Flow[RecordResult], *, subject: str, purpose: str, retries: Retries
    ) -> RecordResult:
        result = await self._run(flow, retries)
        if self._trail is not None:
            row = _receipt_row(result, subject=subject, purpose=purpose)
            await anyio.to_thread.run_sync(self._trail.record_receipt, row)
        return result

    async def fetch_many(
        self, item: str, subjects: Iterable[str], *, purpose: str, concurrency: int = 8
    ) -> dict[str, RecordResult | OnceonlyError]:
        """Fetch many subjects' records in one call, ``concurrency`` at a time, within one
        budget of repeats, and stop sending once the hub asks to come back later or
        cannot be reached (see `HubClient.fetch_many`)."""
        retries = self._budget()  # one budget for the whole call
        results: dict[str, RecordResult | OnceonlyError] = {}
        come_back: list[OnceonlyError] = []  # the first error that stops the call
        limit = anyio.Semaphore(concurrency)

        async def one(subject: str) -> None:
            async with limit:
                if come_back:
                    results[subject] = _not_sent(come_back[0])
                    return
                flow = self._session.fetch_flow(item, subject, purpose=purpose)
                try:
                    results[subject] = await self._fetched(
                        flow, subject=subject, purpose=purpose, retries=retries
                    )
                except OnceonlyError as error:
                    results[subject] = error
                    if _stops_fetch_many(error):
                        come_back.append(error)

        async with anyio.create_task_group() as group:
            for subject in subjects:
                group.start_soon(one, subject)
        return results

    async def publish(
        self,
        item: str,
        subject: str,
        *,
        kind: str = "changed",
        idempotency_key: str | None = None,
    ) -> str:
        """See `HubClient.publish`."""
        key = _idempotency_key(idempotency_key)
        return await self._run(self._session.publish_flow(item, subject, kind=kind, key=key))

    async def subscribe(self, item: str) -> None:
        """See `HubClient.subscribe`."""
        await self._run(self._session.subscription_flow(item, subscribe=True))

    async def unsubscribe(self, item: str) -> None:
        await self._run(self._session.subscription_flow(item, subscribe=False))

    async def rotate_key(self, new_key: SigningKey) -> list[str]:
        """See `HubClient.rotate_key`."""
        return await self._run(self._session.rotate_key_flow(new_key))

    async def register_keys(self, jwks: dict[str, Any]) -> list[str]:
        """See `HubClient.register_keys`."""
        return await self._run(self._session.register_keys_flow(jwks))

    def use_key(self, key: SigningKey) -> None:
        """See `HubClient.use_key`."""
        self._session.use_key(key)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHubClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self, flow: _Flow[T], retries: Retries | None = None) -> T:
        """Drive ``flow``, within ``retries``, or a budget of its own (one per call)."""
        retries = retries or self._budget()
        holding: anyio.Lock | None = None  # between the flow's taking a _Turn and giving it
        answer: httpx.Response | OnceonlyError | None = None
        try:
            while True:
                step = flow.send(answer)
                answer = None
                if isinstance(step, _Turn):
                    holding = await self._turn(step)
                else:
                    answer = await self._send(step, retries)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            if holding is not None:  # the flow or a request failed, or the call was cancelled
                holding.release()

    async def _turn(self, turn: _Turn) -> anyio.Lock | None:
        """See `HubClient._turn`."""
        lock = self._turn_locks[turn.of]
        if not turn.take:
            lock.release()
            return None
        await lock.acquire()
        return lock

    async def _send(self, step: _Step, retries: Retries) -> httpx.Response | OnceonlyError:
        """See `HubClient._send`."""
        while True:
            request = step.build()
            try:
                outcome: httpx.Response | httpx.TransportError = await self._http.send(request)
            except httpx.TransportError as error:
                outcome = error
            delay = retries.delay_after(outcome, repeatable=step.repeatable)
            if delay is None:
                return retries.settle(outcome)
            await anyio.sleep(delay)


def _stops_fetch_many(error: OnceonlyError) -> bool:
    """Whether ``error``, for one subject of a ``fetch_many``, means that the subjects not
    sent yet are not sent: the hub asked the call to come back later, could not be
    reached (after the call's repeats), or refused the client itself (its token request:
    every other subject's would be refused the same way)."""
    return (
        error.retry_after is not None or isinstance(error, HubUnavailable) or _client_refused(error)
    )


def _client_refused(error: OnceonlyError) -> bool:
    """Whether ``error`` is the hub refusing the client itself (RFC 6749 §5.2)."""
    return (error.problem_type or "").removeprefix("oauth-").replace("-", "_") in _CLIENT_REFUSED


def _not_sent(refusal: OnceonlyError) -> OnceonlyError:
    """The error of a subject that a ``fetch_many`` did not send, after an earlier subject
    of the call met ``refusal`` (`_stops_fetch_many`): of the same class, status, problem
    type and ``retry_after``, with no request id."""
    if _client_refused(refusal):
        why = f"the hub refused this client for an earlier subject of this call ({refusal.detail})"
    elif refusal.retry_after is None:  # HubUnavailable
        why = f"an earlier subject of this call found the hub unavailable ({refusal.detail})"
    else:
        why = (
            f"the hub answered {refusal.status} to an earlier subject of this call, "
            f"asking to come back in {refusal.retry_after:g} s"
        )
    return _again(refusal, detail=f"not sent: {why}", retry_after=refusal.retry_after)


def _repeats_now(error: OnceonlyError) -> bool:
    """Whether asking the hub for its metadata or a token again at once would only repeat
    ``error``: the hub refused the client (RFC 6749 §5.2), asked it to ask less often
    (``429``), is unavailable (``503``), or could not be reached."""
    return error.status in (429, 503) or _client_refused(error)  # HubUnavailable is 503


def _shared_failure(failure: OnceonlyError, at: float, *, name: str) -> OnceonlyError:
    """The error of a call that waited for a discovery or renewal (``name``) that failed
    with ``failure`` at ``at`` (monotonic): of the same class, status and problem type,
    and what is left of its ``retry_after``; no request id (this call sent nothing)."""
    left = failure.retry_after
    if left is not None:
        left = max(0.0, left - (time.monotonic() - at))
    detail = f"{failure.detail} (the {name} this call waited for; not asked again)"
    return _again(failure, detail=detail, retry_after=left)


def _again(error: OnceonlyError, *, detail: str, retry_after: float | None) -> OnceonlyError:
    """An error of ``error``'s class, status and problem type, for a call or subject that
    was not sent because of it."""
    return type(error)(
        detail, status=error.status, problem_type=error.problem_type, retry_after=retry_after
    )


def _sent(step: _Step) -> _Flow[httpx.Response]:
    """Yield ``step`` to the client; its response. The error the client answers instead
    (the hub could not be reached) is raised here, in the flow, so that a discovery or a
    renewal knows how it ended (`_Shared`)."""
    answer = yield step
    if isinstance(answer, OnceonlyError):
        raise answer
    assert answer is not None  # the client answers every request
    return answer


def _retry_budget(retries: int, max_retry_wait: float) -> Callable[[], Retries]:
    """What makes each call's budget of repeats (`Retries`), checked once.

    :raises ValueError: ``retries`` or ``max_retry_wait`` is negative.
    """
    if retries < 0 or not max_retry_wait >= 0:
        raise ValueError("retries and max_retry_wait are 0 (no retry) or more")
    return partial(Retries, retries=retries, max_wait=float(max_retry_wait))


def _idempotency_key(given: str | None) -> str:
    """The key to publish with: ``given``, or a new one for this call.

    :raises ValueError: ``given`` is not 1 to 128 of ``A-Z a-z 0-9 . _ ~ : + / = -``.
    """
    if given is None:
        return uuid.uuid4().hex
    if not _IDEMPOTENCY_KEY.fullmatch(given):
        raise ValueError("an idempotency key is 1 to 128 of A-Z a-z 0-9 . _ ~ : + / = -")
    return given


def _receipt_row(result: RecordResult, *, subject: str, purpose: str) -> ReceiptRow:
    return ReceiptRow(
        request_id=result.request_id or "",
        item=result.item,
        purpose=purpose,
        subject_sha256=subject_digest(subject),
        index=result.receipt.index,
        leaf_hash=result.receipt.leaf_hash,
        commitment=result.receipt.commitment,
        commitment_key=result.receipt.commitment_key,
    )


def _scope_refused(response: httpx.Response) -> bool:
    """RFC 6750 §3.1: the hub refused the request because the token lacks the scope it
    needs (its ``403 insufficient-scope``)."""
    return response.status_code == 403 and _problem_error(response).problem_type == (
        "insufficient-scope"
    )


def _asks_for_nonce(response: httpx.Response) -> bool:
    """RFC 9449 §8 (400 ``use_dpop_nonce`` from the token endpoint) or §9 (401 with
    ``error="use_dpop_nonce"`` in the DPoP challenge)."""
    if response.status_code == 401:
        return "use_dpop_nonce" in response.headers.get("www-authenticate", "")
    if response.status_code == 400:
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("error") == "use_dpop_nonce"
    return False


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """The body of a ``200``; any other status raises the matching `OnceonlyError`."""
    if response.status_code != 200:
        raise _problem_error(response)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _protocol_error(response, "the hub answered with no JSON object")
    return body


def _record_result(response: httpx.Response) -> RecordResult:
    body = _json_object(response)
    try:
        receipt = _typed(body, "receipt", dict)
        result = RecordResult(
            item=_typed(body, "item", str),
            version=_typed(body, "version", int),
            record=_typed(body, "record", dict),
            receipt=Receipt(
                index=_typed(receipt, "index", int),
                leaf_hash=_typed(receipt, "leaf_hash", str),
                commitment=_typed(receipt, "commitment", str),
                commitment_key=_typed(receipt, "commitment_key", str),
            ),
            request_id=response.headers.get("x-request-id"),
            deprecation=response.headers.get("deprecation"),
        )
    except TypeError as error:
        raise _protocol_error(response, f"the hub's answer lacks a valid {error}") from error
    given = result.receipt
    if not _commitment.opens(
        given.commitment or "", key=given.commitment_key or "", record=result.record
    ):
        raise _protocol_error(response, "the hub's audit commitment does not match the record")
    return result


def _typed(body: dict[str, Any], name: str, kind: type[T]) -> T:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(name)
    return value


def _problem_error(response: httpx.Response) -> OnceonlyError:
    """Map an RFC 9457 (or RFC 6749 §5.2) error response onto the error tree."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    problem, oauth_error = body.get("type"), body.get("error")
    slug = problem.removeprefix(PROBLEM_PREFIX) if isinstance(problem, str) else None
    if slug is None and isinstance(oauth_error, str):
        slug = oauth_error
    detail = body.get("detail") or body.get("error_description")
    if not isinstance(detail, str):
        detail = f"the hub answered {response.status_code}"
    return error_for_status(response.status_code)(
        detail,
        status=response.status_code,
        problem_type=slug,
        request_id=response.headers.get("x-request-id"),
        retry_after=retry_after(response.headers.get("retry-after"), now=time.time()),
    )


def _protocol_error(response: httpx.Response, detail: str) -> OnceonlyError:
    return OnceonlyError(
        detail, status=response.status_code, request_id=response.headers.get("x-request-id")
    )
