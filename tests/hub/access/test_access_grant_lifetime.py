"""A grant lasts at most ``grant_max_days`` from its approval, whatever was asked; the
consumer's steward renews it with a new access request that the owner decides; grants
from before (without an end) get one from migration 0011. Over real HTTP on SQLite and
PostgreSQL; the cap as a table; the migration on SQLite.
"""

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from onceonly.hub.access.service import capped_until
from onceonly.hub.config import Settings
from onceonly.hub.db import make_sync_engine
from onceonly.hub.migrate import upgrade

from tests.hub.access_world import AccessWorld, access_world
from tests.hub.exchange_world import ADDRESS, CONSUMER
from tests.hub_testing import DATABASES, audit_entry_for, module_database, problem_type

MAX_DAYS = 30
NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("asked", "max_days", "until"),
    [
        (None, 30, NOW + timedelta(days=30)),
        (NOW + timedelta(days=10), 30, NOW + timedelta(days=10)),
        (NOW + timedelta(days=30), 30, NOW + timedelta(days=30)),
        (NOW + timedelta(days=31), 30, NOW + timedelta(days=30)),
        (NOW + timedelta(days=3650), 365, NOW + timedelta(days=365)),
        (None, 0, None),  # no maximum: development only
        (NOW + timedelta(days=3650), 0, NOW + timedelta(days=3650)),
        (datetime(2030, 6, 2, 2, 0, tzinfo=UTC).astimezone(), 30, datetime(2030, 6, 2, 2, 0)),
    ],
)
def test_a_grant_ends_at_the_earlier_of_what_was_asked_and_the_maximum(
    asked: datetime | None, max_days: int, until: datetime | None
) -> None:
    capped = capped_until(asked, now=NOW, max_days=max_days)
    assert capped == (until.replace(tzinfo=UTC) if until is not None else None)
    assert capped is None or capped.utcoffset() == timedelta(0)


def test_production_refuses_grants_without_a_maximum_lifetime(tmp_path: Path) -> None:
    production = {
        "mode": "production",
        "issuer": "https://hub.example",
        "database_url": "postgresql://hub@db/hub",
        "data_dir": tmp_path,
    }
    assert Settings(**production).grant_max_days == 365
    with pytest.raises(ValidationError, match="grant_max_days"):
        Settings(**production, grant_max_days=0)
    assert Settings(data_dir=tmp_path, grant_max_days=0).grant_max_days == 0


@pytest.fixture(scope="module", params=DATABASES)
def aw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AccessWorld]:
    with access_world(
        database_url=module_database(request, tmp_path_factory),
        tmp_path=tmp_path_factory.mktemp("world"),
        grant_max_days=MAX_DAYS,
    ) as built:
        yield built


def in_days(days: int) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


def assert_ends_about(valid_until: str | None, days: int) -> None:
    assert valid_until is not None, "a grant without an end"
    assert abs(datetime.fromisoformat(valid_until) - in_days(days)) < timedelta(minutes=5)


def test_a_request_without_an_end_is_granted_for_the_maximum(aw: AccessWorld) -> None:
    request_id = aw.pending(purpose="child-benefit")
    approved = aw.people["rita.registry"].act(request_id, "approve", {})
    assert approved.status_code == 200, approved.text
    assert_ends_about(approved.json()["decision"]["valid_until"], MAX_DAYS)
    grant = aw.people["sam.welfare"].call("GET", f"/v1/grants/{approved.json()['grant_id']}")
    assert_ends_about(grant.json()["valid_until"], MAX_DAYS)


def test_a_longer_request_is_granted_for_the_maximum_a_shorter_one_as_asked(
    aw: AccessWorld,
) -> None:
    rita = aw.people["rita.registry"]
    longer = aw.pending(purpose="housing-benefit", valid_until=in_days(400).isoformat())
    assert_ends_about(rita.act(longer, "approve", {}).json()["decision"]["valid_until"], MAX_DAYS)
    shorter = aw.pending(purpose="debt-collection", valid_until=in_days(10).isoformat())
    assert_ends_about(rita.act(shorter, "approve", {}).json()["decision"]["valid_until"], 10)


