"""Route dependencies for people: who is signed in, and with which role.

A person presents ``Authorization: Bearer oop_…`` (from ``POST /v1/people/sign-in``
or the OpenID Connect sign-in). The break-glass token is accepted where
``break_glass_token`` is on. Machine clients' access tokens are never accepted here:
a machine never gets a person's powers.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.service import AuditLog, AuditScope
from onceonly.hub.dependencies import HubDep, SessionDep
from onceonly.hub.people import service
from onceonly.hub.people.exceptions import NotSignedIn
from onceonly.hub.people.principal import Forbidden, Principal

# The action of a route that only reads: written when it is refused, and when the
# break-glass token's read is answered (every use of that token is an entry).
_REFUSED_READ = "route.refused"
_BREAK_GLASS_READ = "route.read"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="onceonly-people"'}
# RFC 6750 §3.1: a token that was sent and is not accepted is invalid_token (a request
# without one gets the bare challenge).
_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer realm="onceonly-people", error="invalid_token"'}


def bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _audit_scope(request: Request, log: AuditLog) -> AuditScope:
    """The request's audit scope. Routes that only read have none of their own; they get
    one that writes an entry only if the request is refused (every refusal is audited):
    action ``route.refused``, the route in ``target`` (and, for the break-glass token,
    one when it is answered: :func:`_principal`)."""
    audit: AuditScope | None = getattr(request.state, "audit", None)
    if audit is None:
        route = request.scope.get("route")
        template = getattr(route, "path", request.url.path)
        audit = open_audit_scope(request, _REFUSED_READ, log=log)
        audit.note(target=f"{request.method} {template}")
    return audit


async def current_principal(request: Request, session: SessionDep, hub: HubDep) -> Principal:
    """The signed-in person (or the break-glass token) of a people's route."""
    audit = _audit_scope(request, hub.audit_log)
    token = bearer(request)
    if token is None:
        raise NotSignedIn("sign in first (onceonly login)", headers=_CHALLENGE)
    if hub.keys.is_admin_token(token):
        if not hub.settings.break_glass_token:
            raise NotSignedIn(
                "the break-glass token is turned off on this hub (break_glass_token = false):"
                " sign in as a person (onceonly login)",
                headers=_INVALID_TOKEN,
            )
        principal = Principal.emergency()
        audit.note(client="administrator", person=principal.name)
        return principal
    principal_or_none = await service.principal_for_token(session, token, clock=hub.clock)
    if principal_or_none is None:
        raise NotSignedIn(
            "the sign-in is not valid: it expired, was ended, or the account is disabled",
            headers=_INVALID_TOKEN,
        )
    audit.note(person=principal_or_none.name)
    # Only read: the session's connection goes back to the pool now, so that a route
    # that then opens a connection of its own (the efficiency report, a write session)
    # never holds one while it waits for another (decision 0056's Later note). The route
    # may use the session again: it takes a connection then.
    await session.commit()
    return principal_or_none


async def _principal(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> AsyncIterator[Principal]:
    """The route's principal; a read the break-glass token made is written once answered.

    Every use of the break-glass token is an audit entry (decision 0014, 0090). A route
    with an action of its own writes it, answered or refused; one that only reads has
    ``route.refused``, written only when refused: its answer to the token is written
    here as ``route.read`` (the route in ``target``, ``person: "break-glass"``), after
    the route has returned and before the answer is sent (``scope="function"``), so no
    read is answered unwritten. A refusal raises through the ``yield`` and is written by
    the error handler as ``route.refused``, as anyone's."""
    yield principal
    audit: AuditScope = request.state.audit
    if principal.break_glass and audit.action == _REFUSED_READ and not audit.recorded:
        audit.action = _BREAK_GLASS_READ
        await audit.record_success()


async def _administrator(principal: "PrincipalDep") -> Principal:
    principal.require_administrator()
    return principal


async def _auditor(principal: "PrincipalDep") -> Principal:
    principal.require_auditor()
    return principal


async def _steward(principal: "PrincipalDep") -> Principal:
    """A steward of some department (which one is the object-level check, later)."""
    if not (principal.break_glass or principal.stewards):
        raise Forbidden(f"{principal.name!r} is not a steward of any department")
    return principal


async def _break_glass(principal: "PrincipalDep") -> Principal:
    if not principal.break_glass:
        raise Forbidden("only the break-glass token may do this; people use access requests")
    return principal


PrincipalDep = Annotated[Principal, Depends(_principal, scope="function")]
AdministratorDep = Annotated[Principal, Depends(_administrator)]
AuditorDep = Annotated[Principal, Depends(_auditor)]
# Role checks that come before the body is read: a caller without the role learns
# nothing about how its body would have been judged.
StewardDep = Annotated[Principal, Depends(_steward)]
BreakGlassDep = Annotated[Principal, Depends(_break_glass)]
