"""People's accounts, roles and sign-in.

A sign-in is a random bearer token (``oop_…``), stored only as its SHA-256, that
lasts ``session_lifetime`` seconds. Every request with it reads the session, the
account and its roles afresh: disabling a person or changing their roles takes
effect on their very next request, on every replica.

TOTP secrets are sealed under a key derived from the hub's derivation root, and say
which root sealed them; :func:`reseal_totp_secrets` moves every one that another root
(the previous one, or the legacy key of earlier versions) sealed to the current root.
"""

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from onceonly.hub.audit.service import AuditScope
from onceonly.hub.config import Settings
from onceonly.hub.db import WRITE_OPTION, write_connection
from onceonly.hub.keys import HubKeys, KeyLabel
from onceonly.hub.kit.clock import Clock, aware
from onceonly.hub.kit.derivation import Root, UnknownRoot
from onceonly.hub.kit.problems import InvalidRequest
from onceonly.hub.kit.rate_limit import IPV6_NETWORK_SHARES, ipv6_networks, source_of
from onceonly.hub.people import credentials, repository
from onceonly.hub.people.exceptions import (
    OidcSubjectTaken,
    PersonConflict,
    PersonNotFound,
    SignInFailed,
    SignInsBusy,
    SignInThrottled,
)
from onceonly.hub.people.models import Person, PersonRole, PersonSession
from onceonly.hub.people.principal import Forbidden, Principal
from onceonly.hub.people.schemas import (
    RESERVED_USERNAMES,
    PasswordIn,
    PersonIn,
    PersonList,
    PersonOut,
    RoleIn,
    RoleOut,
    SessionOut,
    SignInIn,
    TotpEnrolIn,
    TotpEnrolment,
)
from onceonly.hub.registry import service as registry

log = logging.getLogger("onceonly.people")
TOKEN_PREFIX = "oop_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_of(person: Person, roles: list[PersonRole]) -> Principal:
    kinds = {role.role for role in roles}
    return Principal(
        name=person.username,
        person_id=person.id,
        administrator="administrator" in kinds,
        auditor="auditor" in kinds,
        stewards=frozenset(r.department_id for r in roles if r.role == "steward"),
    )


async def principal_for_token(
    session: AsyncSession, token: str, *, clock: Clock
) -> Principal | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    found = await repository.live_session(session, token_hash=token_hash(token), now=clock.now())
    if found is None:
        return None
    _, person, roles = found
    return principal_of(person, roles)


def _person_out(person: Person, roles: list[PersonRole]) -> PersonOut:
    methods = []
    if person.password_hash:
        methods.append("password")
    if person.totp_confirmed_at is not None:
        methods.append("totp")
    if person.oidc_subject:
        methods.append("oidc")
    return PersonOut(
        username=person.username,
        display_name=person.display_name,
        status=person.status,
        roles=[
            RoleOut(role=r.role, department=r.department_id or None)
            for r in sorted(roles, key=lambda r: (r.role, r.department_id))
        ],
        sign_in=methods,
    )


# --- password checks (decision 0063) -----------------------------------------------

T = TypeVar("T")
# How long an attempt refused for want of a password check is asked to wait: a check
# takes a fifth of a second, so the queue has moved on by then.
BUSY_RETRY_AFTER = 1


