"""The citizen view: which department read which of my records, when, and why.

It shows successful record accesses only, with the department's and item's
names and the declared purpose; never clients, grants, request ids or digests.
The query itself is an audit entry, so that looking is as visible as reading.

Two ways in: a configured citizen portal asks for a person (:func:`access_log`, the
API), or the person signs in to the console's page with the citizens' OpenID Connect
provider (:func:`start_session`, :func:`own_accesses`; decision 0032). The console's
sign-in is a sealed cookie that holds only the identifier's pseudonym.
"""

import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.adapters import subject_problem
from onceonly.hub.access.exceptions import PurposesUnavailable, UnknownPurpose
from onceonly.hub.access.purposes import purposes_for
from onceonly.hub.audit import notes
from onceonly.hub.audit.service import AuditScope, Inclusion, inclusion_in_latest_checkpoint
from onceonly.hub.auth.service import Caller
from onceonly.hub.citizen import repository
from onceonly.hub.citizen.exceptions import CitizenIdentifierMissing, NotCitizenPortal
from onceonly.hub.citizen.schemas import Access, AccessLog, AccessLogQuery
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys, KeyLabel
from onceonly.hub.kit import sealing

_MAX_SEALED = 1024


async def access_log(
    session: AsyncSession,
    *,
    caller: Caller,
    query: AccessLogQuery,
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope,
) -> AccessLog:
    if caller.client_id not in settings.citizen_portal_clients:
        raise NotCitizenPortal(f"client {caller.client_id!r} is not a configured citizen portal")
    rows = await _accesses(
        session, pseudonym=keys.pseudonym(query.subject), limit=query.limit, scope=scope
    )
    return AccessLog(accesses=[_access(row) for row in rows])


async def _accesses(
    session: AsyncSession, *, pseudonym: str, limit: int, scope: AuditScope
) -> list[repository.AccessRow]:
    """The subject's successful accesses, newest first; the look is audited."""
    scope.note(subject=pseudonym)
    rows = await repository.accesses(session, pseudonym=pseudonym, limit=limit)
    await scope.record_success()
    return rows


def _access(row: repository.AccessRow) -> Access:
    return Access(
        index=row.index,
        time=row.time,
        department=row.department,
        department_name=row.department_name or row.department,
        item=row.item,
        item_title=row.item_title or row.item,
        purpose=str(json.loads(row.leaf).get("purpose", "")),
    )


# --- the person's own page in the console (decision 0032) ----------------------------


@dataclass(frozen=True)
class CitizenSession:
    """A citizen's sign-in: the pseudonym of their identifier, never the identifier."""

    pseudonym: str
    expires: int

    def seal(self, keys: HubKeys) -> str:
        payload = json.dumps({"sub": self.pseudonym, "exp": self.expires}).encode()
        label = KeyLabel.CITIZEN_SESSION
        return sealing.seal(keys.derived(label), payload, aad=label.value)


def identifier_in(claims: dict[str, Any], *, claim: str) -> str:
    """The person's identifier: the configured claim of a verified ID token."""
    identifier = claims.get(claim)
    if not isinstance(identifier, str) or not 1 <= len(identifier) <= 256:
        raise CitizenIdentifierMissing(
            f"the ID token's {claim!r} claim is not an identifier (1 to 256 characters)"
        )
    # The subject rule (decision 0072): a spelling the record query refuses names no one
    # in the log, and the page would say that nobody used the person's data.
    problem = subject_problem(identifier)
    if problem is not None:
        raise CitizenIdentifierMissing(
            f"the ID token's {claim!r} claim is not an identifier the hub takes: {problem}"
        )
    return identifier


def start_session(*, identifier: str, keys: HubKeys, settings: Settings, now: int) -> str:
    """The sealed sign-in of the person with ``identifier`` (from a verified ID token)."""
    session = CitizenSession(
        pseudonym=keys.pseudonym(identifier), expires=now + settings.citizen_session_lifetime
    )
    return session.seal(keys)


def session_of(sealed: str | None, *, keys: HubKeys, now: int) -> CitizenSession | None:
    """The live sign-in a cookie holds, or None (missing, forged, of another key, expired)."""
    if not sealed or len(sealed) > _MAX_SEALED:
        return None
    label = KeyLabel.CITIZEN_SESSION
    try:
        payload = json.loads(sealing.unseal(keys.derived(label), sealed, aad=label.value))
        session = CitizenSession(pseudonym=str(payload["sub"]), expires=int(payload["exp"]))
    except (ValueError, InvalidTag, KeyError, TypeError):
        return None
    return session if session.expires > now else None


def session_binding(session: CitizenSession) -> str:
    """What a citizen's forms are bound to (their CSRF tokens): the sealed session's
    content, which only the hub can read."""
    return f"citizen:{session.pseudonym}:{session.expires}"


@dataclass(frozen=True)
class SeenAccess:
    """One access as the person's page shows it."""

    access: Access
    purpose_title: str  # the purpose list's title, or the code if the list lacks it
    inclusion: Inclusion


async def own_accesses(
    session: AsyncSession,
    *,
    citizen: CitizenSession,
    settings: Settings,
    verifier: notes.Verifier,
    scope: AuditScope,
    limit: int = 100,
) -> list[SeenAccess]:
    """The signed-in person's successful accesses, newest first, each with the purpose
    in words and whether the latest signed checkpoint holds its entry."""
    rows = await _accesses(session, pseudonym=citizen.pseudonym, limit=limit, scope=scope)
    proofs = await inclusion_in_latest_checkpoint(
        session, entries=[(row.index, row.leaf) for row in rows], verifier=verifier
    )
    titles = _purpose_titles(settings)
    found = []
    for row in rows:
        access = _access(row)
        title = titles.get(access.purpose, access.purpose)
        found.append(SeenAccess(access=access, purpose_title=title, inclusion=proofs[row.index]))
    return found


def _purpose_titles(settings: Settings) -> dict[str, str]:
    try:
        return {purpose.code: purpose.title for purpose in purposes_for(settings).purposes}
    except (PurposesUnavailable, UnknownPurpose):
        return {}
