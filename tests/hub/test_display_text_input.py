"""Text the hub shows people takes the display-text rule (onceonly.hub.kit.strict,
decision 0072): a department's name and description, a person's display name, an
item's title, description, tags and legal basis, an access request's purpose and legal
basis, a reason given for a decision. A bidirectional control (``"Tax\\u202eBoard"`` is
shown as "TaxdraoB") or a zero-width character is refused 400 ``invalid-request`` with
the rule's reason, and the refusal is audited; the text without it is taken (free text
with its lines). Before, each was stored and shown as sent. Over real HTTP, on SQLite
and PostgreSQL."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from onceonly.hub.kit.strict import display_text_problem

from tests.hub.access_world import PASSWORD, AccessWorld, access_world
from tests.hub.exchange_world import ADDRESS
from tests.hub_testing import DATABASES, added_audit_entries, load_item, module_database

RLO, ZWSP, LRI = "\u202e", "\u200b", "\u2066"


@pytest.fixture(scope="module", params=DATABASES)
def aw(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AccessWorld]:
    with access_world(
        database_url=module_database(request, tmp_path_factory),
        tmp_path=tmp_path_factory.mktemp("world"),
    ) as built:
        yield built


@dataclass(frozen=True)
class Case:
    """One body member that people read: who sends it where, and the route's action."""

    action: str
    field: str
    send: Callable[[AccessWorld, str], httpx.Response]  # the member's text → the answer


def _department(aw: AccessWorld, text: str, *, field: str) -> httpx.Response:
    body = {"name": "Display Test Board", "description": "", field: text}
    return aw.people["adam.admin"].call("PUT", "/v1/admin/departments/display-test", body)


def _person(aw: AccessWorld, text: str) -> httpx.Response:
    body = {"display_name": text, "password": PASSWORD}
    return aw.people["adam.admin"].call("PUT", "/v1/admin/people/display.person", body)


def _item(
    aw: AccessWorld, text: str, *, change: Callable[[dict[str, Any], str], None]
) -> httpx.Response:
    document = load_item(ADDRESS)
    change(document, text)
    return aw.people["rita.registry"].call("PUT", f"/v1/admin/items/{ADDRESS}", document)


def _set(name: str) -> Callable[[dict[str, Any], str], None]:
    return lambda document, text: document.__setitem__(name, text)


def _request(aw: AccessWorld, text: str, *, field: str) -> httpx.Response:
    answer = aw.people["sam.welfare"].request(purpose="statistics", **{field: text})
    if answer.status_code == 201:  # let the next case file the same request
        assert aw.people["sam.welfare"].act(answer.json()["id"], "withdraw").status_code == 200
    return answer


def _decide(aw: AccessWorld, text: str, *, verb: str) -> httpx.Response:
    request_id = aw.pending(purpose="statistics")
    answer = aw.people["rita.registry"].act(request_id, verb, {"reason": text})
    if answer.status_code != 200:
        aw.people["sam.welfare"].act(request_id, "withdraw")
    return answer


def _grant(aw: AccessWorld) -> str:
    request_id = aw.pending(purpose="statistics")
    approved = aw.people["rita.registry"].act(request_id, "approve", {})
    assert approved.status_code == 200, approved.text
    return str(approved.json()["grant_id"])


def _revoke(aw: AccessWorld, text: str) -> httpx.Response:
    grant_id = _grant(aw)
    answer = aw.people["rita.registry"].call(
        "POST", f"/v1/grants/{grant_id}/revoke", {"reason": text}
    )
    if answer.status_code != 200:
        aw.people["rita.registry"].call("POST", f"/v1/grants/{grant_id}/revoke", {"reason": "x"})
    return answer


def _renew(aw: AccessWorld, text: str) -> httpx.Response:
    grant_id = _grant(aw)
    sam = aw.people["sam.welfare"]
    answer = sam.call("POST", f"/v1/grants/{grant_id}/renew", {"purpose_text": text})
    if answer.status_code == 201:
        assert sam.act(answer.json()["id"], "withdraw").status_code == 200
    aw.people["rita.registry"].call("POST", f"/v1/grants/{grant_id}/revoke", {"reason": "done"})
    return answer


CASES = {
    "department name": Case(
        "registry.department.put", "name", lambda aw, t: _department(aw, t, field="name")
    ),
    "department description": Case(
        "registry.department.put",
        "description",
        lambda aw, t: _department(aw, t, field="description"),
    ),
    "display name": Case("person.put", "display_name", _person),
    "item title": Case(
        "registry.item.put", "title", lambda aw, t: _item(aw, t, change=_set("title"))
    ),
    "item description": Case(
        "registry.item.put", "description", lambda aw, t: _item(aw, t, change=_set("description"))
    ),
    "item tag": Case(
        "registry.item.put",
        "tags.0",
        lambda aw, t: _item(aw, t, change=lambda d, text: d.__setitem__("tags", [text])),
    ),
    "item legal basis": Case(
        "registry.item.put",
        "legal_basis.text",
        lambda aw, t: _item(
            aw, t, change=lambda d, text: d["legal_basis"].__setitem__("text", text)
        ),
    ),
    "purpose text": Case(
        "access.request", "purpose_text", lambda aw, t: _request(aw, t, field="purpose_text")
    ),
    "request's legal basis": Case(
        "access.request", "legal_basis", lambda aw, t: _request(aw, t, field="legal_basis")
    ),
    "refusal's reason": Case(
        "access.refuse", "reason", lambda aw, t: _decide(aw, t, verb="refuse")
    ),
    "approval's reason": Case(
        "access.approve", "reason", lambda aw, t: _decide(aw, t, verb="approve")
    ),
    "revocation's reason": Case("grant.revoke", "reason", _revoke),
    "renewal's purpose text": Case("grant.renew", "purpose_text", _renew),
}
# Free text (a description, a purpose, a reason) may have lines; a name is one line.
ONE_LINE = {"department name", "display name", "item title", "item tag"}
SHOWN = {name: "Tax Board" if name in ONE_LINE else "Tax Board\r\nsecond line" for name in CASES}
SHOWN["item tag"] = "address"


@pytest.mark.parametrize("invisible", [RLO, ZWSP, LRI], ids=["RLO", "ZWSP", "LRI"])
@pytest.mark.parametrize("name", CASES)
def test_an_invisible_character_is_refused_with_the_rules_reason_and_audited(
    aw: AccessWorld, name: str, invisible: str
) -> None:
    case = CASES[name]
    text = f"Tax{invisible}Board"
    with added_audit_entries(aw.world.hub, action=case.action) as entries:
        answer = case.send(aw, text)

    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == "urn:onceonly:problem:invalid-request"
    reason = display_text_problem(text, lines=name not in ONE_LINE)
    assert f"{case.field}: Value error, the text {reason}" in answer.json()["detail"]
    refused = [e for e in entries if e["outcome"] == "refused"]
    assert [e["reason"] for e in refused] == ["invalid-request"]


@pytest.mark.parametrize("name", CASES)
def test_the_text_without_it_is_taken(aw: AccessWorld, name: str) -> None:
    answer = CASES[name].send(aw, SHOWN[name])
    assert answer.status_code in (200, 201, 202), answer.text


@pytest.mark.parametrize("name", sorted(ONE_LINE))
def test_a_name_is_one_line(aw: AccessWorld, name: str) -> None:
    answer = CASES[name].send(aw, "Tax\nBoard")
    assert answer.status_code == 400, answer.text
    assert "line break" in answer.json()["detail"]