class PasswordChecks:
    """The password hashing (argon2id: 64 MiB and a fifth of a second of CPU each) of
    one hub process: at most ``at_once`` at a time, on threads of their own, so that a
    flood of sign-ins neither takes the event loop's default threads (which others
    share) nor the memory of a hash per attempt; and at most ``at_once + waiting``
    attempts admitted at once (:meth:`admit`), beyond which an attempt is refused
    ``429 sign-in-throttled`` at once, before it touches the database. Thread-safe: the
    hubs of one process (tests) share it (:func:`password_checks`).
    """

    def __init__(self, *, at_once: int, waiting: int) -> None:
        self._threads = ThreadPoolExecutor(
            max_workers=at_once, thread_name_prefix="password", initializer=_yield_the_cpu
        )
        self._capacity = at_once + waiting
        self._admitted = 0
        self._lock = threading.Lock()

    @property
    def admitted(self) -> int:
        return self._admitted

    def admit(self) -> "PasswordCheck":
        """An attempt may go on (counted, and its password checked in turn), or is
        refused ``429 sign-in-throttled`` with ``Retry-After``: too many are admitted."""
        with self._lock:
            if self._admitted >= self._capacity:
                raise SignInsBusy(
                    "too many sign-ins are being checked at once;"
                    f" try again in {BUSY_RETRY_AFTER} seconds",
                    headers={"Retry-After": str(BUSY_RETRY_AFTER)},
                )
            self._admitted += 1
        return PasswordCheck(self)

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` on the password threads (a hash to store: not admitted,
        since only a signed-in person or an administrator makes one)."""
        return await asyncio.wrap_future(self._threads.submit(function, *args))

    def submit(self, function: Callable[..., T], *args: object) -> "Future[T]":
        return self._threads.submit(function, *args)


# The password threads' niceness: the CPU goes to the event loop (every other request)
# first; a hash's own threads (argon2id's lanes) inherit it.
PASSWORD_NICENESS = 10


def _yield_the_cpu() -> None:
    """Lower the calling thread's CPU priority (Linux: niceness is per thread); a sign-in
    waits a little longer for a busy CPU, an exchange does not wait for sign-ins."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_NICENESS)


class PasswordCheck:
    """One admitted attempt (a context manager). Its admission ends when the attempt
    does, or, if its check is still running then (the request was cancelled), when the
    check's thread is done with it: a cancelled request frees no thread early."""

    def __init__(self, checks: PasswordChecks) -> None:
        self._checks = checks
        self._running: Future[Any] | None = None

    async def verify(self, stored: str | None, password: str) -> bool:
        return await self.run(credentials.verify_password, stored, password)

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` on the password threads, for this attempt."""
        self._running = running = self._checks.submit(function, *args)
        return await asyncio.wrap_future(running)

    def __enter__(self) -> "PasswordCheck":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        running = self._running
        if running is None or running.done():
            self._checks.release()
        else:
            running.add_done_callback(lambda _: self._checks.release())


_CHECKS: dict[tuple[int, int], PasswordChecks] = {}
_CHECKS_LOCK = threading.Lock()


def password_checks(settings: Settings) -> PasswordChecks:
    """This process's :class:`PasswordChecks` for ``password_checks_at_once`` and
    ``password_checks_waiting``: one per process (per pair of settings), whichever hub
    of the process asks."""
    bound = (settings.password_checks_at_once, settings.password_checks_waiting)
    with _CHECKS_LOCK:
        checks = _CHECKS.get(bound)
        if checks is None:
            checks = _CHECKS[bound] = PasswordChecks(at_once=bound[0], waiting=bound[1])
        return checks


# --- sign-in -----------------------------------------------------------------------


def _failure_key(keys: HubKeys, kind: str, value: str) -> str:
    """A keyed hash: the failures table names no account and no address in clear. (A
    rotation of the derivation root changes every key: the counts start again.)"""
    message = kind.encode() + b"\0" + value.encode()
    key = keys.derived(KeyLabel.SIGN_IN_FAILURES)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# Each source adds at most its own allowance to an account's count, so an account's
# ceiling is reached only by failures from this many sources at least: never by one.
ACCOUNT_SOURCES = 10


@dataclass(frozen=True)
class Attempt:
    """One attempt, counted as a failure before its password is checked, under these
    keys: the account from this source (``pair``), the source (``address``), the
    account (``account``, None when the source had used up its allowance already), and
    for an IPv6 source its /56 and /48 (``networks``)."""

    pair: str
    address: str
    account: str | None
    networks: tuple[str, ...] = ()


def throttle_wait(
    failures: int, last: datetime | None, *, allowance: int, now: datetime, max_delay: int
) -> int:
    """Seconds before the next attempt under one key may be made (0: now).

    ``allowance`` failures are free; past them each attempt waits 2, 4, 8... seconds
    (2^k, k the failures past the allowance, plus one) after the key's latest failure,
    at most ``max_delay``. Only counted attempts (not the ones refused here) move it.
    """
    if failures < allowance or last is None:
        return 0
    delay = min(max_delay, 1 << min(failures - allowance + 1, 30))
    return max(0, math.ceil((aware(last) - now).total_seconds() + delay))


def _attempt_keys(keys: HubKeys, *, username: str, address: str) -> dict[str, str]:
    """The keys of the counts an attempt is under, by kind: the kinds of
    :func:`_allowances`, an IPv6 source's networks (``/56``, ``/48``) only for one."""
    source = source_of(address)
    named = {
        "pair": _failure_key(keys, "account-source", f"{username}\0{source}"),
        "account": _failure_key(keys, "account", username),
        "address": _failure_key(keys, "address", source),
    }
    for prefix, network in ipv6_networks(source):
        named[f"/{prefix}"] = _failure_key(keys, "network", network)
    return named