def test_an_unconditional_item_is_granted_for_the_maximum(aw: AccessWorld) -> None:
    response = aw.people["tina.tax"].request(
        consumer="tax", item="business.registration", purpose="tax-audit"
    )
    assert response.status_code == 201, response.text
    grant = aw.people["tina.tax"].call("GET", f"/v1/grants/{response.json()['grant_id']}")
    assert_ends_about(grant.json()["valid_until"], MAX_DAYS)


def test_a_break_glass_grant_is_capped_too(aw: AccessWorld) -> None:
    body = {
        "consumer": "tax",
        "item": ADDRESS,
        "purpose": "statistics",
        "legal_basis": "Statistics Act §3",
    }
    made = aw.break_glass().call("POST", "/v1/admin/grants", body)
    assert made.status_code == 201, made.text
    assert_ends_about(made.json()["valid_until"], MAX_DAYS)
    again = aw.break_glass().call("POST", "/v1/admin/grants", body)
    assert again.json()["id"] == made.json()["id"]  # asking again returns the same grant
    longer = {**body, "valid_until": in_days(900).isoformat()}
    assert_ends_about(
        aw.break_glass().call("POST", "/v1/admin/grants", longer).json()["valid_until"], MAX_DAYS
    )


# --- renewal ---------------------------------------------------------------------------


def granted(aw: AccessWorld, purpose: str) -> dict[str, str]:
    request_id = aw.pending(purpose=purpose, fields=["given_name", "family_name"])
    approved = aw.people["rita.registry"].act(request_id, "approve", {"reason": "fine"})
    assert approved.status_code == 200, approved.text
    return {"request": request_id, "grant": str(approved.json()["grant_id"])}


def test_the_consumer_renews_a_grant_with_a_request_the_owner_decides(aw: AccessWorld) -> None:
    first = granted(aw, "population-register-update")
    sam, rita = aw.people["sam.welfare"], aw.people["rita.registry"]
    renewal = sam.call("POST", f"/v1/grants/{first['grant']}/renew", {})
    assert renewal.status_code == 201, renewal.text
    asked = renewal.json()
    assert asked["status"] == "pending"
    assert (asked["consumer"], asked["item"], asked["purpose"]) == (
        CONSUMER,
        "person.identity",
        "population-register-update",
    )
    assert asked["requested_fields"] == ["family_name", "given_name"]
    assert asked["legal_basis"] == "Social Welfare Act §12"
    assert asked["purpose_text"] == "checking the applicant's identity for a benefit"
    entry = audit_entry_for(aw.world.hub, renewal, action="grant.renew")
    assert (entry["outcome"], entry["person"]) == ("ok", "sam.welfare")
    assert (entry["grant"], entry["target"]) == (first["grant"], asked["id"])

    twice = sam.call("POST", f"/v1/grants/{first['grant']}/renew", {})
    assert (twice.status_code, problem_type(twice)) == (409, "duplicate-request")

    approved = rita.act(asked["id"], "approve", {})
    assert approved.status_code == 200, approved.text
    new_grant = approved.json()["grant_id"]
    assert new_grant != first["grant"]
    old = sam.call("GET", f"/v1/grants/{first['grant']}").json()
    assert old["status"] == "active"  # runs until its own end
    assert_ends_about(sam.call("GET", f"/v1/grants/{new_grant}").json()["valid_until"], MAX_DAYS)


def test_a_renewal_may_ask_for_an_end_and_new_words(aw: AccessWorld) -> None:
    first = granted(aw, "anti-money-laundering")
    until = in_days(20).isoformat()
    body = {"purpose_text": "the checks go on for a year", "valid_until": until}
    renewal = aw.people["sam.welfare"].call("POST", f"/v1/grants/{first['grant']}/renew", body)
    assert renewal.status_code == 201, renewal.text
    assert renewal.json()["purpose_text"] == "the checks go on for a year"
    assert datetime.fromisoformat(renewal.json()["valid_until"]) == datetime.fromisoformat(until)
    aw.people["sam.welfare"].act(renewal.json()["id"], "withdraw")


