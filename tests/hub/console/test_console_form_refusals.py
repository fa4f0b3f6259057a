"""A console form refused for its CSRF token (``console.form-refused``), over HTTP on
SQLite and PostgreSQL: the entry names the person whose live sign-in sent it (read
only: the sign-in is not extended or replaced) and the route's template as target, not
the address as typed. Before, it named nobody and kept the raw path (up to 200
characters, whatever ids were in it)."""

from collections.abc import Iterator

import pytest

from tests.hub.console.console_world import (
    AUDITOR,
    OTHER_STEWARD,
    STEWARD,
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


def test_a_signed_in_persons_refused_form_names_them_and_the_route(world: ConsoleWorld) -> None:
    request_id = "f" * 32
    with (
        world.signed_in(STEWARD) as browser,
        added_audit_entries(world.hub, action="console.form-refused") as added,
    ):
        session = browser.cookies["onceonly-console"]
        answer = browser.post(f"/requests/{request_id}/approve", data={"reason": "x"})
        assert answer.status_code == 403
        assert "set-cookie" not in answer.headers  # the sign-in is neither extended nor replaced
        assert browser.cookies["onceonly-console"] == session
        assert browser.get("/account").status_code == 200  # and still signed in
    assert [(e["outcome"], e["reason"], e.get("person"), e["target"]) for e in added] == [
        ("refused", "forbidden", STEWARD, "/requests/{request_id}/approve")
    ]


def test_a_form_without_a_live_sign_in_names_nobody(world: ConsoleWorld) -> None:
    with world.signed_in(AUDITOR) as signed_out:
        token = csrf_token(signed_out.get("/account").text)
        assert signed_out.post("/sign-out", data={"csrf_token": token}).status_code == 303
        ended = signed_out.cookies.get("onceonly-console") or "oop_" + "e" * 43
    with (
        world.browser() as stranger,
        world.browser() as after_sign_out,
        added_audit_entries(world.hub, action="console.form-refused") as added,
    ):
        assert stranger.post("/sign-in", data={"csrf_token": "forged"}).status_code == 403
        after_sign_out.cookies.set("onceonly-console", ended)
        refused = after_sign_out.post("/sign-in", data={"csrf_token": "forged"})
        assert refused.status_code == 403
    assert [(e.get("person"), e["target"]) for e in added] == [
        (None, "/sign-in"),
        (None, "/sign-in"),
    ]


@pytest.mark.parametrize(
    "sent_from",
    [
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example.gov"},
    ],
    ids=["sibling-fetch-metadata", "cross-site-fetch-metadata", "other-origin"],
)
def test_a_form_another_sites_page_sent_names_nobody(
    world: ConsoleWorld, sent_from: dict[str, str]
) -> None:
    """A review (helper-184): a page on a sibling host gets the session cookie too
    (SameSite counts the site), so its forms, refused for their CSRF token, were filed
    in the signed-in person's name, past the budget of refusals that name nobody. The
    browser says where a form came from; one from another origin is not the person's."""
    with (
        world.signed_in(STEWARD) as browser,
        added_audit_entries(world.hub, action="console.form-refused") as added,
    ):
        form = {"reason": "x"}
        answer = browser.post("/requests/" + "f" * 32 + "/approve", data=form, headers=sent_from)
        assert answer.status_code == 403
        own = browser.post(
            "/requests/" + "f" * 32 + "/approve",
            data=form,
            headers={"Sec-Fetch-Site": "same-origin"},
        )
        assert own.status_code == 403
    assert [e.get("person") for e in added] == [None, STEWARD]


@pytest.mark.parametrize(
    ("verb", "form"), [("approve", {"field-0": "city"}), ("refuse", {"reason": "no"})]
)
def test_an_auditors_refused_decision_names_the_request(
    world: ConsoleWorld, verb: str, form: dict[str, str]
) -> None:
    """A decision the console refuses for a role that may not decide names the request
    it was about: an auditor (who reads every request, and decides none) posting the
    approve or refuse form leaves an entry whose target is that request (review 176:
    the role was checked before the target was noted, so the entry had none)."""
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