async def _count_attempt(
    engine: AsyncEngine,
    *,
    keys: HubKeys,
    settings: Settings,
    username: str,
    address: str,
    clock: Clock,
) -> Attempt:
    """Refuse an attempt that must wait (429 with ``Retry-After``), else count it as a
    failure: one serialized transaction, before the password is checked, so that
    concurrent guesses cannot all pass the check before any of them is counted.

    Three counts, each forgotten after ``sign_in_window`` without a failure under it:
    the account from this source (``sign_in_max_failures`` free), the source across
    accounts (``sign_in_address_max_failures`` free), and the account from every
    source (``ACCOUNT_SOURCES`` times ``sign_in_max_failures`` free, to which a source
    adds only its own free failures). Past its allowance a count makes every attempt
    under it wait (:func:`throttle_wait`), up to half the window. So one attacker,
    from one source, only slows their own guesses: the account's owner, from another
    source, signs in; many sources together slow everyone's attempts on the account.
    """
    named = _attempt_keys(keys, username=username, address=address)
    now = clock.now()
    async with write_connection(engine, durable=False) as conn:
        await repository.lock_failures(conn)
        await repository.purge_failures(
            conn, before=now - timedelta(seconds=settings.sign_in_window)
        )
        counts = await repository.failure_counts(conn, keys=list(named.values()))
        wait = _longest_wait(counts, named, settings=settings, now=now)
        if wait == 0:
            attempt = _attempt(counts, named, settings=settings)
            await repository.add_failures(conn, keys=_counted(attempt), at=now)
            return attempt
    raise SignInThrottled(
        f"too many failed sign-ins; try again in {wait} seconds",
        headers={"Retry-After": str(wait)},
    )


def _allowances(settings: Settings) -> dict[str, int]:
    """The free failures of each count; an IPv6 /56 and /48 have 4 and 16 times a
    source's, for all their /64s together (as the OAuth endpoints' budgets, decision
    0051): a /48 holder gets 16 sources' guesses, not 65,536."""
    address = settings.sign_in_address_max_failures
    return {
        "pair": settings.sign_in_max_failures,
        "account": ACCOUNT_SOURCES * settings.sign_in_max_failures,
        "address": address,
        **{f"/{prefix}": address * share for prefix, share in IPV6_NETWORK_SHARES.items()},
    }


def _longest_wait(
    counts: dict[str, tuple[int, datetime]],
    named: dict[str, str],
    *,
    settings: Settings,
    now: datetime,
) -> int:
    """Seconds the attempt must wait: the longest that any of its counts asks."""
    allowances = _allowances(settings)
    return max(
        throttle_wait(
            *counts.get(key, (0, None)),
            allowance=allowances[kind],
            now=now,
            max_delay=settings.sign_in_window // 2,
        )
        for kind, key in named.items()
    )


def _attempt(
    counts: dict[str, tuple[int, datetime]], named: dict[str, str], *, settings: Settings
) -> Attempt:
    """The keys an attempt is counted under: the account's only while the source is
    within its own allowance for the account."""
    within = counts.get(named["pair"], (0, None))[0] < settings.sign_in_max_failures
    return Attempt(
        pair=named["pair"],
        address=named["address"],
        account=named["account"] if within else None,
        networks=tuple(key for kind, key in named.items() if kind.startswith("/")),
    )


def _counted(attempt: Attempt) -> list[str]:
    account = [attempt.account] if attempt.account else []
    return [attempt.pair, attempt.address, *account, *attempt.networks]


async def _admitted(engine: AsyncEngine, attempt: Attempt, settings: Settings) -> "PasswordCheck":
    """A place to check the counted ``attempt``'s password in; when there is none, the
    attempt is not held against its counts (its password was never looked at) and is
    refused ``429`` to try again in a second. Counting comes first, so that a source
    the throttle already refuses never takes a place from others (a hostile review of
    decision 0063: 40 throttled requests in flight from one address filled them)."""
    try:
        return password_checks(settings).admit()
    except SignInsBusy:
        async with write_connection(engine, durable=False) as conn:
            await repository.forget_failures(conn, key=None, take_back=_counted(attempt))
        raise


