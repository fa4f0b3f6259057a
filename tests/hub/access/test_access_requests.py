"""Access requests and grants, as stewards, auditors and the exchange see them, over
real HTTP on SQLite and PostgreSQL; the working-day deadline and the purpose list
as pure functions; the ``onceonly access`` commands against a running hub.

One world per database serves the module (people sign in once: argon2id is slow).
Tests that leave a request pending use a purpose no other test uses.
"""

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from onceonly.adapters import AccessDenied
from onceonly.hub import cli
from onceonly.hub.access import deadlines, purposes
from onceonly.hub.access.exceptions import PurposesUnavailable, UnknownPurpose
from onceonly.hub.cli import access_commands
from onceonly.hub.config import Settings

from tests.hub.access_world import IDENTITY_FIELDS, AccessWorld, Person, access_world
from tests.hub.exchange_world import ADDRESS, ADDRESS_RECORD, CONSUMER, IDENTITY, OWNER, SUBJECT
from tests.hub_testing import DATABASES, audit_entry_for, module_database, problem_type

HOLIDAY = date(2030, 1, 1)


@pytest.fixture(scope="module", params=DATABASES)
def aw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AccessWorld]:
    with access_world(
        database_url=module_database(request, tmp_path_factory),
        tmp_path=tmp_path_factory.mktemp("world"),
        answer_working_days=3,
    ) as built:
        yield built


def person(aw: AccessWorld, name: str) -> Person:
    return aw.people[name]


