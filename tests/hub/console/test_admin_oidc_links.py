"""The console's account form and OpenID Connect subjects, over HTTP on SQLite and
PostgreSQL: a subject another account holds is answered with the form and an error
next to the subject's field that names no account (before: the API's JSON problem of a
500), audited as the API's refusal; a subject the identifier rule refuses (a zero-width
space, a bidirectional control, a full-width form) is a field error in words, and nothing
is linked (before: stored as typed)."""

from collections.abc import Iterator

import httpx
import pytest

from tests.hub.console.console_world import (
    ADMINISTRATOR,
    ConsoleWorld,
    console_world,
    csrf_token,
    post_served_form,
)
from tests.hub.oidc_provider import CLIENT_ID, CLIENT_SECRET, running_provider
from tests.hub_testing import DATABASES, added_audit_entries, module_database

TAKEN = "This OpenID Connect subject is already linked to another account"
SPELLING = (
    "Enter the subject exactly as the provider sends it, without invisible characters (such"
    " as direction marks and zero-width spaces) or full-width forms"
)


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleWorld]:
    with (
        running_provider() as provider,
        console_world(
            database_url=module_database(request, tmp_path_factory),
            data_dir=tmp_path_factory.mktemp("hub"),
            oidc_issuer=provider.url,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
        ) as built,
    ):
        with built.hub.admin() as admin:
            for username in ("aurora", "walter"):
                body = {"oidc_subject": f"sub-{username}", "roles": [{"role": "auditor"}]}
                admin.call("PUT", f"/v1/admin/people/{username}", body)
        yield built


def _edit(browser: httpx.Client, username: str, subject: str) -> httpx.Response:
    page = f"/admin/people/{username}/edit"
    shown = browser.get(page).text
    fields = {"csrf_token": csrf_token(shown), "role": "auditor", "oidc_subject": subject}
    return post_served_form(browser, shown, page, fields)


def test_a_subject_another_account_holds_is_a_field_error_naming_nobody(
    world: ConsoleWorld,
) -> None:
    with (
        world.signed_in(ADMINISTRATOR) as browser,
        added_audit_entries(world.hub, action="person.put") as entries,
    ):
        answer = _edit(browser, "walter", "sub-aurora")

    assert answer.status_code == 409, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert f'<a href="#oidc_subject">{TAKEN}</a>' in answer.text
    assert "aurora" not in answer.text.replace("sub-aurora", "")
    assert [(e["outcome"], e["reason"], e["person"], e["target"]) for e in entries] == [
        ("refused", "person-conflict", ADMINISTRATOR, "walter")
    ]
    with world.hub.admin() as admin:  # nothing changed
        assert admin.call("GET", "/v1/admin/people/walter")["sign_in"] == ["oidc"]


@pytest.mark.parametrize(
    "subject",
    ["sub-walter\u200b", "sub-\u202ewalter", "sub-\uff57alter"],
    ids=["zwsp", "rlo", "fw"],
)
def test_a_subject_the_identifier_rule_refuses_is_a_field_error_in_words(
    world: ConsoleWorld, subject: str
) -> None:
    """Decision 0072's rule for identifiers, as the API applies it to ``oidc_subject``:
    the form names the field and what to remove, and echoes nothing of the value."""
    with (
        world.signed_in(ADMINISTRATOR) as browser,
        added_audit_entries(world.hub, action="person.put") as entries,
    ):
        answer = _edit(browser, "walter", subject)

    assert answer.status_code == 400, answer.text
    assert f'<a href="#oidc_subject">{SPELLING}</a>' in answer.text
    assert [(e["outcome"], e["reason"]) for e in entries] == [("refused", "invalid-request")]
    with world.hub.admin() as admin:  # nothing changed: walter still signs in as sub-walter
        assert admin.call("GET", "/v1/admin/people/walter")["sign_in"] == ["oidc"]
