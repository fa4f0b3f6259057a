"""The auditor's subject filter takes the record query's subject rule (decision 0072):
``GET /v1/audit/entries`` and ``/v1/audit/export`` with a padded identifier, one holding
a zero-width or bidirectional character, or one in full-width or Arabic-Indic digits
answer 400 ``invalid-request`` with the rule's reason, and the refusal is audited.
Before, each answered 200 with no entries, though the person's reads are filed under
the identifier's one spelling. Over HTTP, on SQLite and PostgreSQL."""

from collections.abc import Iterator

import httpx
import pytest

from onceonly.adapters import subject_problem

from tests.hub.exchange_world import ADDRESS, PURPOSE, SUBJECT, World, module_exchange_world
from tests.hub_testing import DATABASES, added_audit_entries, problem_type, signed_in

REFUSED = {
    "trailing space": SUBJECT + " ",
    "leading tab": "\t" + SUBJECT,
    "zero-width space": SUBJECT[:4] + "\u200b" + SUBJECT[4:],
    "byte order mark": "\ufeff" + SUBJECT,
    "right-to-left override": "\u202e" + SUBJECT,
    "full-width digits": SUBJECT.translate({ord("0") + n: 0xFF10 + n for n in range(10)}),
    "Arabic-Indic digits": SUBJECT.translate({ord("0") + n: 0x0660 + n for n in range(10)}),
}
ROUTES = {"/v1/audit/entries": "audit.query", "/v1/audit/export": "audit.export"}


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory) as built:
        with built.client() as client:
            client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        yield built


@pytest.fixture(scope="module")
def auditor(world: World) -> dict[str, str]:
    return signed_in(world.hub, "alma", {"role": "auditor"})


def test_the_identifier_itself_finds_the_read(world: World, auditor: dict[str, str]) -> None:
    page = httpx.get(
        f"{world.hub.url}/v1/audit/entries",
        params={"subject": SUBJECT, "action": "record.query"},
        headers=auditor,
    )
    assert page.status_code == 200, page.text
    (found,) = page.json()["entries"]
    assert found["entry"]["subject"] == world.hub.keys.pseudonym(SUBJECT)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("subject", REFUSED.values(), ids=REFUSED.keys())
def test_another_spelling_is_refused_with_the_rules_reason_and_audited(
    world: World, auditor: dict[str, str], route: str, subject: str
) -> None:
    with added_audit_entries(world.hub, action=ROUTES[route]) as entries:
        answer = httpx.get(f"{world.hub.url}{route}", params={"subject": subject}, headers=auditor)

    assert answer.status_code == 400, answer.text
    assert problem_type(answer) == "invalid-request"
    assert f"query.subject: Value error, {subject_problem(subject)}" in answer.json()["detail"]
    assert SUBJECT not in answer.text
    mine = [entry for entry in entries if entry.get("person") == "alma"]
    assert [(e["outcome"], e["reason"]) for e in mine] == [("refused", "invalid-request")]
    assert all(SUBJECT not in str(entry) for entry in entries)
