"""The hub refuses a record query whose subject is not a subject identifier (decision
0061): white space at either end, a control character, or a form other than NFC is
400 ``invalid-request``, before any adapter is asked, never normalized; so are a
compatibility form NFKC changes and a decimal digit other than ASCII 0-9 (decision
0072), which an owner's source that converts (``int()``) reads as the ASCII subject.

Without the rule the hub asked the owner's adapter for ``"38001085718 "`` and filed
the entry under that string's pseudonym: on a ``CHAR(11)`` column in PostgreSQL the
adapter read the real person's record, and the entry was missing from the subject's
audit query and citizen view."""

from collections.abc import Iterator

import httpx
import pytest

from onceonly.adapters import InvalidRequest

from tests.hub.exchange_world import ADDRESS, PURPOSE, SUBJECT, World, module_exchange_world
from tests.hub_testing import DATABASES

REFUSED = {
    "trailing space": SUBJECT + " ",
    "leading tab": "\t" + SUBJECT,
    "NUL": SUBJECT + "\x00",
    "NFD": "Mu\u0308ller",
    "full-width digits": SUBJECT.translate({ord("0") + n: 0xFF10 + n for n in range(10)}),
    "Arabic-Indic digits": SUBJECT.translate({ord("0") + n: 0x0660 + n for n in range(10)}),
    "superscript": SUBJECT[:-1] + "\u00b2",
    "variation selector": SUBJECT + "\ufe0f",
    "combining grapheme joiner": SUBJECT + "\u034f",
    "Hangul filler": SUBJECT + "\u3164",
    "noncharacter": SUBJECT + "\uffff",
    "private use": SUBJECT + "\ue000",
}


@pytest.fixture(scope="module", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with module_exchange_world(request, tmp_path_factory) as built:
        yield built


@pytest.mark.parametrize("subject", REFUSED.values(), ids=REFUSED.keys())
def test_a_subject_breaking_the_rule_is_400_and_never_reaches_the_owner(
    world: World, subject: str
) -> None:
    served_before = len(world.owner_store.served_entries())
    with world.client() as hub, pytest.raises(InvalidRequest) as refused:
        hub.fetch(ADDRESS, subject, purpose=PURPOSE)

    assert refused.value.status == 400
    assert refused.value.problem_type == "invalid-request"
    assert "subject" in refused.value.detail  # (a NUL anywhere was refused before)
    assert SUBJECT not in refused.value.detail
    assert len(world.owner_store.served_entries()) == served_before


def test_the_subject_itself_is_answered(world: World) -> None:
    with world.client() as hub:
        assert hub.fetch(ADDRESS, SUBJECT, purpose=PURPOSE).record["city"] == "Tallinn"


def test_the_contract_says_the_rule(world: World) -> None:
    document = httpx.get(f"{world.hub.url}/openapi.json").json()
    subject = document["components"]["schemas"]["RecordQuery"]["properties"]["subject"]
    assert "normalization form C" in subject["description"]
    assert "(NFKC" in subject["description"]
    assert "other than ASCII 0-9" in subject["description"]