@pytest.mark.parametrize(
    ("who", "status", "slug"),
    [
        ("rita.registry", 403, "forbidden"),  # the owner decides; it does not ask
        ("tina.tax", 404, "grant-not-found"),
        ("alma.auditor", 403, "forbidden"),
        ("adam.admin", 403, "forbidden"),
    ],
)
def test_only_the_consumers_steward_renews(
    aw: AccessWorld, who: str, status: int, slug: str
) -> None:
    first = granted(aw, "building-permit-processing")
    try:
        response = aw.people[who].call("POST", f"/v1/grants/{first['grant']}/renew", {})
        assert (response.status_code, problem_type(response)) == (status, slug)
    finally:
        aw.people["sam.welfare"].call(
            "POST", f"/v1/grants/{first['grant']}/revoke", {"reason": "test done"}
        )


def test_a_revoked_grant_is_not_renewed(aw: AccessWorld) -> None:
    first = granted(aw, "education-admission")
    sam = aw.people["sam.welfare"]
    sam.call("POST", f"/v1/grants/{first['grant']}/revoke", {"reason": "no longer needed"})
    response = sam.call("POST", f"/v1/grants/{first['grant']}/renew", {})
    assert (response.status_code, problem_type(response)) == (409, "grant-not-active")


def end_by_hand(aw: AccessWorld, grant_id: str, end: datetime) -> None:
    """Move a grant's end (as if it had been made long ago), in the hub's own form."""
    engine = make_sync_engine(aw.database_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE grants SET valid_until = :end WHERE id = :id"),
            {"end": end, "id": grant_id},
        )
    engine.dispose()


def test_an_expired_grant_is_not_revoked(aw: AccessWorld) -> None:
    """Revoking a grant no longer active is grant-not-active (docs/access.md), an expired
    one too: before, it answered 200 and rewrote it to revoked with a grant.revoke entry."""
    grant_id = granted(aw, "vehicle-registration")["grant"]
    ended = datetime.now(UTC) - timedelta(seconds=5)
    end_by_hand(aw, grant_id, ended)
    rita = aw.people["rita.registry"]
    assert rita.call("GET", f"/v1/grants/{grant_id}").json()["status"] == "expired"
    response = rita.call("POST", f"/v1/grants/{grant_id}/revoke", {"reason": "no longer needed"})
    assert (response.status_code, problem_type(response)) == (409, "grant-not-active")
    assert "expired at" in response.json()["detail"]
    assert response.json()["detail"].endswith("Z")  # as the grant's JSON shows it
    entry = audit_entry_for(aw.world.hub, response, action="grant.revoke")
    assert (entry["outcome"], entry["reason"], entry["grant"]) == (
        "refused",
        "grant-not-active",
        grant_id,
    )
    after = rita.call("GET", f"/v1/grants/{grant_id}").json()
    assert (after["status"], after["revoked_by"], after["revoked_at"]) == ("expired", None, None)
    # The break-glass route stays idempotent: the grant is answered as it is.
    emergency = aw.break_glass().call("POST", f"/v1/admin/grants/{grant_id}/revoke")
    assert emergency.status_code == 200, emergency.text
    assert (emergency.json()["status"], emergency.json()["revoked_by"]) == ("expired", None)


# --- grants from before ----------------------------------------------------------------


def test_the_upgrade_gives_grants_without_an_end_the_default_maximum(tmp_path: Path) -> None:
    path = tmp_path / "step.db"
    upgrade(f"sqlite:///{path}", "0010")
    far = "2099-01-01 00:00:00.000000"
    soon = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(path) as conn:  # foreign keys are not enforced on a bare connection
        for grant_id, until, status in (
            ("a" * 32, None, "active"),
            ("b" * 32, far, "active"),
            ("c" * 32, soon, "active"),
            ("d" * 32, None, "revoked"),
        ):
            conn.execute(
                "INSERT INTO grants (id, consumer_id, item_id, purpose, legal_basis, valid_from,"
                " valid_until, status, created_at) VALUES (?, 'tax', 'x.item', 'statistics', '',"
                " '2026-01-01 00:00:00', ?, ?, '2026-01-01 00:00:00')",
                (grant_id, until, status),
            )
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        ends = dict(conn.execute("SELECT id, valid_until FROM grants").fetchall())
    year = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=365)
    for grant_id in ("a" * 32, "b" * 32):
        assert abs(datetime.fromisoformat(ends[grant_id]) - year) < timedelta(minutes=5)
    assert ends["c" * 32] == soon
    assert ends["d" * 32] is None  # a revoked grant has ended already
