"""A department must not learn the pseudonym of a person it was not entitled to ask
about (decision 0069). A department reads its own entries; the entry of a request
refused before the hub decided to call the owner (a record query without a grant, a
publish by a department that does not own the item) commits to the subject's
pseudonym (``subject_commitment``) instead of naming it, so that a refused request no
longer turns an identifier into its pseudonym for whoever sent it. So does every
publish, accepted too (0069's follow-up): the hub never checks that a subject is one
of the owner's. The hub's index still keeps the pseudonym: the auditors' search by
subject finds these entries, and shows them the pseudonym. Real hub on loopback,
SQLite and PostgreSQL.
"""

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import AccessDenied, DPoPKey, HubClient, OnceonlyError, public_jwks
from onceonly.hub.kit import base64url

from tests.hub.exchange_world import (
    ADDRESS,
    OWNER,
    PURPOSE,
    SUBJECT,
    World,
    access_token,
    module_exchange_world,
)
from tests.hub_testing import DATABASES, request_id_of, signed_in

OTHER = "tax"  # a department with no grant of anything
OTHER_CLIENT = "tax-sealed-subjects"
PROBED = "49002124277"  # an identifier the department has no business asking about
OWNER_CLIENT = "civil-registry-sealed-subjects"  # a client of the address item's owner


@dataclass
class Story:
    world: World
    other: HubClient  # the client of a department with no grant
    other_key: ECKey
    auditor: dict[str, str]

    @property
    def url(self) -> str:
        return self.world.hub.url

    def pseudonym(self, subject: str) -> str:
        return self.world.hub.keys.pseudonym(subject)


@pytest.fixture(scope="module", params=DATABASES)
def story(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Story]:
    with module_exchange_world(request, tmp_path_factory) as world:
        key = ECKey.generate_key("P-256", auto_kid=True)
        with world.hub.admin() as admin:
            admin.put_client(OTHER_CLIENT, department=OTHER, jwks=public_jwks(key))
        auditor = signed_in(world.hub, "audra", {"role": "auditor"})
        with HubClient(world.hub.url, client_id=OTHER_CLIENT, key=key, retries=0) as other:
            yield Story(world, other, key, auditor)


def _index_of(story: Story, answer: object, *, action: str) -> int:
    """The index of the entry of the request behind ``answer``, as an auditor finds it."""
    request_id = request_id_of(answer)
    page = httpx.get(
        f"{story.url}/v1/audit/entries",
        params={"action": action, "limit": "1000"},
        headers=story.auditor,
    ).json()
    (index,) = [e["index"] for e in page["entries"] if e["entry"]["request_id"] == request_id]
    return int(index)


def _refused_query(story: Story, subject: str) -> int:
    """The other department's record query about ``subject``: refused, its entry's index."""
    with pytest.raises(AccessDenied) as refused:
        story.other.fetch(ADDRESS, subject, purpose=PURPOSE)
    return _index_of(story, refused.value, action="record.query")


def _as_the_department_reads(
    story: Story, index: int, *, client: tuple[str, ECKey] | None = None
) -> list[httpx.Response]:
    """Entry ``index`` read by the other department's client (or ``client``: its id and
    key) through both routes that show a department its entries' content, with raw
    HTTP."""
    dpop = DPoPKey.generate()
    client_id, key = client or (OTHER_CLIENT, story.other_key)
    token = access_token(story.world, dpop, client_id=client_id, key=key)
    answers = []
    for path in (f"/v1/audit/entries/{index}", f"/v1/audit/leaves?start={index}&limit=1"):
        url = f"{story.url}{path}"
        answers.append(httpx.get(url, headers=dpop.headers("GET", url, token)))
    return answers


def _sha256_commitment(salt: str, pseudonym: str) -> str:
    """docs/audit.md: ``sha256:`` and base64url(SHA-256(salt's 16 bytes ‖ pseudonym))."""
    digest = hashlib.sha256(base64url.decode(salt) + pseudonym.encode()).digest()
    return "sha256:" + base64url.encode(digest)


def _shown_entry(answer: httpx.Response) -> tuple[dict[str, Any], bytes]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    shown = body["entries"][0] if "entries" in body else body
    return shown["entry"], base64.b64decode(shown["leaf"])


def test_a_refused_record_query_shows_its_sender_no_pseudonym(story: Story) -> None:
    index = _refused_query(story, PROBED)
    pseudonym = story.pseudonym(PROBED)
    for answer in _as_the_department_reads(story, index):
        entry, leaf = _shown_entry(answer)
        assert (entry["outcome"], entry["department"], entry["item"]) == ("refused", OTHER, ADDRESS)
        assert "subject" not in entry
        assert pseudonym not in answer.text
        assert pseudonym.encode() not in leaf
        assert entry["subject_commitment"] == _sha256_commitment(entry["salt"], pseudonym)


