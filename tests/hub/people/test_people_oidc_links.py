"""Linking an account to an OpenID Connect subject (``PUT /v1/admin/people/{username}``
with ``oidc_subject``), over HTTP on SQLite and PostgreSQL.

A subject another account holds is a conflict (409 ``person-conflict``, audited as a
refusal) that never names that account; before, the database's unique (issuer, subject)
refused it as an uncaught error, a 500. A subject is spelt as the hub takes an
identifier (the subject rule of decisions 0061 and 0072): white space at either end, a
zero-width character or a bidirectional control is refused 400 ``invalid-request``
with the rule's reason, never echoing the value; before, it was stored as sent.
"""

from collections.abc import Iterator

import httpx
import pytest

from onceonly.adapters import subject_problem

from tests.hub.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from tests.hub.people import test_people_oidc
from tests.hub_testing import (
    DATABASES,
    RunningHub,
    added_audit_entries,
    module_database,
    problem_type,
    running_hub,
)

provider = test_people_oidc.provider  # its provider, for this module's hubs too


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    provider: Provider,
) -> Iterator[RunningHub]:
    with running_hub(
        database_url=module_database(request, tmp_path_factory),
        data_dir=tmp_path_factory.mktemp("hub"),
        oidc_issuer=provider.url,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    ) as running:
        for username in ("aurora", "walter"):
            assert put(running, username, f"sub-{username}").status_code == 200
        yield running


def put(hub: RunningHub, username: str, subject: str) -> httpx.Response:
    body = {"oidc_subject": subject, "roles": [{"role": "auditor"}]}
    return httpx.put(
        f"{hub.url}/v1/admin/people/{username}",
        json=body,
        headers={"Authorization": f"Bearer {hub.keys.admin_token}"},
        timeout=30,
    )


@pytest.mark.parametrize("username", ["walter", "newcomer"])
def test_a_subject_another_account_holds_is_a_conflict_that_names_nobody(
    hub: RunningHub, username: str
) -> None:
    with added_audit_entries(hub, action="person.put") as entries:
        answer = put(hub, username, "sub-aurora")

    assert answer.status_code == 409, answer.text
    assert problem_type(answer) == "person-conflict"
    assert "already linked to another account" in answer.json()["detail"]
    assert "aurora" not in answer.text.replace("sub-aurora", "")
    assert [(e["outcome"], e["reason"], e["target"]) for e in entries] == [
        ("refused", "person-conflict", username)
    ]
    assert "aurora" not in str(entries[0]).replace("sub-aurora", "")
    assert put(hub, "walter", "sub-walter").status_code == 200  # its own link, unchanged
    assert put(hub, "aurora", "sub-aurora").status_code == 200


@pytest.mark.parametrize(
    "subject",
    [" sub-walter\u200b ", "sub-walter\u200b", "sub-\u202ewalter", "sub-walter ", "sub-\u2066x"],
    ids=["spaces-and-zwsp", "zwsp", "rlo", "trailing-space", "lri"],
)
def test_a_subject_with_unseen_characters_is_refused_by_the_identifier_rule(
    hub: RunningHub, subject: str
) -> None:
    with added_audit_entries(hub, action="person.put") as entries:
        answer = put(hub, "walter", subject)

    assert answer.status_code == 400, answer.text
    assert problem_type(answer) == "invalid-request"
    reason = subject_problem(subject)
    assert reason is not None
    assert f"oidc_subject: Value error, {reason}" in answer.json()["detail"]
    assert subject not in answer.text
    assert subject.strip() not in answer.text
    assert [(e["outcome"], e["reason"]) for e in entries] == [("refused", "invalid-request")]
    with hub.admin() as admin:
        assert "oidc" in admin.call("GET", "/v1/admin/people/walter")["sign_in"]
    assert put(hub, "walter", "sub-walter").status_code == 200  # nothing else changed
