"""Errors raised by the adapters package.

One base class carries the HTTP status and RFC 9457 problem type, so the consumer
SDK can map a hub's problem response onto a class and the provider service can
render any refusal as a problem response with one handler::

    OnceonlyError                 base; status, problem_type, detail, request_id,
    │                             retry_after
    ├── ConfigError               the adapter's TOML configuration is invalid
    ├── HubUnavailable            the hub could not be reached, or timed out
    ├── AuthenticationFailed      401: bad client assertion or request/access token
    ├── AccessDenied              403: no scope or no grant (see problem_type)
    ├── NotFound                  404: unknown item, or no record for the subject
    ├── InvalidRequest            400, 413, 422: the request was malformed
    ├── RateLimited               429: too many requests; ``retry_after`` says when
    ├── UpstreamError             502, 503, 504: the record's owner or source failed
    │   └── SourceError           (provider side, in _sources) the department's source failed
    │       ├── SourceUnavailable       503: down, timed out, or answered an error
    │       └── InvalidSourceRecord     502: answered a record the schema refuses
    └── ImportFailed              a CSV/JSONL import was refused; carries the report

``problem_type`` is the slug of the problem type (``no-grant`` for
``urn:onceonly:problem:no-grant``). ``retry_after`` is the seconds the hub asked the
client to wait before trying again (its ``Retry-After``, on a ``503`` or a ``429``),
``None`` when it named none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "PROBLEM_PREFIX",
    "AccessDenied",
    "AuthenticationFailed",
    "ConfigError",
    "HubUnavailable",
    "ImportFailed",
    "ImportReport",
    "InvalidRequest",
    "NotFound",
    "OnceonlyError",
    "RateLimited",
    "RowError",
    "UpstreamError",
    "error_for_status",
]

PROBLEM_PREFIX = "urn:onceonly:problem:"


class OnceonlyError(Exception):
    """Base of every error this package raises.

    ``status`` is the HTTP status that caused (or that renders) the error, ``None``
    when no HTTP answer was involved. ``detail`` never holds a subject or a token.
    ``retry_after`` is the seconds the hub's ``Retry-After`` asked for, when it sent one.
    """

    default_status: ClassVar[int | None] = None
    default_problem_type: ClassVar[str | None] = None
    title: ClassVar[str] = "Onceonly error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        problem_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status if status is not None else self.default_status
        self.problem_type = problem_type or self.default_problem_type
        self.request_id = request_id
        self.retry_after = retry_after


class ConfigError(OnceonlyError):
    title = "Invalid configuration"


class HubUnavailable(OnceonlyError):
    default_status = 503
    default_problem_type = "hub-unavailable"
    title = "Hub unavailable"


class AuthenticationFailed(OnceonlyError):
    default_status = 401
    default_problem_type = "invalid-token"
    title = "Authentication failed"


class AccessDenied(OnceonlyError):
    default_status = 403
    title = "Access denied"


class NotFound(OnceonlyError):
    default_status = 404
    default_problem_type = "record-not-found"
    title = "Not found"


class InvalidRequest(OnceonlyError):
    default_status = 400
    default_problem_type = "invalid-request"
    title = "Invalid request"


class RateLimited(OnceonlyError):
    default_status = 429
    default_problem_type = "rate-limited"
    title = "Too many requests"


class UpstreamError(OnceonlyError):
    default_status = 502
    title = "Upstream error"


@dataclass(frozen=True)
class RowError:
    """One refused row. ``row`` is 1-based: a CSV's header is row 1, a JSONL's first
    line is row 1."""

    row: int
    subject: str | None
    message: str


@dataclass(frozen=True)
class ImportReport:
    """The outcome of an import: how many records were written, or why none were."""

    imported: int
    errors: list[RowError] = field(default_factory=list)


class ImportFailed(OnceonlyError):
    """Nothing was imported; ``report.errors`` says which rows failed and why."""

    title = "Import failed"

    def __init__(self, detail: str, *, report: ImportReport) -> None:
        super().__init__(detail)
        self.report = report


_BY_STATUS: dict[int, type[OnceonlyError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: AccessDenied,
    404: NotFound,
    413: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    502: UpstreamError,
    503: UpstreamError,
    504: UpstreamError,
}


def error_for_status(status: int) -> type[OnceonlyError]:
    """The error class that a problem response with this HTTP status maps to."""
    return _BY_STATUS.get(status, OnceonlyError)
