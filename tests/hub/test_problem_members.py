"""RFC 9457 §3.1: a problem's ``type``, ``title``, ``status``, ``detail`` and ``instance``
are the RFC's; an error's extension members (§3.2) never take their place, so
``status`` is always the HTTP status code. Every error class that carries extension
members is rendered here; the access workflow's over HTTP in test_access_requests.py.
"""

import json
from typing import Any

import pytest

from onceonly.hub.access.exceptions import DuplicateRequest, RequestNotPending
from onceonly.hub.auth.exceptions import (
    InvalidClient,
    InvalidScope,
    InvalidTokenRequest,
    OAuthError,
    UnsupportedGrantType,
)
from onceonly.hub.kit.problems import HubError, render


class Clashing(HubError):
    status = 409
    slug = "clashing"
    title = "An error whose extensions name the RFC's members"


def rendered(error: HubError) -> tuple[int, dict[str, Any]]:
    response = render(error)
    body: dict[str, Any] = json.loads(bytes(response.body))
    return response.status_code, body


OAUTH_ERRORS: list[type[OAuthError]] = [
    InvalidTokenRequest,
    InvalidClient,
    UnsupportedGrantType,
    InvalidScope,
]


@pytest.mark.parametrize(
    ("error", "extensions"),
    [
        (
            RequestNotPending("access request x is approved", extra={"state": "approved"}),
            {"state": "approved"},
        ),
        (DuplicateRequest("request y is pending", extra={"existing": "y"}), {"existing": "y"}),
        *[
            (
                cls("the assertion is wrong"),
                {"error": cls.error, "error_description": "the assertion is wrong"},
            )
            for cls in OAUTH_ERRORS
        ],
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, HubError) else "",
)
def test_every_error_with_extensions_keeps_the_rfc_members(
    error: HubError, extensions: dict[str, Any]
) -> None:
    status, body = rendered(error)
    assert body["status"] == status == error.status
    assert isinstance(body["status"], int)
    assert body["type"] == f"urn:onceonly:problem:{error.slug}"
    assert (body["title"], body["detail"]) == (error.title, error.detail)
    assert {k: v for k, v in body.items() if k not in ("type", "title", "status", "detail")} == (
        extensions
    )


@pytest.mark.parametrize("member", ["type", "title", "status", "detail", "instance"])
def test_an_extension_never_replaces_a_member_the_rfc_defines(member: str) -> None:
    status, body = rendered(Clashing("what happened", extra={member: "approved", "kept": 1}))
    assert body == {
        "type": "urn:onceonly:problem:clashing",
        "title": Clashing.title,
        "status": 409,
        "detail": "what happened",
        "kept": 1,
    }
    assert status == 409