def test_the_commitment_tells_apart_only_who_can_compute_pseudonyms(story: Story) -> None:
    """Two refusals about one person commit differently (each entry's own salt), and
    another person's pseudonym does not match."""
    first, second = _refused_query(story, PROBED), _refused_query(story, PROBED)
    one, _ = _shown_entry(_as_the_department_reads(story, first)[0])
    two, _ = _shown_entry(_as_the_department_reads(story, second)[0])
    assert one["subject_commitment"] != two["subject_commitment"]
    assert one["subject_commitment"] != _sha256_commitment(one["salt"], story.pseudonym(SUBJECT))


def test_the_auditors_search_by_subject_finds_the_refused_query(story: Story) -> None:
    index = _refused_query(story, PROBED)
    found = httpx.get(
        f"{story.url}/v1/audit/entries",
        params={"subject": PROBED, "action": "record.query", "limit": "1000"},
        headers=story.auditor,
    ).json()["entries"]
    (shown,) = [e for e in found if e["index"] == index]
    assert shown["committed_subject"] == story.pseudonym(PROBED)
    assert "subject" not in shown["entry"]
    single = httpx.get(f"{story.url}/v1/audit/entries/{index}", headers=story.auditor).json()
    assert single["committed_subject"] == story.pseudonym(PROBED)
    export = httpx.get(
        f"{story.url}/v1/audit/export",
        params={"subject": PROBED, "format": "csv"},
        headers=story.auditor,
    )
    assert story.pseudonym(PROBED) in export.text


def test_an_admitted_query_still_names_its_subject(story: Story) -> None:
    with story.world.client() as consumer:
        result = consumer.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        shown = consumer.audit_entry(result.receipt.index)
    assert shown["entry"]["subject"] == story.pseudonym(SUBJECT)
    assert "subject_commitment" not in shown["entry"]
    auditors = httpx.get(
        f"{story.url}/v1/audit/entries/{result.receipt.index}", headers=story.auditor
    ).json()
    assert "committed_subject" not in auditors
    assert auditors["indexed_subject"] == story.pseudonym(SUBJECT)  # what verify checks


def test_a_refused_publish_shows_its_sender_no_pseudonym(story: Story) -> None:
    """The same oracle through ``POST /v1/events``: a department that does not own the
    item publishes about anyone, is refused, and reads its refused entry."""
    with pytest.raises(OnceonlyError) as refused:
        story.other.publish(ADDRESS, PROBED)
    index = _index_of(story, refused.value, action="event.publish")
    for answer in _as_the_department_reads(story, index):
        entry, leaf = _shown_entry(answer)
        assert entry["outcome"] != "ok"
        assert "subject" not in entry
        assert story.pseudonym(PROBED).encode() not in leaf
        assert entry["subject_commitment"] == _sha256_commitment(
            entry["salt"], story.pseudonym(PROBED)
        )


def test_an_accepted_publish_shows_its_owner_no_pseudonym(story: Story) -> None:
    """0069's follow-up: the hub never checks that a published subject is one of the
    owner's, so an owner that published about made-up identifiers was answered 202
    and read each one's pseudonym from its accepted entry. Every publish is sealed."""
    key = ECKey.generate_key("P-256", auto_kid=True)
    with story.world.hub.admin() as admin:
        admin.put_client(OWNER_CLIENT, department=OWNER, jwks=public_jwks(key))
    dpop = DPoPKey.generate()
    token = access_token(story.world, dpop, client_id=OWNER_CLIENT, key=key)
    url = f"{story.url}/v1/items/{ADDRESS}/events"
    for made_up in ("95000000001", "95000000002", "95000000003"):
        answer = httpx.post(
            url,
            json={"subject": made_up, "kind": "changed"},
            headers=dpop.headers("POST", url, token),
        )
        assert answer.status_code == 202, answer.text
        index, pseudonym = answer.json()["receipt"]["index"], story.pseudonym(made_up)
        for read in _as_the_department_reads(story, index, client=(OWNER_CLIENT, key)):
            entry, leaf = _shown_entry(read)
            assert (entry["action"], entry["outcome"]) == ("event.publish", "ok")
            assert (entry["department"], entry["client"]) == (OWNER, OWNER_CLIENT)
            assert "subject" not in entry
            assert pseudonym not in read.text
            assert pseudonym.encode() not in leaf
            assert entry["subject_commitment"] == _sha256_commitment(entry["salt"], pseudonym)
        auditors = httpx.get(f"{story.url}/v1/audit/entries/{index}", headers=story.auditor)
        assert auditors.json()["committed_subject"] == pseudonym
        assert auditors.json()["indexed_subject"] == pseudonym
        found = httpx.get(
            f"{story.url}/v1/audit/entries",
            params={"subject": made_up, "action": "event.publish", "limit": "1000"},
            headers=story.auditor,
        ).json()["entries"]
        assert [e["index"] for e in found] == [index]