async def _take_back(conn: AsyncConnection, attempt: Attempt) -> None:
    """A right password: the source's failures for the account are forgotten, and
    this attempt's count is taken back from the source's and the account's."""
    await repository.forget_failures(
        conn, key=attempt.pair, take_back=[k for k in _counted(attempt) if k != attempt.pair]
    )


async def sign_in(
    sessions: async_sessionmaker[AsyncSession],
    *,
    engine: AsyncEngine,
    keys: HubKeys,
    settings: Settings,
    body: SignInIn,
    address: str,
    scope: AuditScope,
    clock: Clock,
) -> SessionOut:
    """Password (and a one-time code when the account has enrolled one) for a session.

    Every attempt is counted as a failure (:func:`_count_attempt`, in a transaction of
    its own so that the refusal does not roll it back) before the password is checked,
    and a success takes its count back; failures are audited. An attempt that must
    wait is answered 429 without looking at the password, and takes no place among the
    password checks. One that finds too many others admitted (:class:`PasswordChecks`)
    is answered 429 too, and its count taken back (:func:`_admitted`).
    The password hash is checked on the password threads (argon2id takes a fifth of a
    second and 64 MiB by design).
    """
    username = body.username.strip().lower()
    attempt = await _count_attempt(
        engine, keys=keys, settings=settings, username=username, address=address, clock=clock
    )
    with await _admitted(engine, attempt, settings) as check:
        async with sessions() as session:
            person = await repository.person_by_username(session, username)
        if person is not None:
            scope.note(person=person.username)
        ok = await check.verify(person.password_hash if person is not None else None, body.password)
    step = _second_factor(person, body.totp, keys=keys, clock=clock) if person is not None else None
    if person is None or not ok or person.status != "active" or step is False:
        raise SignInFailed("the username, password or one-time code is not right")
    async with sessions() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        if isinstance(step, int) and not await repository.spend_totp_step(
            session, person_id=person.id, step=step
        ):  # the same code, used twice at once
            await session.rollback()
            raise SignInFailed("the username, password or one-time code is not right")
        await _take_back(await session.connection(), attempt)
        method = "totp" if step is not None else "password"
        out = await start_session(
            session, person=person, method=method, settings=settings, scope=scope, clock=clock
        )
        await session.commit()
    return out


def _second_factor(
    person: Person, code: str | None, *, keys: HubKeys, clock: Clock
) -> int | bool | None:
    """None: the account has no one-time codes; False: the code is missing or wrong;
    otherwise the code's time step (to be spent once)."""
    if person.totp_confirmed_at is None or person.totp_secret is None:
        return None
    if code is None:
        return False
    secret = _open_totp(keys, person_id=person.id, sealed=person.totp_secret)
    if secret is None:
        log.error("a person's one-time-code secret does not open: an administrator must reset it")
        return False
    step = credentials.totp_match(
        secret, code.strip(), unix_time=clock.time(), after_step=person.totp_last_step
    )
    return False if step is None else step


