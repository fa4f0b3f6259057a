"""The auditors' log search and an entry in plain words, decided without I/O.

:class:`LogSearch` is the search form as POSTed (the person's identifier never goes in
a URL: docs/console.md, "Auditors' pages"); :meth:`LogSearch.entry_filter` makes the
API's filter from it (``audit.repository.EntryFilter``), the identifier turned into
its pseudonym by the caller's ``pseudonym`` (``HubKeys.pseudonym``, as the API's
``/v1/audit/entries`` does). The limits are the API's (``audit.dependencies``).
"""

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidTag

from onceonly.adapters import subject_problem
from onceonly.hub.audit.repository import EntryFilter
from onceonly.hub.console.steward_views import when
from onceonly.hub.console.views import N_, FieldError
from onceonly.hub.keys import KeyLabel
from onceonly.hub.kit import sealing

OUTCOMES: Final = {"ok": N_("Done"), "refused": N_("Refused"), "failed": N_("Failed")}
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CODE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_LIMITS: Final = {"subject": 256, "department": 64, "item": 128, "action": 64}
MAX_CURSOR: Final = 2**53 - 1
_MOMENT_EXPECTED: Final = N_(
    "Enter a date like 2026-11-05, or a time with its offset like 2026-11-05T14:00:00Z"
)
_SUBJECT_SPELLING: Final = N_(
    "Enter the identifier as it was issued, with the digits 0 to 9 and no invisible characters"
)


