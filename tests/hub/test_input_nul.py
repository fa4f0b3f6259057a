"""A NUL character (U+0000) anywhere in a request is refused with 400 invalid-request.

PostgreSQL text cannot hold it: before the central check, a NUL in a username, a
purpose or a query parameter reached the database and the hub answered 500 there.
Every test runs on SQLite and PostgreSQL.
"""

import json
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from onceonly.hub.kit.nul import NUL_DETAIL, body_nul

from tests.hub_testing import (
    DATABASES,
    TEST_PASSWORD,
    RunningHub,
    audit_entry_for,
    catalogue_hub,
    problem_type,
    signed_in,
    steward,
)


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    """One hub per module and database, with the catalogue: each test finds its entries
    by request id."""
    with catalogue_hub(request, tmp_path_factory) as hub:
        yield hub


def assert_nul_refused(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert problem_type(response) == "invalid-request"
    detail: str = response.json()["detail"]
    assert detail.startswith(NUL_DETAIL)
    return detail


def test_sign_in_with_nul_in_username_is_refused_and_audited(hub: RunningHub) -> None:
    signed_in(hub, "rita")  # the account exists: the NUL must not reach its lookup
    response = httpx.post(
        f"{hub.url}/v1/people/sign-in", json={"username": "rita\u0000", "password": TEST_PASSWORD}
    )
    assert assert_nul_refused(response).endswith("at /username (JSON pointer)")
    entry = audit_entry_for(hub, response, action="person.sign-in")
    assert (entry["outcome"], entry["reason"]) == ("refused", "invalid-request")


def test_nul_in_a_nested_string_or_a_member_name_is_refused(hub: RunningHub) -> None:
    body = {"username": "rita", "password": "x", "extra": {"a/b": ["fine", "not\u0000fine"]}}
    response = httpx.post(f"{hub.url}/v1/people/sign-in", json=body)
    assert assert_nul_refused(response).endswith("at /extra/a~1b/1 (JSON pointer)")
    body = {"username": "rita", "password": "x", "extra": {"key\u0000": 1}}
    response = httpx.post(f"{hub.url}/v1/people/sign-in", json=body)
    assert assert_nul_refused(response).endswith("at /extra (JSON pointer)")


def test_access_request_with_nul_in_purpose_text_is_refused_and_audited(hub: RunningHub) -> None:
    headers = signed_in(hub, "sam.welfare", steward("social-welfare"))
    body = {
        "consumer": "social-welfare",
        "item": "person.identity",
        "purpose": "benefit-eligibility",
        "purpose_text": "checking\u0000 the applicant",
        "legal_basis": "Social Welfare Act §12",
        "fields": [],
        "valid_until": None,
    }
    response = httpx.post(f"{hub.url}/v1/access-requests", json=body, headers=headers)
    assert assert_nul_refused(response).endswith("at /purpose_text (JSON pointer)")
    entry = audit_entry_for(hub, response, action="access.request")
    assert (entry["outcome"], entry["reason"]) == ("refused", "invalid-request")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audit/entries?department=%00",
        "/v1/audit/entries?department=a%00b&item=person.identity",
        "/v1/audit/entries?%00=x",
        "/v1/items/person.identity%00",
        "/v1/items/%00/records/query",
        "/v1/admin/people/rita%00",
        "/no/such/route%00",
    ],
)
def test_nul_in_path_or_query_string_is_refused(hub: RunningHub, path: str) -> None:
    headers = signed_in(hub, "audrey", {"role": "auditor"})
    response = httpx.get(f"{hub.url}{path}", headers=headers)
    assert assert_nul_refused(response).endswith("in the URL's path or query string")
    assert len(response.headers["x-request-id"]) == 32


def test_nul_in_path_is_refused_for_every_method(hub: RunningHub) -> None:
    response = httpx.put(
        f"{hub.url}/v1/admin/people/rita%00",
        json={"password": TEST_PASSWORD, "roles": []},
        headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
    )
    assert_nul_refused(response)


def test_escaped_backslash_before_u0000_is_text_not_a_nul(hub: RunningHub) -> None:
    """``"\\\\u0000"`` in JSON is a backslash and the letters u0000: a valid password."""
    password = "a backslash \\u0000 and more \\\\u0000 text"
    raw = json.dumps({"username": "bea", "password": password}).encode()
    assert b"\\\\u0000" in raw
    assert body_nul(raw) is None
    with hub.admin() as admin:
        admin.call("PUT", "/v1/admin/people/bea", {"password": password, "roles": []})
    response = httpx.post(
        f"{hub.url}/v1/people/sign-in",
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def test_raw_nul_byte_and_utf16_bodies_are_refused(hub: RunningHub) -> None:
    raw = b'{"username": "rita\x00", "password": "correct horse battery staple"}'
    for content in (raw, json.dumps({"username": "rita", "password": "x"}).encode("utf-16")):
        response = httpx.post(
            f"{hub.url}/v1/people/sign-in",
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert "0x00 byte" in assert_nul_refused(response)


# --- the byte-level check itself (no hub) ------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        (b'"\\u0000"', "/"),
        (b'{"a": "x\\u0000"}', "/a"),
        (b'{"a": "\\\\\\u0000"}', "/a"),  # escaped backslash, then a NUL escape
        (b'{"a": "\\\\\\\\\\u0000"}', "/a"),
        (b'{"a": [1, {"b": "\\\\u0000"}, {"c~": "\\u0000"}]}', "/a/2/c~0"),
        (b'{"\\u0000": 1}', "/"),
        (b'{"a": "\\u0000", "a": 2}', "/a"),  # invalid for other reasons too: NUL first
    ],
)
def test_nul_escapes_are_found_with_their_pointer(raw: bytes, pointer: str) -> None:
    assert body_nul(raw) == f"{NUL_DETAIL}: at {pointer} (JSON pointer)"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\\\\u0000"}',
        b'{"a": "\\\\\\\\u0000"}',
        b'{"a": "\\u0001\\u0100"}',
        b'{"a": "u0000 \\\\u0000\\\\"}',
        b'{"query": {"subject": "38001010000"}}',
    ],
)
def test_text_that_only_looks_like_a_nul_is_accepted(raw: bytes) -> None:
    assert body_nul(raw) is None
    json.loads(raw)


def test_unparseable_body_with_a_nul_escape_is_refused_without_a_pointer() -> None:
    assert body_nul(b'{"a": "\\u0000"') == NUL_DETAIL


def test_what_the_check_refuses_is_what_json_would_decode_to_a_nul() -> None:
    for raw in (b'"\\\\u0000"', b'"\\\\\\u0000"', b'"\\\\\\\\u0000"', b'"\\\\\\\\\\u0000"'):
        decoded: Any = json.loads(raw)
        assert (body_nul(raw) is not None) == ("\x00" in decoded)


@pytest.mark.parametrize("claim", ["sub", "iss", "jti"])
def test_client_assertion_with_nul_in_a_claim_is_an_invalid_client(
    hub: RunningHub, claim: str
) -> None:
    """The claims are base64url inside the JWT, so no byte check of the request sees
    them: the token endpoint refuses them itself (before, PostgreSQL answered 500)."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    token_url = f"{hub.settings.issuer}/oauth/token"
    claims = {"iss": "a-client", "sub": "a-client", "aud": token_url, "jti": uuid4().hex}
    claims |= {"iat": int(time.time()), "exp": int(time.time()) + 60}
    claims[claim] = "a-cl\u0000ient"
    assertion = jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)
    response = httpx.post(
        f"{hub.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    )
    assert response.status_code in (400, 401), response.text
    assert problem_type(response) == "oauth-invalid-client"