def later(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


# --- the lifecycle -------------------------------------------------------------------


def test_request_approved_with_fewer_fields_is_what_the_exchange_delivers_until_revoked(
    aw: AccessWorld,
) -> None:
    purpose = "housing-benefit"
    sam, rita = person(aw, "sam.welfare"), person(aw, "rita.registry")
    with aw.world.client() as client, pytest.raises(AccessDenied) as before:
        client.fetch(ADDRESS, SUBJECT, purpose=purpose)
    assert before.value.problem_type == "no-grant"

    asked = sam.request(
        item=ADDRESS,
        purpose=purpose,
        fields=["street", "city", "postal_code"],
        valid_until=later(90),
    )
    assert asked.status_code == 201, asked.text
    filed = asked.json()
    assert filed["status"] == "pending"
    assert filed["owner"] == OWNER
    assert filed["requested_fields"] == ["city", "postal_code", "street"]
    assert filed["personal_fields"] == ["city", "postal_code", "street"]
    assert filed["overdue"] is False
    inbox = rita.call("GET", "/v1/access-requests", box="inbox", status="pending").json()
    assert filed["id"] in [r["id"] for r in inbox["requests"]]

    until = later(30)
    approved = rita.act(
        filed["id"], "approve", {"fields": ["city", "postal_code"], "valid_until": until}
    )
    assert approved.status_code == 200, approved.text
    decided = approved.json()
    assert decided["status"] == "approved"
    assert decided["decision"]["by"] == "rita.registry"
    assert decided["decision"]["fields"] == ["city", "postal_code"]
    grant = sam.call("GET", f"/v1/grants/{decided['grant_id']}").json()
    assert grant["request_id"] == filed["id"]
    assert grant["fields"] == ["city", "postal_code"]
    assert grant["status"] == "active"
    assert datetime.fromisoformat(grant["valid_until"]) == datetime.fromisoformat(until)

    with aw.world.client() as client:
        result = client.fetch(ADDRESS, SUBJECT, purpose=purpose)
        assert result.record == {k: ADDRESS_RECORD[k] for k in ("city", "postal_code")}
        revoked = rita.call(
            "POST", f"/v1/grants/{grant['id']}/revoke", {"reason": "the benefit scheme ended"}
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["status"] == "revoked"
        assert revoked.json()["revoked_by"] == "rita.registry"
        with pytest.raises(AccessDenied) as after:
            client.fetch(ADDRESS, SUBJECT, purpose=purpose)
    assert after.value.problem_type == "no-grant"


def test_every_step_is_audited_with_department_item_purpose_grant_and_request(
    aw: AccessWorld,
) -> None:
    sam, rita = person(aw, "sam.welfare"), person(aw, "rita.registry")
    asked = sam.request(purpose="child-benefit", fields=["given_name", "family_name"])
    request_id = asked.json()["id"]
    entry = audit_entry_for(aw.world.hub, asked, action="access.request")
    assert entry["person"] == "sam.welfare"
    assert (entry["department"], entry["item"], entry["purpose"]) == (
        CONSUMER,
        IDENTITY,
        "child-benefit",
    )
    assert entry["target"] == request_id
    assert entry["fields"] == ["family_name", "given_name"]

    approved = rita.act(request_id, "approve", {"fields": ["family_name"], "reason": "minimal"})
    entry = audit_entry_for(aw.world.hub, approved, action="access.approve")
    assert entry["person"] == "rita.registry"
    assert entry["grant"] == approved.json()["grant_id"]
    assert entry["fields"] == ["family_name"]
    assert entry["reason"] == "minimal"
    assert entry["target"] == request_id

    revoked = sam.call(
        "POST", f"/v1/grants/{entry['grant']}/revoke", {"reason": "no longer needed"}
    )
    assert revoked.status_code == 200, revoked.text
    entry = audit_entry_for(aw.world.hub, revoked, action="grant.revoke")
    assert (entry["grant"], entry["target"], entry["reason"]) == (
        approved.json()["grant_id"],
        request_id,
        "no longer needed",
    )
    again = rita.call("POST", f"/v1/grants/{entry['grant']}/revoke", {"reason": "twice"})
    assert again.status_code == 409
    assert problem_type(again) == "grant-not-active"
    assert "sam.welfare" in again.json()["detail"]


def test_personal_fields_are_granted_only_when_named(aw: AccessWorld) -> None:
    sam = person(aw, "sam.welfare")
    # person.identity: every field is personal, so naming none asks for nothing
    refused = sam.request(purpose="pension-calculation", fields=None)
    assert refused.status_code == 400, refused.text
    assert problem_type(refused) == "invalid-request"
    assert "every field of 'person.identity' is personal" in refused.json()["detail"]
    assert "given_name" in refused.json()["detail"]
    # vehicle.registration: naming none asks for the fields that are not personal
    filed = sam.request(item="vehicle.registration", purpose="benefit-eligibility", fields=None)
    assert filed.status_code == 201, filed.text
    body = filed.json()
    assert body["fields"] is None
    assert "owner" not in body["requested_fields"]
    assert body["personal_fields"] == []
    not_personal = ["registration_number", "vin", "make", "model", "category", "fuel"]
    not_personal += ["first_registered_on", "status", "inspection_valid_until"]
    assert body["requested_fields"] == sorted(not_personal)


def test_request_for_all_fields_is_granted_the_snapshot_of_the_version(aw: AccessWorld) -> None:
    filed = person(aw, "sam.welfare").request(purpose="pension-calculation", fields="all")
    assert filed.status_code == 201, filed.text
    assert filed.json()["fields"] == IDENTITY_FIELDS  # "all" is stored spelled out
    assert filed.json()["personal_fields"] == IDENTITY_FIELDS  # what the owner weighs
    entry = audit_entry_for(aw.world.hub, filed, action="access.request")
    assert entry["fields"] == IDENTITY_FIELDS
    decided = person(aw, "rita.registry").act(filed.json()["id"], "approve", {}).json()
    assert decided["decision"]["fields"] == IDENTITY_FIELDS


@pytest.mark.parametrize("fields", ["ALL", "every", [], ["all", 1]])
def test_fields_are_a_list_or_all(aw: AccessWorld, fields: object) -> None:
    response = person(aw, "sam.welfare").request(purpose="pension-calculation", fields=fields)
    assert response.status_code == 400, response.text
    assert problem_type(response) == "invalid-request"
    assert "fields" in response.json()["detail"]


def test_request_naming_every_field_is_granted_exactly_those(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="pension-calculation")
    decided = person(aw, "rita.registry").act(request_id, "approve", {}).json()
    assert decided["fields"] == IDENTITY_FIELDS
    assert decided["requested_fields"] == IDENTITY_FIELDS
    assert decided["personal_fields"] == IDENTITY_FIELDS
    assert decided["decision"]["fields"] == IDENTITY_FIELDS
    grant = person(aw, "sam.welfare").call("GET", f"/v1/grants/{decided['grant_id']}").json()
    assert grant["fields"] == IDENTITY_FIELDS


def test_unconditional_item_is_granted_at_once_by_the_hub(aw: AccessWorld) -> None:
    tina = person(aw, "tina.tax")
    response = tina.request(consumer="tax", item="business.registration", purpose="tax-assessment")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "approved"
    assert body["decision"]["by"] == "hub"
    assert body["decision"]["reason"] == "unconditional item"
    assert body["grant_id"]
    entry = audit_entry_for(aw.world.hub, response, action="access.request")
    assert entry["purpose"] == "tax-assessment"
    assert entry["grant"] == body["grant_id"]


def test_item_never_shared_is_refused(aw: AccessWorld) -> None:
    response = person(aw, "sam.welfare").request(item="tax.audit-risk-assessment")
    assert response.status_code == 409
    assert problem_type(response) == "item-not-shared"
    assert "never shared" in response.json()["detail"]


@pytest.mark.parametrize(
    ("overrides", "slug"),
    [
        ({"purpose": "marketing"}, "unknown-purpose"),
        ({"fields": ["given_name", "shoe_size"]}, "invalid-request"),
        ({"valid_until": "2001-01-01T00:00:00Z"}, "invalid-request"),
        ({"valid_until": "2099-01-01T00:00:00"}, "invalid-request"),  # no time zone
        ({"item": "person.nonexistent"}, "unknown-item"),
        ({"consumer": "no-such-department"}, "forbidden"),
        ({"purpose_text": ""}, "invalid-request"),
    ],
)
def test_refuses_request_that_is_not_acceptable(
    aw: AccessWorld, overrides: dict[str, Any], slug: str
) -> None:
    response = person(aw, "sam.welfare").request(**overrides)
    assert problem_type(response) == slug, response.text


def test_unknown_fields_are_named_quoted_without_their_control_characters(
    aw: AccessWorld,
) -> None:
    """A hostile review: the detail echoed a name's control characters (a C1 CSI,
    ``\\u009b``, starts a terminal escape sequence where the detail is printed)."""
    response = person(aw, "sam.welfare").request(fields=["given_name", "x\u009b[31m", "y\u001e"])
    assert problem_type(response) == "invalid-request", response.text
    detail = response.json()["detail"]
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in detail), detail
    assert "'x\\x9b[31m'" in detail
    assert "'y\\x1e'" in detail


def test_refuses_request_for_the_departments_own_item(aw: AccessWorld) -> None:
    response = person(aw, "bo.both").request(consumer=OWNER, purpose="statistics")
    assert response.status_code == 400
    assert "owns" in response.json()["detail"]


def test_refuses_request_for_retired_item(aw: AccessWorld) -> None:
    emergency = aw.break_glass()
    assert emergency.call("POST", "/v1/admin/items/person.death/retire").status_code == 200
    response = person(aw, "sam.welfare").request(item="person.death")
    assert response.status_code == 410
    assert problem_type(response) == "item-retired"


def test_duplicate_pending_request_is_refused_with_the_existing_id(aw: AccessWorld) -> None:
    first = aw.pending(purpose="debt-collection")
    again = person(aw, "sam.welfare").request(purpose="debt-collection")
    assert again.status_code == 409
    assert problem_type(again) == "duplicate-request"
    assert again.json()["existing"] == first


def test_owner_refuses_with_a_reason(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="education-admission")
    rita = person(aw, "rita.registry")
    assert problem_type(rita.act(request_id, "refuse", {})) == "invalid-request"
    refused = rita.act(request_id, "refuse", {"reason": "no legal basis for this purpose"})
    assert refused.status_code == 200, refused.text
    body = refused.json()
    assert (body["status"], body["grant_id"]) == ("refused", None)
    assert body["decision"]["reason"] == "no legal basis for this purpose"
    entry = audit_entry_for(aw.world.hub, refused, action="access.refuse")
    assert entry["reason"] == "no legal basis for this purpose"
    late = rita.act(request_id, "approve", {})
    assert late.status_code == 409
    assert problem_type(late) == "request-not-pending"
    assert (late.json()["status"], late.json()["state"]) == (409, "refused")
    assert "refused" in late.json()["detail"]


def test_approving_an_approved_request_answers_409_with_the_state_as_an_extension(
    aw: AccessWorld,
) -> None:
    """RFC 9457: ``status`` is the HTTP status; the request's state is ``state``."""
    request_id = aw.pending(purpose="pension-calculation")
    rita = person(aw, "rita.registry")
    assert rita.act(request_id, "approve", {}).status_code == 200
    again = rita.act(request_id, "approve", {})
    assert again.status_code == 409
    assert problem_type(again) == "request-not-pending"
    assert (again.json()["status"], again.json()["state"]) == (409, "approved")


def test_consumer_withdraws_and_nothing_more_happens(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="vehicle-registration")
    sam = person(aw, "sam.welfare")
    withdrawn = sam.act(request_id, "withdraw")
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["status"] == "withdrawn"
    assert withdrawn.json()["decision"]["by"] == "sam.welfare"
    again = sam.act(request_id, "withdraw")
    assert (again.status_code, again.json()["status"], again.json()["state"]) == (
        409,
        409,
        "withdrawn",
    )
    refused = person(aw, "rita.registry").act(request_id, "refuse", {"reason": "late"})
    assert problem_type(refused) == "request-not-pending"


def test_approval_cannot_widen_fields_or_period(aw: AccessWorld) -> None:
    request_id = aw.pending(
        purpose="driving-licence-check", fields=["given_name"], valid_until=later(10)
    )
    rita = person(aw, "rita.registry")
    wider = rita.act(request_id, "approve", {"fields": ["given_name", "sex"]})
    assert problem_type(wider) == "invalid-request"
    longer = rita.act(request_id, "approve", {"valid_until": later(20)})
    assert problem_type(longer) == "invalid-request"
    assert rita.act(request_id, "approve", {"valid_until": later(5)}).status_code == 200


def test_overdue_flag_shows_pending_requests_past_their_deadline(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="healthcare-provision")
    sam = person(aw, "sam.welfare")
    assert sam.call("GET", f"/v1/access-requests/{request_id}").json()["overdue"] is False
    aw.set_answer_due(request_id, datetime.now(UTC) - timedelta(minutes=1))
    row = sam.call("GET", f"/v1/access-requests/{request_id}").json()
    assert row["overdue"] is True
    overdue = sam.call("GET", "/v1/access-requests", overdue="true").json()["requests"]
    assert request_id in [r["id"] for r in overdue]
    assert all(r["overdue"] for r in overdue)
    sam.act(request_id, "withdraw")
    row = sam.call("GET", f"/v1/access-requests/{request_id}").json()
    assert row["overdue"] is False  # only a pending request is overdue


def test_answer_due_counts_working_days(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="population-register-update")
    row = person(aw, "sam.welfare").call("GET", f"/v1/access-requests/{request_id}").json()
    requested = datetime.fromisoformat(row["requested_at"])
    assert datetime.fromisoformat(row["answer_due"]) == deadlines.add_working_days(requested, 3)
    person(aw, "sam.welfare").act(request_id, "withdraw")


# --- who may do what -------------------------------------------------------------------


def test_consumer_steward_cannot_decide_own_request(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="building-permit-processing")
    for verb, body in (("approve", {}), ("refuse", {"reason": "x"})):
        response = person(aw, "sam.welfare").act(request_id, verb, body)
        assert response.status_code == 403
        assert problem_type(response) == "forbidden"
    person(aw, "sam.welfare").act(request_id, "withdraw")


def test_no_one_approves_a_request_on_both_sides(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="business-licensing")
    response = person(aw, "bo.both").act(request_id, "approve", {})
    assert response.status_code == 403
    assert "both" in response.json()["detail"]
    person(aw, "sam.welfare").act(request_id, "withdraw")


def test_requester_cannot_approve_what_they_asked_even_as_owner_steward(
    aw: AccessWorld,
) -> None:
    bo = person(aw, "bo.both")
    asked = bo.request(purpose="anti-money-laundering")
    assert asked.status_code == 201, asked.text
    response = bo.act(asked.json()["id"], "approve", {})
    assert response.status_code == 403
    bo.act(asked.json()["id"], "withdraw")


def test_owner_steward_cannot_withdraw_and_break_glass_cannot_decide(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="tax-audit")
    assert person(aw, "rita.registry").act(request_id, "withdraw").status_code == 403
    decided = aw.break_glass().act(request_id, "approve", {})
    assert decided.status_code == 403
    assert "person" in decided.json()["detail"]
    assert aw.break_glass().call("GET", f"/v1/access-requests/{request_id}").status_code == 200
    assert aw.break_glass().act(request_id, "withdraw").status_code == 200


def test_other_departments_steward_sees_nothing_and_gets_404(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="statistics")
    tina = person(aw, "tina.tax")
    missing = "0" * 32
    for path in (f"/v1/access-requests/{request_id}", f"/v1/access-requests/{missing}"):
        response = tina.call("GET", path)
        assert response.status_code == 404
        assert problem_type(response) == "request-not-found"
    hidden = tina.act(request_id, "withdraw")
    unknown = tina.act(missing, "withdraw")
    assert (hidden.status_code, hidden.json()["detail"].replace(request_id, missing)) == (
        unknown.status_code,
        unknown.json()["detail"],
    )
    listed = tina.call("GET", "/v1/access-requests").json()["requests"]
    assert all("tax" in (r["consumer"], r["owner"]) for r in listed)
    grants = tina.call("GET", "/v1/grants").json()["grants"]
    assert all("tax" in (g["consumer"], g["owner"]) for g in grants)
    theirs = person(aw, "sam.welfare").call("GET", "/v1/grants").json()["grants"]
    assert theirs
    assert tina.call("GET", f"/v1/grants/{theirs[0]['id']}").status_code == 404
    revoke = tina.call("POST", f"/v1/grants/{theirs[0]['id']}/revoke", {"reason": "x"})
    assert revoke.status_code == 404
    person(aw, "sam.welfare").act(request_id, "withdraw")


def test_auditor_reads_everything_and_changes_nothing(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="benefit-eligibility", item="person.family-relations")
    alma = person(aw, "alma.auditor")
    assert alma.call("GET", f"/v1/access-requests/{request_id}").status_code == 200
    assert request_id in [
        r["id"] for r in alma.call("GET", "/v1/access-requests").json()["requests"]
    ]
    grants = alma.call("GET", "/v1/grants").json()["grants"]
    assert grants
    changes = [
        alma.request(),
        alma.act(request_id, "approve", {}),
        alma.act(request_id, "refuse", {"reason": "x"}),
        alma.act(request_id, "withdraw"),
        alma.call("POST", f"/v1/grants/{grants[0]['id']}/revoke", {"reason": "x"}),
    ]
    assert [r.status_code for r in changes] == [403] * 5
    assert all(problem_type(r) == "forbidden" for r in changes)
    person(aw, "sam.welfare").act(request_id, "withdraw")


def test_administrator_person_has_no_rights_over_requests_or_grants(aw: AccessWorld) -> None:
    adam = person(aw, "adam.admin")
    request_id = aw.pending(purpose="benefit-eligibility", item="person.residential-address")
    responses = [
        adam.call("GET", "/v1/access-requests"),
        adam.call("GET", f"/v1/access-requests/{request_id}"),
        adam.request(),
        adam.act(request_id, "approve", {}),
        adam.act(request_id, "withdraw"),
        adam.call("GET", "/v1/grants"),
        adam.call("GET", "/v1/admin/grants"),
        adam.call(
            "POST",
            "/v1/admin/grants",
            {"consumer": CONSUMER, "item": IDENTITY, "purpose": "statistics", "legal_basis": "x"},
        ),
    ]
    assert [r.status_code for r in responses] == [403] * len(responses)
    person(aw, "sam.welfare").act(request_id, "withdraw")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/access-requests"),
        ("POST", "/v1/access-requests"),
        ("GET", f"/v1/access-requests/{'a' * 32}"),
        ("POST", f"/v1/access-requests/{'a' * 32}/approve"),
        ("POST", f"/v1/access-requests/{'a' * 32}/refuse"),
        ("POST", f"/v1/access-requests/{'a' * 32}/withdraw"),
        ("GET", "/v1/grants"),
        ("GET", f"/v1/grants/{'a' * 32}"),
        ("POST", f"/v1/grants/{'a' * 32}/revoke"),
        ("GET", "/v1/admin/grants"),
    ],
)
def test_no_token_is_refused_with_401(aw: AccessWorld, method: str, path: str) -> None:
    response = aw.anonymous().call(method, path, {"reason": "x"} if method == "POST" else None)
    assert response.status_code == 401
    assert problem_type(response) == "not-signed-in"


