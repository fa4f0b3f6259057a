"""A citizen portal asks about a person by the identifier the record query takes, spelled
the one way the subject rule allows (decision 0072): a padded identifier, one with a
zero-width or bidirectional character, or one in full-width digits is refused 400
``invalid-request`` with the rule's reason, and the refusal is audited
(``citizen.query``). Before, each answered 200 with no accesses, "nobody read your
data", while the person's reads were filed under the identifier's one spelling.
Over HTTP, on SQLite and PostgreSQL."""

from collections.abc import Iterator

import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import HubClient, OnceonlyError, public_jwks, subject_problem

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    PURPOSE,
    World,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, added_audit_entries

PORTAL = "citizen-portal"
SUBJECT = "38001099991"  # read once in this module, by no other test
REFUSED = {
    "trailing space": SUBJECT + " ",
    "leading space": " " + SUBJECT,
    "zero-width space": SUBJECT[:4] + "\u200b" + SUBJECT[4:],
    "right-to-left override": "\u202e" + SUBJECT,
    "full-width digits": SUBJECT.translate({ord("0") + n: 0xFF10 + n for n in range(10)}),
    "Arabic-Indic digits": SUBJECT.translate({ord("0") + n: 0x0660 + n for n in range(10)}),
}


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A world in which SUBJECT's address was read once, and a citizen portal."""
    settings = {"citizen_portal_clients": [PORTAL]}
    with module_exchange_world(request, tmp_path_factory, **settings) as built:
        built.owner_store.put(ADDRESS, SUBJECT, ADDRESS_RECORD, announce=False)
        with built.client() as client:
            client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        yield built


@pytest.fixture(scope="module")
def portal(world: World) -> Iterator[HubClient]:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        admin.put_department("portal", name="State portal")
        admin.put_client(PORTAL, department="portal", jwks=public_jwks(key))
    with HubClient(world.hub.url, client_id=PORTAL, key=key, retries=0) as client:
        yield client


def test_the_identifier_itself_shows_its_read(portal: HubClient) -> None:
    (access,) = portal.citizen_access_log(SUBJECT)
    assert access["item"] == ADDRESS


@pytest.mark.parametrize("subject", REFUSED.values(), ids=REFUSED.keys())
def test_another_spelling_is_refused_with_the_rules_reason_and_audited(
    world: World, portal: HubClient, subject: str
) -> None:
    with (
        added_audit_entries(world.hub, action="citizen.query") as entries,
        pytest.raises(OnceonlyError) as refused,
    ):
        portal.citizen_access_log(subject)

    assert (refused.value.status, refused.value.problem_type) == (400, "invalid-request")
    assert f"subject: Value error, {subject_problem(subject)}" in refused.value.detail
    assert SUBJECT not in refused.value.detail
    (entry,) = entries
    assert (entry["outcome"], entry["reason"]) == ("refused", "invalid-request")
    assert SUBJECT not in str(entry)
