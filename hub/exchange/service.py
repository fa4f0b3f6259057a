"""One record exchange, top to bottom: auth → access → registry → exchange → audit.

Every step that refuses raises a HubError; the error handler writes the refusal to
the audit log with all that the steps had noted so far.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from onceonly.hub.access.minimization import minimize
from onceonly.hub.audit import leaves
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth.callers import spend_proof
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.auth.service import Caller
from onceonly.hub.config import Settings
from onceonly.hub.exchange import owner, policy, repository
from onceonly.hub.exchange.exceptions import OwnerInvalidResponse, OwnerUnavailable
from onceonly.hub.exchange.request_tokens import mint_request_token
from onceonly.hub.exchange.schemas import RecordAnswer, RecordQuery, RecordReceiptOut
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit import base64url
from onceonly.hub.kit.base_urls import call_problem
from onceonly.hub.kit.clock import Clock
from onceonly.hub.registry import projection, validation
from onceonly.hub.registry.exceptions import UnknownVersion

log = logging.getLogger("onceonly.exchange")


@dataclass(frozen=True)
class ExchangeContext:
    """What the exchange needs from the process: settings, keys, database, outbound client."""

    settings: Settings
    keys: HubKeys
    http: httpx.AsyncClient
    engine: AsyncEngine
    jtis: JtiRegister


@dataclass(frozen=True)
class ExchangeOutcome:
    answer: RecordAnswer
    deprecated: str | None  # RFC 9745 Deprecation header value, if the item is deprecated


async def query_record(
    *,
    caller: Caller,
    item_id: str,
    query: RecordQuery,
    context: ExchangeContext,
    scope: AuditScope,
    clock: Clock,
) -> ExchangeOutcome:
    pseudonym = context.keys.pseudonym(query.subject)
    # Sealed until the hub decides to call the owner: the caller reads its entry, and a
    # refusal must not turn any identifier it sends into a pseudonym (decision 0069).
    scope.note(item=item_id, sealed_subject=pseudonym, purpose=query.purpose)
    kept_as = repository.facts_key(
        item_id=item_id,
        client_id=caller.client_id,
        consumer=caller.department,
        purpose=query.purpose,
        token_jti=caller.token_jti,
    )
    cache = repository.facts_cache(context.engine)
    found, proof_fresh, read = await _facts_and_proof(
        kept_as, caller=caller, cache=cache, context=context, clock=clock
    )
    if found.item is not None:
        scope.note(version=found.item.version, grant=found.item.grant_id)
    facts = policy.admit(
        found, caller=caller, proof_fresh=proof_fresh, item_id=item_id, purpose=query.purpose
    )
    # Kept only when admitted (a refused caller cannot fill the cache), and only for a
    # caller with a proof to spend: its spend is what tells whether they still hold.
    if read and caller.proof_key is not None:
        cache.keep(kept_as, found)
    wanted = await _wanted_version(facts, query=query, context=context, scope=scope)
    record = await _ask_owner(
        facts,
        caller=caller,
        query=query,
        pseudonym=pseudonym,
        context=context,
        scope=scope,
        clock=clock,
    )
    _check(record, schema=facts.schema, fingerprint=facts.fingerprint, version=facts.version)
    served = (facts.version, facts.schema, facts.fingerprint)
    if wanted is not None:
        served = wanted
        version, schema, fingerprint = wanted
        # as the grant will cut it when it is the grant's version (helper-166: the
        # lenient reading kept what a branch closes, and the check then refused it)
        strict = version == facts.grant_version
        record = _projected(record, schema, strict=strict, version=version)
        _check(record, schema=schema, fingerprint=fingerprint, version=version)
    if facts.grant_version is not None:
        record = await _as_granted(
            record, version=facts.grant_version, facts=facts, served=served, context=context
        )
    delivered = minimize(record, facts.grant_fields)
    key = leaves.new_commitment_key()  # the consumer's alone: the hub forgets it
    try:
        commitment = leaves.commitment(key, delivered)
    except ValueError:  # RFC 8785 has no form for it: a lone surrogate (helper-147)
        raise OwnerInvalidResponse(
            "the owner's record holds a string that is not text (a lone surrogate)"
        ) from None
    receipt = await scope.record_success(fields=sorted(delivered), commitment=commitment)
    answer = RecordAnswer(
        item=item_id,
        version=served[0],
        record=delivered,
        receipt=RecordReceiptOut(
            **receipt.as_json(), commitment=commitment, commitment_key=base64url.encode(key)
        ),
    )
    return ExchangeOutcome(answer=answer, deprecated=deprecation(facts, clock=clock))


async def _facts_and_proof(
    key: repository.FactsKey,
    *,
    caller: Caller,
    cache: repository.FactsCache,
    context: ExchangeContext,
    clock: Clock,
) -> tuple[repository.QueryFacts, bool, bool]:
    """The query's facts, whether its DPoP proof was fresh (and is now spent), and
    whether the facts were read now (True) or kept (False).

    With a proof to spend, facts this process kept for the same key are used again
    when the generation that the spend's transaction read is theirs (decision 0038):
    the query then costs no read. Otherwise the read and the spend go together.

    The spend does not wait for its own flush to disk: every answer of a record query,
    a refusal included, waits for its audit entry's durable commit, which flushes the
    spend with it (decision 0043); so a read that fails is raised only after the spend
    has settled."""
    kept = cache.get(key, now=clock.now())
    if kept is not None and caller.proof_key is not None and caller.proof_expires is not None:
        spent = await context.jtis.spend_reading_generation(
            caller.proof_key, expires_at=caller.proof_expires, durable=False
        )
        if cache.holds(kept, generation=spent.generation):
            return kept, spent.fresh, False
        return await _read_facts(key, context=context, clock=clock), spent.fresh, True
    found, proof_fresh = await asyncio.gather(  # one read and the proof's jti, together
        _read_facts(key, context=context, clock=clock),
        spend_proof(context.jtis, caller, durable=False),
        return_exceptions=True,  # a failed read is refused only once the spend settled
    )
    if isinstance(found, BaseException):
        raise found
    if isinstance(proof_fresh, BaseException):
        raise proof_fresh
    return found, proof_fresh, True


async def _read_facts(
    key: repository.FactsKey, *, context: ExchangeContext, clock: Clock
) -> repository.QueryFacts:
    item_id, client_id, consumer, purpose, token_jti = key
    found = await repository.query_facts(
        context.engine,
        item_id=item_id,
        client_id=client_id,
        consumer=consumer,
        purpose=purpose,
        token_jti=token_jti,
        now=clock.now(),
    )
    return found


def deprecation(facts: repository.ExchangeFacts, *, clock: Clock) -> str | None:
    """RFC 9745 §2.1: ``@<epoch seconds>`` (a structured-field date) of the deprecation."""
    if facts.lifecycle != "deprecated":
        return None
    moment = facts.deprecated_at or clock.now()  # deprecated before the date was recorded
    return f"@{int(moment.timestamp())}"


async def _wanted_version(
    facts: repository.ExchangeFacts,
    *,
    query: RecordQuery,
    context: ExchangeContext,
    scope: AuditScope,
) -> tuple[int, dict[str, Any], str] | None:
    """An earlier version the consumer asked for: (version, schema, fingerprint)."""
    if query.version is None or query.version == facts.version:
        return None
    if query.version > facts.version:
        raise UnknownVersion(f"data item {facts.item_id!r} has no version {query.version}")
    found = await repository.version_schema(
        context.engine, item_id=facts.item_id, version=query.version
    )
    if found is None:
        raise UnknownVersion(f"data item {facts.item_id!r} has no version {query.version}")
    scope.note(version=query.version)
    return query.version, found[0], found[1]


async def _as_granted(
    record: dict[str, Any],
    *,
    version: int,
    facts: repository.ExchangeFacts,
    served: tuple[int, dict[str, Any], str],
    context: ExchangeContext,
) -> dict[str, Any]:
    """The record cut down to what the version the grant was decided on describes, so
    that a later version never widens a grant, not even inside a granted field (a new
    nested member, personal or not, needs a new grant), and so that what a grant
    delivers does not depend on whether a later version exists (decision 0059).

    When the record was checked against that very version (``served``: the version,
    schema and fingerprint it was validated against), a projection that can change
    nothing under the granted fields is skipped: that is known once per version and
    fields (:func:`projection.strict_projection_is_identity`), so items whose objects
    are closed pay nothing per query.

    What projection keeps is then validated against that version: projection does not
    read every keyword (``if``/``then``, ``not``, ``dependentSchemas``,
    ``propertyNames``, ``contains``), and a field that still fails the version is not
    delivered (decision 0087's follow-up)."""
    if version == served[0]:
        schema, fingerprint = served[1], served[2]
        if projection.strict_projection_is_identity(
            schema, fingerprint=fingerprint, fields=facts.grant_fields
        ):
            return record
    elif version == facts.version:
        schema, fingerprint = facts.schema, facts.fingerprint
    else:
        found = await repository.version_schema(
            context.engine, item_id=facts.item_id, version=version
        )
        if found is None:  # versions are never deleted; a broken database is a 500
            raise RuntimeError(f"item {facts.item_id} has no version {version}")
        schema, fingerprint = found
    projected = _projected(record, schema, strict=True, version=version)
    validator = validation.validator_for(schema, fingerprint)
    try:
        failing = validation.failing_fields(validator, projected)
    except ValueError:  # a string that is not text (a lone surrogate): helper-158
        raise OwnerInvalidResponse("the owner's record holds a string that is not text") from None
    if failing is None:
        raise OwnerInvalidResponse(
            f"the owner's record does not fit version {version}, the grant's, even cut down"
            " to what it describes"
        )
    if failing:
        log.warning(
            "fields of %s that fail version %d, the grant's, are not delivered: %s",
            facts.item_id,
            version,
            ", ".join(sorted(failing)),
        )
    return {name: value for name, value in projected.items() if name not in failing}


def _projected(
    record: dict[str, Any], schema: dict[str, Any], *, strict: bool, version: int
) -> dict[str, Any]:
    """``projection.project_to_version``; a record it would take too long to cut down
    (a schema and record made to hold the event loop) is not delivered: 502."""
    try:
        return projection.project_to_version(record, schema, strict=strict)
    except projection.TooCostly:
        raise OwnerInvalidResponse(
            f"the owner's record is too large to cut down to version {version} in time"
        ) from None


def _check(
    record: dict[str, Any], *, schema: dict[str, Any], fingerprint: str, version: int
) -> None:
    validator = validation.validator_for(schema, fingerprint)
    try:
        errors = validation.record_errors(validator, record, limit=1, in_schema=True)
    except ValueError:  # a member name that is not text (a lone surrogate): no pointer
        errors = ["/: a member's name is not text (a lone surrogate)"]
    if errors:
        raise OwnerInvalidResponse(
            f"the owner's record does not match version {version}, at the schema's {errors[0]}"
        )


async def _ask_owner(
    facts: repository.ExchangeFacts,
    *,
    caller: Caller,
    query: RecordQuery,
    pseudonym: str,
    context: ExchangeContext,
    scope: AuditScope,
    clock: Clock,
) -> dict[str, object]:
    if not facts.adapter_url:
        raise OwnerUnavailable("the owner department has no adapter registered")
    settings = context.settings
    if call_problem(
        facts.adapter_url,
        production=settings.is_production,
        loopback_allowed=settings.adapters_on_loopback,
    ):  # stored before registration refused it (decision 0060)
        raise OwnerUnavailable("the owner department's adapter URL is not one this hub calls")
    # from here the owner is party to the query, and the consumer was admitted to ask
    scope.note(owner=facts.owner, subject=pseudonym)
    token = mint_request_token(
        key=context.keys.signing,
        issuer=context.settings.issuer,
        owner=facts.owner,
        consumer=caller.department,
        item=facts.item_id,
        version=facts.version,
        purpose=query.purpose,
        subject=query.subject,
        subject_pseudonym=pseudonym,  # as the entry keeps it
        request_id=scope.request_id,
        now=int(clock.time()),
        lifetime=context.settings.request_token_lifetime,
    )
    call = owner.OwnerCall(
        adapter_url=facts.adapter_url,
        item=facts.item_id,
        token=token,
        request_id=scope.request_id,
        body={
            "subject": query.subject,
            "purpose": query.purpose,
            "consumer": caller.department,
            "version": facts.version,
        },
    )
    started = clock.monotonic()
    try:
        return await owner.fetch_record(context.http, call, timeout=context.settings.owner_timeout)
    finally:  # answered or failed, the owner's time is in the entry (the efficiency report)
        scope.note(owner_ms=round((clock.monotonic() - started) * 1000))