def test_purposes_are_public(aw: AccessWorld) -> None:
    codes = [p["code"] for p in aw.anonymous().call("GET", "/v1/purposes").json()["purposes"]]
    for code in ("benefit-eligibility", "housing-benefit", "tax-assessment", "tax-audit"):
        assert code in codes


def test_lists_filter_by_box_status_department_and_item(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="statistics", item="person.family-relations")
    sam, rita = person(aw, "sam.welfare"), person(aw, "rita.registry")

    def ids(who: Person, **params: str) -> list[str]:
        response = who.call("GET", "/v1/access-requests", **params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["requests"]]

    assert request_id in ids(sam, box="outbox", status="pending")
    assert request_id not in ids(sam, box="inbox")
    assert request_id in ids(rita, box="inbox", item="person.family-relations")
    assert request_id not in ids(rita, status="approved")
    assert request_id in ids(person(aw, "alma.auditor"), box="inbox", department=OWNER)
    assert request_id not in ids(person(aw, "alma.auditor"), department="tax")
    sam.act(request_id, "withdraw")


# --- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        (datetime(2029, 12, 28, 10, tzinfo=UTC), 1, datetime(2029, 12, 31, 10, tzinfo=UTC)),
        # Friday + 2: Monday, then Tuesday 1 January is a holiday → Wednesday
        (datetime(2029, 12, 28, 10, tzinfo=UTC), 2, datetime(2030, 1, 2, 10, tzinfo=UTC)),
        (datetime(2029, 12, 29, 8, tzinfo=UTC), 1, datetime(2029, 12, 31, 8, tzinfo=UTC)),
        (datetime(2029, 12, 24, 0, tzinfo=UTC), 10, datetime(2030, 1, 8, 0, tzinfo=UTC)),
        (datetime(2029, 12, 24, 0, tzinfo=UTC), 0, datetime(2029, 12, 24, 0, tzinfo=UTC)),
    ],
)
def test_working_days_skip_weekends_and_holidays(start: datetime, days: int, due: datetime) -> None:
    assert deadlines.add_working_days(start, days, [HOLIDAY]) == due


