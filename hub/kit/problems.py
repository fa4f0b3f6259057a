"""RFC 9457 problem details: the one error base and the document every failure becomes.

Domain errors subclass :class:`HubError` beside the code that raises them, and set
``status``, ``slug`` and ``title``; :func:`render` turns one into the problem JSON.
The handlers that catch them, and audit them, are in onceonly.hub.errors.
"""

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from fastapi.responses import JSONResponse

log = logging.getLogger("onceonly.errors")

PROBLEM_TYPE_PREFIX = "urn:onceonly:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# The members RFC 9457 §3.1 defines; an extension member never takes their place.
PROBLEM_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})


class HubError(Exception):
    """Base of every error the hub answers with (RFC 9457 §3)."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @property
    def outcome(self) -> str:
        """How the audit log names this failure: the caller's fault or ours."""
        return "refused" if self.status < 500 else "failed"


class InvalidRequest(HubError):
    status = 400
    slug = "invalid-request"
    title = "Invalid request"


class PayloadTooLarge(HubError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


class RequestHeadersTooLarge(HubError):
    """RFC 6585 §5: the request's header fields are too large, in total."""

    status = 431
    slug = "request-header-fields-too-large"
    title = "Request header fields too large"


class RequestTimeout(HubError):
    """RFC 9110 §15.5.9: the request head was not whole within ``head_timeout`` seconds
    (decision 0066; written by the server itself: onceonly.hub.cli.servers)."""

    status = 408
    slug = "request-timeout"
    title = "Request timeout"


class HttpVersionNotSupported(HubError):
    """RFC 9110 §15.6.6: the request's HTTP version is not one the hub answers."""

    status = 505
    slug = "http-version-not-supported"
    title = "HTTP version not supported"


class MethodNotImplemented(HubError):
    """RFC 9110 §15.6.2: the request's method is not one the hub knows (the server's
    parser refuses it before any route: onceonly.hub.cli.servers)."""

    status = 501
    slug = "method-not-implemented"
    title = "Method not implemented"


class TransferCodingNotImplemented(HubError):
    """RFC 9112 §6.1: the body has a transfer coding the hub does not decode (any but
    chunked; the server's parser refuses it before any route: onceonly.hub.cli.servers)."""

    status = 501
    slug = "transfer-coding-not-implemented"
    title = "Transfer coding not implemented"


class UnsupportedMediaType(HubError):
    """RFC 9110 §15.5.16: the body is not in the media type the operation reads
    (``application/json``, :class:`onceonly.hub.kit.jsonbody.JsonBody`)."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class UnsupportedContentEncoding(HubError):
    """RFC 9110 §15.5.16: the body has a content coding the hub does not decode."""

    status = 415
    slug = "unsupported-content-encoding"
    title = "Unsupported content encoding"


class Unavailable(HubError):
    status = 503
    slug = "unavailable"
    title = "Service unavailable"


class DatabaseUnavailable(HubError):
    """The database cannot be reached, or will not take the work now (decision 0049): a
    transient condition, answered with ``Retry-After``; the request may be sent again."""

    status = 503
    slug = "database-unavailable"
    title = "Database unavailable"


def problem_response(
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem document. ``extra`` adds extension members (§3.2); it can
    never replace a member the RFC defines (§3.1: ``type``, ``title``, ``status``,
    ``detail``, ``instance``), so ``status`` is always the HTTP status code."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    clashing = sorted(set(extra or {}) & PROBLEM_MEMBERS)
    if clashing:
        log.error("problem extension members dropped: %s", ", ".join(clashing))
    body.update((k, v) for k, v in (extra or {}).items() if k not in PROBLEM_MEMBERS)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


def render(error: HubError) -> JSONResponse:
    return problem_response(
        status=error.status,
        slug=error.slug,
        title=error.title,
        detail=error.detail,
        headers=error.headers,
        extra=error.extra,
    )


# OpenAPI: how a route declares the problems it answers with (``responses=``), and
# the schema they share. The document's builder (onceonly.hub.ops.openapi) adds the
# problems every route of a kind can answer (a body, a sign-in) and the schema.
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
PROBLEM_TYPES_MEMBER = "x-problem-types"
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": (
        "RFC 9457 problem details. Compare `type`; `title` is stable per type; `detail` "
        "is for people. Extension members (RFC 9457 §3.2) carry a problem's own facts."
    ),
    "type": "object",
    "properties": {
        "type": {"type": "string", "description": PROBLEM_TYPE_PREFIX + "<slug>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
    "additionalProperties": True,
}


def problem_response_document(slugs: list[str]) -> dict[str, Any]:
    """The OpenAPI response object of a status answered with the problems ``slugs``."""
    unique = sorted(set(slugs))
    return {
        "description": "Problem: " + ", ".join(f"`{slug}`" for slug in unique),
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
        PROBLEM_TYPES_MEMBER: [PROBLEM_TYPE_PREFIX + slug for slug in unique],
    }


def problems(*errors: type[HubError]) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: one problem response per status of ``errors``."""
    by_status: dict[int, list[str]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error.slug)
    return {status: problem_response_document(slugs) for status, slugs in by_status.items()}