async def start_session(
    session: AsyncSession,
    *,
    person: Person,
    method: str,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> SessionOut:
    """A new sign-in for ``person`` (after a password, or an OpenID Connect provider)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    row = PersonSession(
        token_hash=token_hash(token),
        person_id=person.id,
        method=method,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.session_lifetime),
    )
    session.add(row)
    await session.flush()
    await scope.record_change(session, person=person.username, reason=method)
    roles = await repository.roles_of(session, person.id)
    return SessionOut(token=token, expires_at=row.expires_at, person=_person_out(person, roles))


async def sign_out(session: AsyncSession, *, token: str, scope: AuditScope, clock: Clock) -> None:
    await repository.revoke_session(session, token_hash=token_hash(token), now=clock.now())
    await scope.record_change(session)


async def me(session: AsyncSession, principal: Principal) -> PersonOut:
    person = await _own_account(session, principal)
    return _person_out(person, await repository.roles_of(session, person.id))


async def _own_account(session: AsyncSession, principal: Principal) -> Person:
    if principal.person_id is None:
        raise Forbidden("the break-glass token is not a person's account")
    person = await session.get(Person, principal.person_id)
    if person is None:
        raise PersonNotFound("the signed-in account no longer exists")
    return person


async def _verify_own_password(
    person: Person,
    password: str,
    *,
    engine: AsyncEngine,
    keys: HubKeys,
    settings: Settings,
    address: str,
    clock: Clock,
) -> Attempt:
    """A signed-in person proves they know their password, under the sign-in throttle.

    Exactly as :func:`sign_in`, under the same counts: the attempt is counted as a
    failure in a serialized transaction of its own before the password is checked; one
    that must wait is answered 429 without looking at it. A stolen session is
    therefore no way to guess the password without limit. Returns the attempt, for the
    caller to take back in the transaction that makes its change.
    """
    if person.password_hash is None:
        raise PersonConflict("this account has no password; it signs in with OpenID Connect")
    attempt = await _count_attempt(
        engine,
        keys=keys,
        settings=settings,
        username=person.username,
        address=address,
        clock=clock,
    )
    with await _admitted(engine, attempt, settings) as check:
        if not await check.verify(person.password_hash, password):
            raise SignInFailed("the password is not right")
    return attempt


async def change_password(
    sessions: async_sessionmaker[AsyncSession],
    *,
    engine: AsyncEngine,
    keys: HubKeys,
    settings: Settings,
    principal: Principal,
    token: str,
    body: PasswordIn,
    address: str,
    scope: AuditScope,
    clock: Clock,
) -> None:
    """A new password, given the current one (throttled as a sign-in). Every other
    session of the person ends: whoever else held one must sign in with the new
    password. The session ``token`` that made the change stays."""
    async with sessions() as session:
        person = await _own_account(session, principal)
    # A weak new password is refused first: it is no guess of the current one.
    _require_good_password(body.new_password, username=person.username)
    attempt = await _verify_own_password(
        person,
        body.current_password,
        engine=engine,
        keys=keys,
        settings=settings,
        address=address,
        clock=clock,
    )
    new_hash = await password_checks(settings).run(credentials.hash_password, body.new_password)
    async with sessions() as session:
        connection = await session.connection(execution_options={WRITE_OPTION: True})
        verified, person = person.password_hash, await _own_account(session, principal)
        if person.password_hash != verified:  # e.g. an administrator's reset, meanwhile
            raise PersonConflict("the password was changed meanwhile; sign in again")
        person.password_hash = new_hash
        await _take_back(connection, attempt)
        await repository.revoke_sessions(
            session, person_id=person.id, now=clock.now(), keep=token_hash(token)
        )
        await session.flush()
        await scope.record_change(session)
        await session.commit()


def _refuse_if_confirmed(person: Person) -> None:
    if person.totp_confirmed_at is not None:
        raise PersonConflict(
            "one-time codes are already set up; an administrator can reset them (reset_totp)"
        )


async def enrol_totp(
    sessions: async_sessionmaker[AsyncSession],
    *,
    engine: AsyncEngine,
    keys: HubKeys,
    settings: Settings,
    principal: Principal,
    body: TotpEnrolIn,
    address: str,
    scope: AuditScope,
    clock: Clock,
) -> TotpEnrolment:
    """A new secret for an authenticator app; it counts once a code is confirmed.

    It needs the password (throttled as a sign-in), not only a session: whoever holds
    a stolen session must not be able to put their own authenticator on the account.
    """
    async with sessions() as session:
        person = await _own_account(session, principal)
    _refuse_if_confirmed(person)
    attempt = await _verify_own_password(
        person,
        body.password,
        engine=engine,
        keys=keys,
        settings=settings,
        address=address,
        clock=clock,
    )
    secret = credentials.new_totp_secret()
    async with sessions() as session:
        connection = await session.connection(execution_options={WRITE_OPTION: True})
        person = await _own_account(session, principal)
        _refuse_if_confirmed(person)  # confirmed by another request meanwhile
        person.totp_secret = _seal_totp(keys, secret, person_id=person.id, root=keys.root())
        await _take_back(connection, attempt)
        await session.flush()
        await scope.record_change(session)
        await session.commit()
    uri = credentials.totp_uri(secret, username=person.username, issuer="Onceonly")
    return TotpEnrolment(secret=secret, otpauth_uri=uri)


async def confirm_totp(
    session: AsyncSession,
    *,
    principal: Principal,
    code: str,
    keys: HubKeys,
    scope: AuditScope,
    clock: Clock,
) -> PersonOut:
    person = await _own_account(session, principal)
    if person.totp_secret is None or person.totp_confirmed_at is not None:
        raise PersonConflict("there is no one-time-code enrolment waiting for confirmation")
    secret = _open_totp(keys, person_id=person.id, sealed=person.totp_secret)
    if secret is None:
        raise PersonConflict("the enrolment no longer opens (the hub's keys changed); enrol again")
    step = credentials.totp_match(secret, code.strip(), unix_time=clock.time(), after_step=None)
    if step is None:
        raise InvalidRequest("the one-time code is not right; check the device's clock")
    person.totp_confirmed_at, person.totp_last_step = clock.now(), step
    await session.flush()
    await scope.record_change(session)
    return _person_out(person, await repository.roles_of(session, person.id))


# --- sealed TOTP secrets and the derivation root ----------------------------------------


def _seal_totp(keys: HubKeys, secret: str, *, person_id: str, root: Root) -> str:
    key = keys.derived(KeyLabel.TOTP_SEAL, root=root)
    return credentials.seal(key, secret, root_id=root.id, person_id=person_id)


def _open_totp(keys: HubKeys, *, person_id: str, sealed: str) -> str | None:
    """The secret, under the root that ``sealed`` names (the current or the previous) or,
    sealed by an earlier version, under the legacy key; None if it does not open."""
    root_id = credentials.sealed_root(sealed)
    try:
        if root_id is None:
            legacy = keys.legacy_totp_seal_key()
            return credentials.unseal_legacy(legacy, sealed, person_id=person_id)
        key = keys.derived(KeyLabel.TOTP_SEAL, root=keys.root(root_id))
        return credentials.unseal(key, sealed, person_id=person_id)
    except (UnknownRoot, InvalidTag, ValueError):
        return None


@dataclass(frozen=True)
class Resealed:
    """What :func:`reseal_totp_secrets` did: how many secrets it sealed under the current
    root ``root_id``, and whose secrets do not open (they need a reset)."""

    root_id: str
    count: int
    unopened: list[str]


async def reseal_totp_secrets(engine: AsyncEngine, *, keys: HubKeys) -> Resealed:
    """Seal under the current derivation root every TOTP secret that it did not seal
    (the previous root did, or the legacy key of versions before decision 0017), in one
    transaction. Idempotent: the hub runs it at every start-up, ``onceonly keys
    rotate-derivation`` around its rotation. A secret changed meanwhile (a new
    enrolment) is left as the change made it; one that does not open is left, named."""
    root = keys.root()
    count, unopened = 0, []
    async with write_connection(engine) as conn:
        stale = await repository.totp_secrets_not_sealed_with(
            conn, prefix=credentials.sealed_prefix(root.id)
        )
        for person_id, username, sealed in stale:
            secret = _open_totp(keys, person_id=person_id, sealed=sealed)
            if secret is None:
                unopened.append(username)
                continue
            new = _seal_totp(keys, secret, person_id=person_id, root=root)
            count += await repository.replace_totp_secret(
                conn, person_id=person_id, old=sealed, new=new
            )
    if count:
        log.info("one-time-code secrets re-sealed", extra={"count": count, "root": root.id})
    if unopened:
        log.error(
            "one-time-code secrets that do not open: an administrator must reset them",
            extra={"count": len(unopened)},
        )
    return Resealed(root_id=root.id, count=count, unopened=unopened)


async def rotate_derivation(engine: AsyncEngine, *, keys: HubKeys) -> Resealed:
    """A new derivation root (docs/decisions/0017), and every TOTP secret under it.

    First what an earlier, interrupted rotation left is finished (every secret sealed
    under the current root); then the root file is rotated (the current root kept as
    the previous one); then every secret is re-sealed under the new root, in one
    transaction. Until that commits every secret opens under the current or previous
    root, so a crash anywhere is recovered by running this again.
    """
    await reseal_totp_secrets(engine, keys=keys)
    keys.rotate_derivation()
    return await reseal_totp_secrets(engine, keys=keys)


# --- administration ----------------------------------------------------------------


def _require_good_password(password: str, *, username: str) -> None:
    problem = credentials.password_problem(password, username=username)
    if problem is not None:
        raise InvalidRequest(problem)


def _check_roles(roles: list[RoleIn]) -> None:
    """Roles kept apart: administrator, auditor and steward are never held together."""
    kinds = {role.role for role in roles}
    if len(kinds) > 1:
        raise InvalidRequest(
            "roles are kept apart: a person is an administrator, an auditor or a steward,"
            f" not several ({', '.join(sorted(kinds))})"
        )


async def _require_free_subject(
    session: AsyncSession, subject: str, *, person: Person | None, settings: Settings
) -> None:
    """An (issuer, subject) pair signs in one account: linking it to a second one is a
    conflict, told without naming the account that holds it."""
    issuer = settings.oidc_issuer
    if issuer is None:
        raise InvalidRequest("the hub has no OpenID Connect provider configured (oidc_issuer)")
    holder = await repository.person_by_oidc(session, issuer=issuer, subject=subject)
    if holder is not None and (person is None or holder.id != person.id):
        raise OidcSubjectTaken("this OpenID Connect subject is already linked to another account")


async def put_person(
    session: AsyncSession,
    *,
    principal: Principal,
    username: str,
    body: PersonIn,
    settings: Settings,
    scope: AuditScope,
    clock: Clock,
) -> PersonOut:
    """Create or change an account (administrators). What the body leaves out stays as
    it is; roles given replace the old ones."""
    scope.note(target=username)
    _check_roles(body.roles or [])
    for role in body.roles or []:
        if role.department is not None:
            await registry.department(session, role.department)
    person = await repository.person_by_username(session, username)
    if person is not None and person.id == principal.person_id:
        raise Forbidden("administrators do not change their own account; another one does")
    if body.oidc_subject is not None:
        await _require_free_subject(session, body.oidc_subject, person=person, settings=settings)
    # A new credential, set by an administrator, ends whatever sessions the old ones
    # opened (a password reset after a leak, a lost or stolen device, an account linked
    # to another OpenID Connect subject).
    credentials_reset = person is not None and (
        body.password is not None
        or body.reset_totp
        or (body.oidc_subject is not None and body.oidc_subject != person.oidc_subject)
    )
    if person is None:
        if username in RESERVED_USERNAMES:
            raise InvalidRequest(
                f"the username {username!r} is reserved: the hub records it as who acted"
                " for its own decisions or for the break-glass token"
            )
        if body.password is None and body.oidc_subject is None:
            raise InvalidRequest("a new account needs a password or an OpenID Connect subject")
        person = Person(username=username)
        session.add(person)
    if body.password is not None:
        _require_good_password(body.password, username=username)
        person.password_hash = await password_checks(settings).run(
            credentials.hash_password, body.password
        )
    if body.oidc_subject is not None and settings.oidc_issuer is not None:
        person.oidc_issuer, person.oidc_subject = settings.oidc_issuer, body.oidc_subject
    if body.reset_totp:
        person.totp_secret = person.totp_confirmed_at = person.totp_last_step = None
    person.display_name = body.display_name or person.display_name
    person.status = body.status or person.status or "active"
    try:
        await session.flush()
    except IntegrityError:  # the database's own guard (uq_people_oidc_identity, username)
        if body.oidc_subject is None:
            raise
        raise OidcSubjectTaken(
            "this OpenID Connect subject is already linked to another account, or this"
            " account was changed at the same moment"
        ) from None
    if body.roles is None:
        roles = await repository.roles_of(session, person.id)
    else:
        roles = [
            PersonRole(person_id=person.id, role=r.role, department_id=r.department or "")
            for r in body.roles
        ]
        await repository.replace_roles(session, person.id, roles)
    if person.status != "active" or credentials_reset:
        await repository.revoke_sessions(session, person_id=person.id, now=clock.now())
    await session.flush()
    await scope.record_change(session)
    return _person_out(person, roles)


async def list_people(session: AsyncSession) -> PersonList:
    people = await repository.list_people(session)
    roles = await repository.roles_of_many(session, [p.id for p in people])
    by_person: dict[str, list[PersonRole]] = {}
    for role in roles:
        by_person.setdefault(role.person_id, []).append(role)
    return PersonList(people=[_person_out(p, by_person.get(p.id, [])) for p in people])


async def get_person(session: AsyncSession, username: str) -> PersonOut:
    person = await repository.person_by_username(session, username)
    if person is None:
        raise PersonNotFound(f"there is no account {username!r}")
    return _person_out(person, await repository.roles_of(session, person.id))