def _moment(text: str) -> datetime | None:
    """``2026-11-05`` (midnight UTC) or an RFC 3339 time with its offset; None if neither."""
    try:
        if _DATE.fullmatch(text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if "T" not in text.upper() or moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class LogSearch:
    """The search form's fields, as typed ("" = not given)."""

    subject: str = ""
    department: str = ""
    item: str = ""
    action: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""

    @classmethod
    def of(cls, form: Mapping[str, str]) -> "LogSearch":
        return cls(**{f.name: form.get(f.name, "").strip() for f in fields(cls)})

    def hidden(self) -> dict[str, str]:
        """The fields to send again with the next page (in the form's body)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def given(self) -> bool:
        return any(self.hidden().values())

    def errors(self) -> list[FieldError]:
        found = [
            FieldError(name, N_("Shorten this field: it is longer than the log's entries allow"))
            for name, limit in _LIMITS.items()
            if len(getattr(self, name)) > limit
        ]
        if len(self.subject) <= _LIMITS["subject"] and subject_problem(self.subject) is not None:
            # the API's rule (decision 0072): no entry is filed under another spelling
            found.append(FieldError("subject", _SUBJECT_SPELLING))
        for name in ("department", "item", "action"):
            value = getattr(self, name)
            if value and len(value) <= _LIMITS[name] and not _CODE.fullmatch(value):
                found.append(
                    FieldError(name, N_("Use lower-case letters, digits, dots and hyphens only"))
                )
        if self.outcome and self.outcome not in OUTCOMES:
            found.append(FieldError("outcome", N_("Choose an outcome from the list")))
        since, until = self._range()
        for name, value, moment in (("since", self.since, since), ("until", self.until, until)):
            if value and moment is None:
                found.append(FieldError(name, _MOMENT_EXPECTED))
        if since and until and until <= since:
            found.append(FieldError("until", N_("The end of the range must be after its start")))
        return found

    def _range(self) -> tuple[datetime | None, datetime | None]:
        """[since, until): a date as ``until`` includes that whole day (UTC)."""
        since = _moment(self.since) if self.since else None
        until = _moment(self.until) if self.until else None
        if until is not None and _DATE.fullmatch(self.until):
            until += timedelta(days=1)
        return since, until

    def entry_filter(self, *, pseudonym: Callable[[str], str]) -> EntryFilter:
        """The API's filter (call only when :meth:`errors` is empty)."""
        since, until = self._range()
        return EntryFilter(
            subject=pseudonym(self.subject) if self.subject else None,
            department=self.department or None,
            item=self.item or None,
            action=self.action or None,
            outcome=self.outcome or None,
            since=since,
            until=until,
        )


# --- the search kept between its pages (decision 0058) --------------------------------

SEARCH_SECONDS: Final = 30 * 60  # how long a search can be shown again
MAX_TRAIL: Final = 100  # pages one can go back through


def seal_search(search: LogSearch, *, key: bytes, session: str, now: int) -> str:
    """The search, sealed (AES-256-GCM) for the auditor's browser to send back: only the
    hub reads it, only for the sign-in ``session`` (a hash of its token) that made it,
    and only for ``SEARCH_SECONDS``; the identifier goes in no address."""
    payload = {"search": search.hidden(), "session": session, "exp": now + SEARCH_SECONDS}
    return sealing.seal(key, json.dumps(payload).encode(), aad=KeyLabel.CONSOLE_AUDIT_SEARCH.value)


def open_search(sealed: str | None, *, key: bytes, session: str, now: int) -> LogSearch | None:
    """The search ``sealed`` holds, if the hub sealed it for ``session`` and it is not
    older than ``SEARCH_SECONDS`` (None otherwise)."""
    if not sealed or len(sealed) > 4096:
        return None
    try:
        payload = json.loads(sealing.unseal(key, sealed, aad=KeyLabel.CONSOLE_AUDIT_SEARCH.value))
        search = LogSearch.of(payload["search"])
        fresh = payload["session"] == session and int(payload["exp"]) > now
    except (ValueError, InvalidTag, KeyError, TypeError):
        return None
    return search if fresh and not search.errors() else None


def trail_of(text: str) -> list[int]:
    """The cursors of the pages shown so far, the current page's last (``12.57``: the
    second page began at 12, this one at 57); [] for the first page or a malformed one."""
    cursors = [cursor_of(part) for part in text.split(".")] if text else []
    if len(cursors) > MAX_TRAIL or any(c is None for c in cursors):
        return []
    return [c for c in cursors if c is not None]


def trail_text(trail: list[int]) -> str:
    return ".".join(str(cursor) for cursor in trail)


def cursor_of(text: str) -> int | None:
    """The next page's cursor as the form sends it back (None: the first page)."""
    if text.isascii() and text.isdigit() and len(text) <= 16 and int(text) <= MAX_CURSOR:
        return int(text)
    return None


def index_of(text: str) -> int | None:
    """An entry's index from its page's address (None: not an index)."""
    return cursor_of(text)


# An entry's members in words, in the order the page shows them (audit.leaves.ENTRY_FIELDS).
ENTRY_LABELS: Final = {
    "time": N_("Time"),
    "action": N_("Action"),
    "outcome": N_("Outcome"),
    "reason": N_("Reason"),
    "person": N_("Person who acted"),
    "client": N_("Application"),
    "department": N_("Department"),
    "owner": N_("Owner department asked"),
    "item": N_("Data item"),
    "version": N_("Version"),
    "subject": N_("About whom (pseudonym)"),
    "committed_subject": N_(
        "About whom (pseudonym from the index: the entry holds its commitment)"
    ),
    "indexed_subject": N_("Pseudonym the log's index files the entry under"),
    "subject_commitment": N_("Commitment to the pseudonym"),
    "purpose": N_("Purpose"),
    "grant": N_("Grant"),
    "fields": N_("Fields concerned"),
    "commitment": N_("Commitment to the data returned"),
    "digest": N_("Digest of the data returned"),
    "owner_ms": N_("Owner's answer time (ms)"),
    "query": N_("What was asked"),
    "event": N_("Change event"),
    "target": N_("Acted on"),
    "request_id": N_("Request id"),
    "client_request_id": N_("Caller's request id"),
    "salt": N_("Salt"),
    "v": N_("Entry version"),
}
ACTIONS: Final = {
    "record.query": N_("A department fetched a record"),
    "citizen.query": N_("A citizen's access log was read"),
    "token.issue": N_("An access token was issued"),
    "token.introspect": N_("An access token was checked"),
    "token.revoke": N_("An access token was revoked"),
    "audit.query": N_("An auditor searched the log"),
    "audit.export": N_("An auditor exported the log"),
    "audit.read": N_("An entry of the log was read"),
    "audit.department-query": N_("A department read its entries of the log"),
    "report.efficiency": N_("The efficiency report was read"),
    "report.export": N_("The efficiency report was exported"),
    "access.request": N_("Access was requested"),
    "access.approve": N_("An access request was approved"),
    "access.refuse": N_("An access request was refused"),
    "access.withdraw": N_("An access request was withdrawn"),
    "grant.create": N_("A grant was made"),
    "grant.renew": N_("A grant was renewed"),
    "grant.revoke": N_("A grant was revoked"),
    "event.publish": N_("A change event was published"),
    "event.deliver": N_("A change event was delivered"),
    "event.replay": N_("A change event was replayed"),
    "person.sign-in": N_("A person signed in"),
    "person.sign-in-code": N_("A person signed in with a one-time sign-in code"),
    "person.sign-out": N_("A person signed out"),
    "person.put": N_("An account was added or changed"),
    "person.password": N_("A person changed their password"),
    "person.totp": N_("A person began setting up one-time codes"),
    "person.totp-confirm": N_("A person confirmed their one-time codes"),
    "citizen.sign-in": N_("A citizen signed in to their page"),
    "citizen.sign-out": N_("A citizen signed out of their page"),
    "registry.item.put": N_("A data item was registered or changed"),
    "registry.item.version": N_("A new version of a data item was registered"),
    "registry.item.deprecate": N_("A data item was deprecated"),
    "registry.item.retire": N_("A data item was retired"),
    "registry.department.put": N_("A department was added or changed"),
    "registry.client.put": N_("An application was registered or changed"),
    "registry.client.disable": N_("An application was disabled"),
    "registry.client.enable": N_("An application was enabled again"),
    "registry.change.approve": N_("A registry change was approved by a second person"),
    "registry.change.refuse": N_("A registry change was refused by a second person"),
    "client.keys.put": N_("An application replaced its keys"),
    "event.subscribe": N_("A department subscribed to change events"),
    "event.unsubscribe": N_("A department unsubscribed from change events"),
    "console.form-refused": N_("A console form was refused"),
    "route.refused": N_("A request was refused"),
    "route.read": N_("The break-glass token read a page of the hub"),
}
# The reason an entry gives, in words: the problem types of docs/problems.md (a refusal
# or failure keeps its problem's slug) and the ways of signing in (a sign-in's reason).
# The slug stays on the page beside the words, as the log has it.
REASONS: Final = {
    "password": N_("with a password"),
    "totp": N_("with a password and a one-time code"),
    "oidc": N_("with OpenID Connect"),
    "not-revoked": N_("the token was not revoked (unknown, expired or another's)"),
    "adapter-url-not-https": N_("the adapter address is not https"),
    "audit-log-damaged": N_("the audit log is damaged"),
    "audit-unavailable": N_("the audit log was unavailable"),
    "citizen-identifier-missing": N_("the identity provider sent no identifier"),
    "client-certificate-unregistered": N_("the application's certificate is not registered"),
    "client-disconnected": N_("the caller left before its request was read"),
    "client-assertion-algorithm": N_("the application signed with an algorithm not allowed"),
    "client-assertion-unreadable": N_("the application's credential could not be read"),
    "client-disabled": N_("the application is disabled"),
    "client-not-authenticated": N_("the application was not authenticated"),
    "client-not-found": N_("no such application"),
    "client-signature-invalid": N_("the application's signature does not hold"),
    "client-tokens-outstanding": N_("the application's earlier tokens are still alive"),
    "client-unknown": N_("unknown application"),
    "compatibility-not-judged": N_("the compatibility could not be judged"),
    "database-unavailable": N_("the database was unavailable"),
    "delivery-not-found": N_("no such delivery"),
    "duplicate-request": N_("the same request is already waiting"),
    "entry-not-found": N_("no such entry of the log"),
    "forbidden": N_("not allowed for this role"),
    "grant-not-active": N_("the grant is not active"),
    "grant-not-found": N_("no such grant"),
    "idempotency-key-reused": N_("the idempotency key was used for another event"),
    "incompatible-version": N_("the version breaks the item's compatibility mode"),
    "insufficient-scope": N_("the access token does not cover this"),
    "internal-error": N_("an internal error"),
    "invalid-dpop-proof": N_("the DPoP proof is not valid"),
    "invalid-jwks": N_("the application's keys were refused"),
    "invalid-request": N_("the request is not valid"),
    "invalid-schema": N_("the schema was refused"),
    "invalid-token": N_("the access token is missing or not valid"),
    "invalid-tree-request": N_("no such tree size or proof"),
    "item-not-shared": N_("the data item is not shared"),
    "item-retired": N_("the data item is retired"),
    "no-grant": N_("no active grant"),
    "not-citizen-portal": N_("the application is not a citizen portal"),
    "not-owner": N_("only the owner department may do this"),
    "not-subscribed": N_("the department is no longer subscribed"),
    "not-second-person": N_("a second person must decide this"),
    "not-signed-in": N_("not signed in"),
    "not-steward": N_("not a steward of the owner department"),
    "oauth-invalid-client": N_("the application's authentication failed"),
    "oauth-invalid-dpop-proof": N_("the DPoP proof is not valid"),
    "oauth-invalid-request": N_("the token request is not valid"),
    "oauth-invalid-scope": N_("the scope asked for is not valid"),
    "oauth-slow-down": N_("too many token requests"),
    "oauth-unsupported-grant-type": N_("unsupported grant type"),
    "oauth-use-dpop-nonce": N_("a DPoP nonce is required"),
    "oidc-account-disabled": N_("the account is disabled"),
    "oidc-account-not-linked": N_("no account is linked to this identity"),
    "oidc-code-invalid": N_("the sign-in code is not valid"),
    "oidc-confirmation-refused": N_(
        "the command-line sign-in was not confirmed in the browser that began it"
    ),
    "oidc-id-token-invalid": N_("the ID token is not valid"),
    "oidc-not-configured": N_("OpenID Connect sign-in is not configured"),
    "oidc-provider-refused": N_("the identity provider refused the sign-in"),
    "oidc-provider-unavailable": N_("the identity provider did not answer properly"),
    "oidc-state-invalid": N_("the sign-in took too long or was already used"),
    "http-version-not-supported": N_("the request's HTTP version is not one the hub answers"),
    "method-not-implemented": N_("the request's method is not one the hub knows"),
    "owner-invalid-response": N_("the owner's adapter answered invalid data"),
    "owner-timeout": N_("the owner's adapter did not answer in time"),
    "owner-unavailable": N_("the owner's adapter was unavailable"),
    "payload-too-large": N_("the request was too large"),
    "person-conflict": N_("a conflicting account change"),
    "person-not-found": N_("no such person"),
    "purposes-unavailable": N_("the purpose list was unavailable"),
    "record-not-found": N_("the record was not found"),
    "registry-change-not-found": N_("no such registry change"),
    "registry-change-not-pending": N_("the registry change is no longer waiting"),
    "registry-conflict": N_("it conflicts with the registry"),
    "request-header-fields-too-large": N_("the request's headers were too large"),
    "request-not-found": N_("no such access request"),
    "request-not-pending": N_("the access request is no longer waiting"),
    "request-timeout": N_("the request did not arrive in time"),
    "sign-in-failed": N_("wrong username, password or code"),
    "sign-in-throttled": N_("too many failed sign-ins"),
    "subject-searches-throttled": N_("too many searches by subject in an hour"),
    "transfer-coding-not-implemented": N_(
        "the request's transfer coding is not one the hub decodes"
    ),
    "unavailable": N_("the service was unavailable"),
    "unknown-department": N_("unknown department"),
    "unknown-item": N_("unknown data item"),
    "unknown-purpose": N_("unknown purpose"),
    "unknown-version": N_("unknown version of the item"),
    "unsupported-content-encoding": N_("unsupported content encoding"),
    "unsupported-media-type": N_("the body was not JSON"),
    "use-dpop-nonce": N_("a DPoP nonce is required"),
}


def entry_time(text: str) -> str:
    """An entry's time as every page writes times (UTC, to the minute); the text itself
    when it is not an RFC 3339 time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return when(moment.astimezone(UTC) if moment.tzinfo else moment)


@dataclass(frozen=True)
class EntryRow:
    """One member of an entry, as the entry's page shows it."""

    name: str
    label: str  # an N_ message, or "" when the member has no words of its own
    value: str


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_text(v)}" for key, v in sorted(value.items()))
    return str(value)


