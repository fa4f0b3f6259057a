"""What a request puts in an audit entry's indexed columns fits them on both stores.

The columns (``client``, ``department``, ``item``, ``subject``) are bounded on
PostgreSQL. A value from a request that is longer than its column made the store
refuse the whole group commit it rode in: every request batched with it answered 503
and ``/readyz`` went red (docs/decisions/0044). The console's steward pages took the
item id from their path as it came: a path naming no item is now refused as not found
before it reaches an entry. SQLite and PostgreSQL.
"""

from collections.abc import Iterator

import httpx
import pytest

from tests.hub.console.console_world import (
    ADMINISTRATOR,
    STEWARD,
    ConsoleWorld,
    console_world,
    csrf_token,
)
from tests.hub_testing import DATABASES, audit_entry_for, module_database

NO_ITEM = "person." + "x" * 200  # an item id's shape, longer than the item column (128)


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
    ("page", "form", "audited_as"),
    [
        ("deprecate", {}, "registry.item.deprecate"),
        ("retire", {}, "registry.item.retire"),
        (
            "versions/new",
            {"schema": '{"type": "object"}', "action": "register"},
            "registry.item.version",
        ),
    ],
)
def test_a_steward_page_for_a_path_naming_no_item_is_not_found_and_the_writer_stays_ready(
    world: ConsoleWorld, page: str, form: dict[str, str], audited_as: str
) -> None:
    """Before, on PostgreSQL: 503 audit-unavailable, after five failed commits."""
    with world.signed_in(STEWARD) as cecilia:
        token = csrf_token(cecilia.get("/catalogue/person.death/lifecycle").text)
        answer = cecilia.post(f"/catalogue/{NO_ITEM}/{page}", data={"csrf_token": token, **form})
    assert answer.status_code == 404, answer.text
    entry = audit_entry_for(world.hub, answer, action=audited_as)
    assert (entry["outcome"], entry["reason"], entry.get("item")) == (
        "refused",
        "unknown-item",
        None,
    )
    assert httpx.get(f"{world.url}/readyz").status_code == 200


def test_a_new_department_form_with_an_overlong_id_is_refused_and_the_writer_stays_ready(
    world: ConsoleWorld,
) -> None:
    """Before, on PostgreSQL: 503 audit-unavailable (the id in the department column)."""
    with world.signed_in(ADMINISTRATOR) as ada:
        token = csrf_token(ada.get("/admin/new-department").text)
        form = {"csrf_token": token, "id": "d" * 100, "name": "Too long", "description": ""}
        answer = ada.post("/admin/new-department", data=form)
    assert answer.status_code == 400, answer.text
    entry = audit_entry_for(world.hub, answer, action="registry.department.put")
    assert (entry["outcome"], entry["reason"], entry.get("department")) == (
        "refused",
        "invalid-request",
        None,
    )
    assert httpx.get(f"{world.url}/readyz").status_code == 200
