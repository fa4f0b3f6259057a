"""A decision the console refuses for a role that may not decide names the request it
was about: an auditor (who reads every request, and decides none) posting the approve
or refuse form leaves an audit entry whose target is that request (review 176: the
role was checked before the target was noted, so the entry had none)."""

from collections.abc import Iterator

import pytest

from tests.hub.console.console_world import (
    AUDITOR,
    OTHER_STEWARD,
    ConsoleWorld,
    console_world,
    csrf_token,
)
from tests.hub.console.test_steward_pages import ITEM, ask
from tests.hub_testing import DATABASES, added_audit_entries, module_database


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleWorld]:
    with console_world(
        database_url=module_database(request, tmp_path_factory),
        data_dir=tmp_path_factory.mktemp("hub"),
    ) as built:
        yield built


@pytest.mark.parametrize(
    ("verb", "form"), [("approve", {"field-0": "city"}), ("refuse", {"reason": "no"})]
)
def test_an_auditors_refused_decision_names_the_request(
    world: ConsoleWorld, verb: str, form: dict[str, str]
) -> None:
    with world.signed_in(OTHER_STEWARD) as tomas:
        request_id = ask(tomas, ITEM, ["city"], "benefit-eligibility")
    with world.signed_in(AUDITOR) as ivo:
        shown = ivo.get(f"/requests/{request_id}")
        assert shown.status_code == 200
        with added_audit_entries(world.hub, action=f"access.{verb}") as refused:
            forged = ivo.post(
                f"/requests/{request_id}/{verb}",
                data={"csrf_token": csrf_token(shown.text), **form},
            )
        assert forged.status_code == 403
    assert [(e["outcome"], e["reason"], e["person"]) for e in refused] == [
        ("refused", "forbidden", AUDITOR)
    ]
    assert refused[0].get("target") == request_id
    with world.signed_in(OTHER_STEWARD) as tomas:
        page = tomas.get(f"/requests/{request_id}")
        tomas.post(f"/requests/{request_id}/withdraw", data={"csrf_token": csrf_token(page.text)})