def entry_rows(
    entry: Mapping[str, Any],
    *,
    committed_subject: str | None = None,
    indexed_subject: str | None = None,
) -> list[EntryRow]:
    """Every member of ``entry`` (known ones first, in the page's order; any other after,
    by its own name), so that nothing the leaf says is left off the page; for an entry
    that commits to its subject, the pseudonym the hub's index keeps for it; and, for
    every entry that has one, the pseudonym the index files it under (the API's
    ``indexed_subject``)."""
    index_members = {"committed_subject": committed_subject, "indexed_subject": indexed_subject}
    entry = {**entry, **{name: value for name, value in index_members.items() if value is not None}}
    labels = {**ENTRY_LABELS, **_labels_of(entry)}
    known = [name for name in ENTRY_LABELS if name in entry]
    others = sorted(name for name in entry if name not in ENTRY_LABELS)
    return [EntryRow(name, labels.get(name, ""), _text(entry[name])) for name in known + others]


# A sign-in that did not succeed names the account that was typed, not a person who
# was shown to have acted: anyone may type another's username.
_UNPROVEN_PERSON: Final = N_("Account named in the attempt")


def _labels_of(entry: Mapping[str, Any]) -> dict[str, str]:
    """The words for members whose meaning depends on the entry (else ENTRY_LABELS')."""
    if entry.get("action") == "person.sign-in" and entry.get("outcome") != "ok":
        return {"person": _UNPROVEN_PERSON}
    return {}
