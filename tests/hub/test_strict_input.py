"""Strict input (onceonly.hub.kit.strict): an integer is a JSON integer, a time an RFC 3339
string with an offset, a query parameter's integer decimal digits and its boolean
``true`` or ``false``. Each wrong value is refused with 400 ``invalid-request``; the
right ones still work. Over real HTTP, on SQLite and PostgreSQL.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from onceonly.adapters import OnceonlyError

from tests.hub.access_world import AccessWorld, Person, access_world
from tests.hub.exchange_world import ADDRESS, PURPOSE, SUBJECT
from tests.hub_testing import DATABASES, module_database, problem_type

# Read as 1 (or as a time in 1970) by a lax parser; none of them is a JSON integer.
NOT_JSON_INTEGERS: list[Any] = [True, "1", 1.0, "1.0"]
# Each of these was read as a time by a lax parser, or has no offset.
NOT_RFC3339: list[Any] = [
    0.5,
    2_000_000_000,
    "2000000000",
    True,
    "2030-01-01",
    "2030-01-01T00:00:00",
    "2030-01-01 00:00:00Z",
    "2030-01-01T00:00Z",
    "2030-01-01T00:00:00+0200",
    "2030-13-01T00:00:00Z",
    # well-formed, but no instant in UTC between the years 1 and 9999 (a 500 once)
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
]
NOT_QUERY_INTEGERS = ["1.0", "+1", "1_0", " 1", "1e3", "0x1", "true", "", "01", "00"]
NOT_QUERY_BOOLEANS = ["yes", "on", "1", "0", "True", "t", ""]


@pytest.fixture(scope="module", params=DATABASES)
def aw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AccessWorld]:
    with access_world(
        database_url=module_database(request, tmp_path_factory),
        tmp_path=tmp_path_factory.mktemp("world"),
    ) as built:
        yield built


def later(days: int, offset: str = "Z") -> str:
    moment = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + offset


def refused_as_invalid(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert problem_type(response) == "invalid-request"
    assert response.json()["status"] == 400
    # for what the test sends, not for a parameter the route does not take
    assert "is not one this operation takes" not in response.json()["detail"]


# --- bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", NOT_JSON_INTEGERS, ids=repr)
def test_a_record_query_version_must_be_a_json_integer(aw: AccessWorld, version: Any) -> None:
    with aw.world.client() as client, pytest.raises(OnceonlyError) as refused:
        client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE, version=version)
    assert refused.value.problem_type == "invalid-request"


def test_a_record_query_with_an_integer_version_is_answered(aw: AccessWorld) -> None:
    with aw.world.client() as client:
        assert client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE, version=1).version == 1


@pytest.mark.parametrize("valid_until", NOT_RFC3339, ids=repr)
def test_an_access_request_valid_until_must_be_rfc3339(aw: AccessWorld, valid_until: Any) -> None:
    response = aw.people["sam.welfare"].request(purpose="statistics", valid_until=valid_until)
    refused_as_invalid(response)
    assert "valid_until" in response.json()["detail"]


@pytest.mark.parametrize("offset", ["Z", "z", "+02:00", "-05:30"])
def test_an_access_request_with_an_rfc3339_time_is_filed(aw: AccessWorld, offset: str) -> None:
    sam = aw.people["sam.welfare"]
    asked = later(30, offset)
    filed = sam.request(purpose="statistics", valid_until=asked)
    assert filed.status_code == 201, filed.text
    assert datetime.fromisoformat(filed.json()["valid_until"]) == datetime.fromisoformat(
        asked.upper()
    )
    assert sam.act(filed.json()["id"], "withdraw").status_code == 200


def test_an_approval_valid_until_must_be_rfc3339(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="healthcare-provision", valid_until=later(60))
    rita = aw.people["rita.registry"]
    for valid_until in NOT_RFC3339:
        refused_as_invalid(rita.act(request_id, "approve", {"valid_until": valid_until}))
    approved = rita.act(request_id, "approve", {"valid_until": later(20, "+01:00")})
    assert approved.status_code == 200, approved.text


@pytest.mark.parametrize(
    "body",
    [
        {"reason": 1},
        {"reason": True},
        {"fields": "given_name"},
        {"fields": [1]},
    ],
    ids=repr,
)
def test_approval_members_are_not_coerced(aw: AccessWorld, body: dict[str, Any]) -> None:
    request_id = aw.pending(purpose="business-licensing")
    try:
        refused_as_invalid(aw.people["rita.registry"].act(request_id, "approve", body))
    finally:
        aw.people["sam.welfare"].act(request_id, "withdraw")


@pytest.mark.parametrize("valid_until", [0.5, "2030-01-01T00:00:00", True], ids=repr)
def test_a_break_glass_grant_valid_until_must_be_rfc3339(aw: AccessWorld, valid_until: Any) -> None:
    body = {
        "consumer": "tax",
        "item": ADDRESS,
        "purpose": "tax-audit",
        "legal_basis": "test",
        "valid_until": valid_until,
    }
    refused_as_invalid(aw.break_glass().call("POST", "/v1/admin/grants", body))


# --- query strings and paths -----------------------------------------------------------


@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", [v for v in NOT_RFC3339 if not isinstance(v, bool)], ids=str)
def test_audit_times_must_be_rfc3339(aw: AccessWorld, name: str, value: Any) -> None:
    auditor = aw.people["alma.auditor"]
    refused_as_invalid(auditor.call("GET", "/v1/audit/entries", **{name: str(value)}))
    refused_as_invalid(auditor.call("GET", "/v1/audit/export", **{name: str(value)}))


@pytest.mark.parametrize("offset", ["Z", "+02:00"])
def test_audit_times_with_an_offset_are_read(aw: AccessWorld, offset: str) -> None:
    auditor = aw.people["alma.auditor"]
    since, until = later(-1, offset), later(1, offset)
    page = auditor.call("GET", "/v1/audit/entries", since=since, until=until, limit=5)
    assert page.status_code == 200, page.text
    assert page.json()["entries"]


PUBLIC_INTEGERS = [
    ("/v1/audit/checkpoints", "limit"),
    ("/v1/audit/checkpoints", "since_size"),
    ("/v1/audit/leaves", "start"),
    ("/v1/audit/leaves", "limit"),
    ("/v1/audit/proof/inclusion", "index"),
    ("/v1/audit/proof/consistency", "from"),
]
# What else each path needs: a parameter it does not take is refused (decision 0074).
_REQUIRED = {
    "/v1/audit/proof/inclusion": {"index": "0", "tree_size": "1"},
    "/v1/audit/proof/consistency": {"from": "0", "to": "1"},
}


@pytest.mark.parametrize(("path", "name"), PUBLIC_INTEGERS)
@pytest.mark.parametrize("value", NOT_QUERY_INTEGERS, ids=repr)
def test_query_integers_are_decimal_digits(
    aw: AccessWorld, path: str, name: str, value: str
) -> None:
    params = {**_REQUIRED.get(path, {}), name: value}
    refused_as_invalid(httpx.get(aw.url + path, params=params))


@pytest.mark.parametrize(("path", "name"), PUBLIC_INTEGERS)
def test_query_integers_in_digits_are_read(aw: AccessWorld, path: str, name: str) -> None:
    params = {**_REQUIRED.get(path, {}), name: "1"}
    if name == "index":
        params[name] = "0"
    response = httpx.get(aw.url + path, params=params)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("path", "name"), PUBLIC_INTEGERS)
def test_a_query_parameter_given_twice_is_refused(aw: AccessWorld, path: str, name: str) -> None:
    """index=0&index=1 was read as its last value: layers that read the first would
    prove another entry (an independent verifier's review)."""
    params = _REQUIRED.get(path, {})
    pairs = [*((k, v) for k, v in params.items() if k != name), (name, "0"), (name, "1")]
    response = httpx.get(aw.url + path, params=pairs)
    refused_as_invalid(response)
    assert repr(name) in response.json()["detail"]


@pytest.mark.parametrize("value", NOT_QUERY_INTEGERS, ids=repr)
def test_audit_entries_limit_and_cursor_are_decimal_digits(aw: AccessWorld, value: str) -> None:
    auditor = aw.people["alma.auditor"]
    refused_as_invalid(auditor.call("GET", "/v1/audit/entries", limit=value))
    refused_as_invalid(auditor.call("GET", "/v1/audit/entries", cursor=value))


@pytest.mark.parametrize("value", [str(2**53), str(2**62), str(2**63), str(2**64), "9" * 20])
def test_audit_cursors_beyond_any_index_are_a_400_not_a_500(aw: AccessWorld, value: str) -> None:
    """Past 2^63 a cursor no longer fits the databases' BIGINT, past 2^53 - 1 the
    audit entry that records the query (RFC 8785 takes I-JSON integers): 500s once."""
    auditor = aw.people["alma.auditor"]
    refused_as_invalid(auditor.call("GET", "/v1/audit/entries", cursor=value))
    with aw.world.client() as department:
        with pytest.raises(OnceonlyError) as refused:
            department.department_entries(cursor=value)
    assert (refused.value.status, refused.value.problem_type) == (400, "invalid-request")
    for path in (f"/v1/audit/entries/{value}", f"/v1/audit/leaves?start={value}"):
        refused_as_invalid(httpx.get(aw.url + path))


@pytest.mark.parametrize("value", [1, "true", "yes", None])
def test_an_accounts_reset_totp_must_be_a_json_boolean(aw: AccessWorld, value: Any) -> None:
    administrator = aw.break_glass()
    body = {"password": "correct horse battery staple", "reset_totp": value}
    refused_as_invalid(administrator.call("PUT", "/v1/admin/people/strict.person", body))
    body["reset_totp"] = False
    created = administrator.call("PUT", "/v1/admin/people/strict.person", body)
    assert created.status_code in (200, 201), created.text


@pytest.mark.parametrize("value", NOT_QUERY_INTEGERS, ids=repr)
def test_dead_letter_listing_limit_is_decimal_digits(aw: AccessWorld, value: str) -> None:
    administrator = aw.break_glass()
    refused_as_invalid(administrator.call("GET", "/v1/admin/events/deliveries", limit=value))
    listed = administrator.call("GET", "/v1/admin/events/deliveries", limit="5")
    assert listed.status_code == 200, listed.text


@pytest.mark.parametrize("value", ["1.0", "+1", "1_0", "1e0", "01"])
def test_path_integers_are_decimal_digits(aw: AccessWorld, value: str) -> None:
    refused_as_invalid(httpx.get(f"{aw.url}/v1/items/{ADDRESS}/versions/{value}"))
    refused_as_invalid(httpx.get(f"{aw.url}/v1/audit/entries/{value}"))
    assert httpx.get(f"{aw.url}/v1/items/{ADDRESS}/versions/1").status_code == 200


@pytest.mark.parametrize("value", NOT_QUERY_BOOLEANS, ids=repr)
def test_query_booleans_are_true_or_false(aw: AccessWorld, value: str) -> None:
    sam: Person = aw.people["sam.welfare"]
    refused_as_invalid(sam.call("GET", "/v1/access-requests", overdue=value))


@pytest.mark.parametrize("value", ["true", "false"])
def test_query_booleans_true_and_false_are_read(aw: AccessWorld, value: str) -> None:
    response = aw.people["sam.welfare"].call("GET", "/v1/access-requests", overdue=value)
    assert response.status_code == 200, response.text