def test_working_days_without_holidays_count_only_weekends() -> None:
    friday = datetime(2029, 12, 28, 10, tzinfo=UTC)
    assert deadlines.add_working_days(friday, 2) == datetime(2030, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="negative"):
        deadlines.add_working_days(friday, -1)


def test_project_purpose_list_holds_the_required_codes() -> None:
    (installed,) = [path for path in purposes._installed() if path.is_file()]
    checkout = Path(__file__).resolve().parents[3] / "config" / "purposes.toml"
    assert installed.read_bytes() == checkout.read_bytes()
    listed = purposes.load(installed)
    codes = {p.code for p in listed.purposes}
    required = {"benefit-eligibility", "housing-benefit", "tax-assessment", "tax-audit"}
    assert required | {"statistics"} <= codes
    assert all(
        purposes.PURPOSE_CODE.match(code) and p.title
        for code, p in zip(codes, listed.purposes, strict=False)
    )
    with pytest.raises(UnknownPurpose):
        listed.get("marketing")


def test_purposes_file_setting_wins_and_bad_lists_are_refused_clearly(tmp_path: Path) -> None:
    own = tmp_path / "purposes.toml"
    own.write_text('[[purpose]]\ncode = "census"\ntitle = "Census"\ndescription = "d"\n')
    assert [p.code for p in purposes.purposes_for(Settings(purposes_file=own)).purposes] == [
        "census"
    ]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[purpose]]\ncode = "Not A Code"\ntitle = "t"\ndescription = "d"\n')
    with pytest.raises(PurposesUnavailable, match="not a valid code"):
        purposes.load(bad)
    with pytest.raises(PurposesUnavailable, match="does not exist"):
        purposes.purposes_path(Settings(purposes_file=tmp_path / "missing.toml"))


# --- the command line -------------------------------------------------------------------


@pytest.fixture
def onceonly(aw: AccessWorld, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``onceonly`` against the world's hub; the token is set per call."""
    build = cli.build_parser

    def with_access(argv: Any = None) -> argparse.ArgumentParser:
        parser = build(argv)
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "access" not in commands.choices:  # until hub/cli/__init__.py registers it
            access_commands.register(commands)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_access)
    monkeypatch.setenv("ONCEONLY_HUB_URL", aw.url)

    def run(who: str, *argv: str) -> int:
        token = aw.people[who].token if who in aw.people else aw.break_glass().token
        monkeypatch.setenv("ONCEONLY_TOKEN", str(token))
        return cli.main(["access", *argv])

    return run


def test_cli_request_approve_exchange_revoke(
    aw: AccessWorld, onceonly: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    purpose = "benefit-eligibility"
    assert onceonly("sam.welfare", "purposes") == 0
    assert purpose in capsys.readouterr().out
    status = onceonly(
        "sam.welfare",
        "request",
        "--consumer", CONSUMER,
        "--item", "person.identity",
        "--purpose", purpose,
        "--purpose-text", "identity of an applicant",
        "--legal-basis", "Social Welfare Act §12",
        "--fields", "given_name,family_name,date_of_birth",
    )  # fmt: skip
    assert status == 0
    request_id = json.loads(capsys.readouterr().out)["id"]
    assert onceonly("rita.registry", "list", "--box", "inbox", "--status", "pending") == 0
    assert request_id in capsys.readouterr().out
    status = onceonly("rita.registry", "approve", request_id, "--fields", "given_name,family_name")
    assert status == 0
    grant_id = json.loads(capsys.readouterr().out)["grant_id"]
    assert onceonly("sam.welfare", "show", request_id) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["fields"] == [
        "family_name",
        "given_name",
    ]
    assert onceonly("sam.welfare", "grants") == 0
    assert grant_id in capsys.readouterr().out
    assert onceonly("sam.welfare", "renew", grant_id, "--purpose-text", "one more year") == 0
    renewal = json.loads(capsys.readouterr().out)
    assert (renewal["status"], renewal["purpose_text"]) == ("pending", "one more year")
    assert renewal["requested_fields"] == ["family_name", "given_name"]
    assert onceonly("sam.welfare", "withdraw", renewal["id"]) == 0
    capsys.readouterr()
    assert onceonly("rita.registry", "revoke", grant_id, "--reason", "done") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "revoked"


def test_cli_refusal_exits_1_with_the_problem_and_unreachable_exits_2(
    aw: AccessWorld,
    onceonly: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_id = aw.pending(purpose="housing-benefit", item="person.family-relations")
    assert onceonly("sam.welfare", "approve", request_id) == 1
    assert capsys.readouterr().err.startswith("refused: ")
    with pytest.raises(SystemExit, match="--fields needs at least one field name"):
        onceonly("rita.registry", "approve", request_id, "--fields", " , ")
    assert onceonly("rita.registry", "refuse", request_id, "--reason", "not needed") == 0
    capsys.readouterr()
    assert onceonly("sam.welfare", "withdraw", request_id) == 1
    assert "refused" in capsys.readouterr().err
    monkeypatch.setenv("ONCEONLY_HUB_URL", "http://127.0.0.1:9")
    assert onceonly("sam.welfare", "list") == 2
    assert "cannot reach" in capsys.readouterr().err


def test_every_refusal_in_the_lifecycle_is_audited_with_its_reason(aw: AccessWorld) -> None:
    """Deny by default, and say so in the log: each refused step leaves an entry."""
    sam, rita, tina = (person(aw, name) for name in ("sam.welfare", "rita.registry", "tina.tax"))
    request_id = aw.pending(purpose="statistics")
    refusals = [
        # (response, action, reason)
        (sam.act(request_id, "approve", {}), "access.approve", "forbidden"),
        (
            tina.act(request_id, "refuse", {"reason": "not mine"}),
            "access.refuse",
            "request-not-found",
        ),
        (rita.act(request_id, "withdraw"), "access.withdraw", "forbidden"),
        (sam.request(purpose="statistics"), "access.request", "duplicate-request"),
        (sam.request(item="tax.audit-risk-assessment"), "access.request", "item-not-shared"),
        (tina.request(purpose="statistics"), "access.request", "forbidden"),
        (sam.request(purpose="tax-audit", fields=None), "access.request", "invalid-request"),
    ]
    for response, action, reason in refusals:
        assert response.status_code >= 400, response.text
        assert problem_type(response) == reason
        entry = audit_entry_for(aw.world.hub, response, action=action)
        assert (entry["outcome"], entry["reason"]) == ("refused", reason), action
    assert sam.act(request_id, "withdraw").status_code == 200


@pytest.mark.parametrize("until", ["2099-01-01T00:00:00", "next year", 20990101])
def test_break_glass_grant_needs_a_time_with_its_offset(aw: AccessWorld, until: object) -> None:
    """A time without an offset was compared with an aware one: a 500, before."""
    body = {
        "consumer": CONSUMER,
        "item": IDENTITY,
        "purpose": "statistics",
        "legal_basis": "test",
        "valid_until": until,
    }
    response = aw.break_glass().call("POST", "/v1/admin/grants", body)
    assert response.status_code == 400, response.text
    assert problem_type(response) == "invalid-request"
    assert "valid_until" in response.json()["detail"]


def test_break_glass_grant_names_a_purpose_on_the_list(aw: AccessWorld) -> None:
    """As an access request does (unknown-purpose, 400): before, the break-glass grant
    took any code and made a grant for it (201)."""
    body = {
        "consumer": CONSUMER,
        "item": ADDRESS,
        "purpose": "curiosity",
        "legal_basis": "test",
        "fields": ["country"],
    }
    response = aw.break_glass().call("POST", "/v1/admin/grants", body)
    assert (response.status_code, problem_type(response)) == (400, "unknown-purpose")
    entry = audit_entry_for(aw.world.hub, response, action="grant.create")
    assert (entry["outcome"], entry["reason"], entry["purpose"]) == (
        "refused",
        "unknown-purpose",
        "curiosity",
    )
    listed = aw.break_glass().call("GET", "/v1/admin/grants", consumer=CONSUMER).json()
    assert [g for g in listed["grants"] if g["purpose"] == "curiosity"] == []
