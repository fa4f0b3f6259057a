"""The audit log is public in its shape and private in its content (DESIGN.md, "Audit
log"; the matrix is in docs/audit.md). Each cell of the matrix is tried here against
a running hub, on SQLite and PostgreSQL: the public, an auditor, a steward who is no
auditor, the consumer department, the owner department, an unrelated department, and
the citizen portal.
"""

import base64
import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from onceonly.adapters import AccessDenied, DPoPKey, HubClient, NotFound, public_jwks
from onceonly.hub.audit import leaves
from onceonly.hub.audit.readers import Reader
from onceonly.hub.kit import base64url
from onceonly.hub.kit.jcs import canonical_json
from onceonly.hub.kit.spreadsheet import neutralize_formula

from tests.hub.exchange_world import (
    ADDRESS,
    ADDRESS_RECORD,
    CONSUMER,
    OWNER,
    PURPOSE,
    SUBJECT,
    World,
    access_token,
    exchange_world,
)
from tests.hub_testing import DATABASES, module_database, signed_in, steward

PORTAL = "citizen-portal"
OWNER_CLIENT = "civil-registry-adapter"
OTHER = "tax"
OTHER_CLIENT = "tax-adapter"
OTHER_ITEM = "vehicle.registration"  # owned by neither the consumer nor the owner above
CONTENT_ROUTES = ("/v1/audit/entries", "/v1/audit/export", "/v1/audit/department-entries")


@dataclass
class Story:
    """A hub after a few decisions, and the readers who look at its log."""

    world: World
    clients: dict[str, HubClient]  # department id (or "portal") -> its client
    auditor: dict[str, str]  # Authorization headers of a signed-in auditor
    steward: dict[str, str]  # ... of a consumer's steward, who is no auditor
    delivered: int  # the consumer's record query, answered
    refused: int  # the consumer's record query, refused (purpose not granted)
    other: int  # the other department's refused query of an item nobody here owns
    asked: int  # the auditor's query of the log
    commitment_key: str

    @property
    def url(self) -> str:
        return self.world.hub.url

    def pseudonym(self) -> str:
        return self.world.hub.keys.pseudonym(SUBJECT)


def _client(world: World, client_id: str, department: str) -> HubClient:
    key = ECKey.generate_key("P-256", auto_kid=True)
    with world.hub.admin() as admin:
        if department == "portal":
            admin.put_department("portal", name="State portal")
        admin.put_client(client_id, department=department, jwks=public_jwks(key))
    return HubClient(world.hub.url, client_id=client_id, key=key, retries=0)


def _index_of(story_url: str, auditor: dict[str, str], request_id: str) -> int:
    page = httpx.get(f"{story_url}/v1/audit/entries?limit=1000", headers=auditor).json()
    (index,) = [e["index"] for e in page["entries"] if e["entry"]["request_id"] == request_id]
    return int(index)


@pytest.fixture(scope="module", params=DATABASES)
def story(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Story]:
    database_url = module_database(request, tmp_path_factory)
    with exchange_world(
        database_url=database_url,
        tmp_path=tmp_path_factory.mktemp("world"),
        citizen_portal_clients=[PORTAL],
    ) as world:
        clients = {
            CONSUMER: world.client(),
            OWNER: _client(world, OWNER_CLIENT, OWNER),
            OTHER: _client(world, OTHER_CLIENT, OTHER),
            "portal": _client(world, PORTAL, "portal"),
        }
        auditor = signed_in(world.hub, "aurora", {"role": "auditor"})
        result = clients[CONSUMER].fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        with pytest.raises(AccessDenied) as refused:
            clients[CONSUMER].fetch(ADDRESS, SUBJECT, purpose="tax-assessment")
        with pytest.raises(AccessDenied) as other:
            clients[OTHER].fetch(OTHER_ITEM, SUBJECT, purpose=PURPOSE)
        asked = httpx.get(f"{world.hub.url}/v1/audit/entries?item={ADDRESS}", headers=auditor)
        yield Story(
            world=world,
            clients=clients,
            auditor=auditor,
            steward=signed_in(world.hub, "stella", steward(CONSUMER)),
            delivered=result.receipt.index,
            refused=_index_of(world.hub.url, auditor, str(refused.value.request_id)),
            other=_index_of(world.hub.url, auditor, str(other.value.request_id)),
            asked=_index_of(world.hub.url, auditor, asked.headers["x-request-id"]),
            commitment_key=result.receipt.commitment_key or "",
        )
        for client in clients.values():
            client.close()


def _leaves(story: Story, **headers: str) -> dict[int, dict[str, Any]]:
    response = httpx.get(f"{story.url}/v1/audit/leaves?start=0&limit=1000", headers=headers)
    assert response.status_code == 200, response.text
    return {int(e["index"]): e for e in response.json()["entries"]}


def _shows_nothing_personal(story: Story, text: str) -> None:
    for secret in (story.pseudonym(), SUBJECT, PURPOSE, "tax-assessment", "aurora", CONSUMER):
        assert secret not in text


# --- the public -----------------------------------------------------------------------


def test_the_public_reads_checkpoints_proofs_and_leaf_hashes_and_nothing_else(
    story: Story,
) -> None:
    size = story.asked + 1
    for path in (
        "/v1/audit/checkpoint",
        "/v1/audit/verifier-key",
        "/v1/audit/checkpoints",
        f"/v1/audit/proof/inclusion?index={story.delivered}&tree_size={size}",
        f"/v1/audit/proof/consistency?from=1&to={size}",
        f"/v1/audit/entries/{story.delivered}",
        f"/v1/audit/entries/{story.asked}",
        "/v1/audit/leaves",
        f"/v1/audit/leaves?start={story.refused}&limit=2",
    ):
        response = httpx.get(f"{story.url}{path}")
        assert response.status_code == 200, (path, response.text)
        _shows_nothing_personal(story, response.text)
    public = _leaves(story)
    assert len(public) >= size
    assert all(set(entry) == {"index", "leaf_hash"} for entry in public.values())


@pytest.mark.parametrize("path", [*CONTENT_ROUTES, "/v1/audit/export?format=csv"])
def test_the_public_is_refused_every_content_route(story: Story, path: str) -> None:
    response = httpx.get(f"{story.url}{path}")
    assert response.status_code == 401
    _shows_nothing_personal(story, response.text)


def test_credentials_that_do_not_hold_are_refused_not_read_as_public(story: Story) -> None:
    for authorization in ("Bearer oop_made-up", "DPoP a.b.c", "Bearer a.b.c"):
        response = httpx.get(
            f"{story.url}/v1/audit/entries/{story.delivered}",
            headers={"Authorization": authorization},
        )
        assert response.status_code == 401, authorization
        _shows_nothing_personal(story, response.text)


# --- people ---------------------------------------------------------------------------


def test_an_auditor_reads_every_entry_and_the_query_and_the_export(story: Story) -> None:
    everything = _leaves(story, **story.auditor)
    assert all("entry" in entry and "leaf" in entry for entry in everything.values())
    single = httpx.get(f"{story.url}/v1/audit/entries/{story.other}", headers=story.auditor)
    assert single.json()["entry"]["department"] == OTHER
    queried = httpx.get(f"{story.url}/v1/audit/entries", headers=story.auditor).json()
    assert all("entry" in entry for entry in queried["entries"])
    for format in ("csv", "jsonl"):
        export = httpx.get(f"{story.url}/v1/audit/export?format={format}", headers=story.auditor)
        assert export.status_code == 200
        assert story.pseudonym() in export.text


def test_a_steward_who_is_no_auditor_reads_no_content(story: Story) -> None:
    for path in (
        f"/v1/audit/entries/{story.delivered}",
        "/v1/audit/leaves",
        "/v1/audit/entries",
        "/v1/audit/export",
    ):
        response = httpx.get(f"{story.url}{path}", headers=story.steward)
        assert response.status_code == 403, path
        _shows_nothing_personal(story, response.text)


# --- departments ----------------------------------------------------------------------


READABLE = {
    # department -> which of the story's entries it may read
    CONSUMER: {"delivered", "refused"},
    OWNER: {"delivered"},  # the record query its adapter answered; not one refused before
    OTHER: {"other"},
    "portal": set(),
}


@pytest.mark.parametrize("department", sorted(READABLE))
def test_a_department_reads_the_entries_that_name_it(story: Story, department: str) -> None:
    client = story.clients[department]
    for name in ("delivered", "refused", "other", "asked"):
        index = getattr(story, name)
        found = client.audit_entry(index)
        assert found["index"] == index
        if name in READABLE[department]:
            leaf = base64.b64decode(found["leaf"])
            assert leaves.b64(leaves.leaf_hash(leaf)) == found["leaf_hash"]
            assert json.loads(leaf) == found["entry"]
            assert len(base64url.decode(found["entry"]["salt"])) == 16
        else:
            assert set(found) == {"index", "leaf_hash"}, (department, name)


def test_a_department_reads_nothing_people_did_about_it(story: Story) -> None:
    """Grants, access requests and registry changes name the department they are about,
    and the person who acted, with their free text: only auditors read those."""
    about = [
        e
        for e in httpx.get(
            f"{story.url}/v1/audit/entries",
            params={"department": CONSUMER, "limit": "1000"},
            headers=story.auditor,
        ).json()["entries"]
        if "person" in e["entry"]
    ]
    assert about  # the grant the break-glass token made for the consumer, at least
    for found in about:
        shown = story.clients[CONSUMER].audit_entry(found["index"])
        assert set(shown) == {"index", "leaf_hash"}, found["entry"]


def test_department_entries_are_the_record_queries_that_name_the_department(
    story: Story,
) -> None:
    for department, expected in (
        (CONSUMER, {story.delivered, story.refused}),
        (OWNER, {story.delivered}),
        (OTHER, {story.other}),
    ):
        page = story.clients[department].department_entries()
        indexes = {int(e["index"]) for e in page["entries"]}
        assert expected <= indexes
        assert story.other not in indexes or department == OTHER
        assert story.refused not in indexes or department == CONSUMER
        assert all("entry" in e for e in page["entries"])


def _department_pages(client: HubClient, *, cursor: int) -> Iterator[dict[str, Any]]:
    """``GET /v1/audit/department-entries`` one entry a page, from ``cursor`` on."""
    after: str | None = str(cursor)
    while after is not None:
        params = {"limit": "1", "cursor": after}
        page = client._run(client._session.get_flow("/v1/audit/department-entries", params))
        yield page
        after = page["next_cursor"]


def test_a_departments_pages_never_show_where_an_entry_it_may_not_read_is(
    story: Story,
) -> None:
    """The consumer's query of the owner's item that was refused before the hub called
    the owner (``story.refused``) is not the owner's to see, not even as the cursor of
    a page; paging one entry at a time still reaches every entry it may read."""
    with pytest.raises(NotFound):  # the owner is asked: its entry names the owner
        story.clients[CONSUMER].fetch(ADDRESS, "49912319991", purpose=PURPOSE)
    reader = Reader(department=OWNER)
    readable = [
        index
        for index, shown in _leaves(story, **story.auditor).items()
        if index > story.delivered
        and shown["entry"]["action"] == "record.query"
        and reader.may_read(shown["entry"])
    ]
    pages = list(_department_pages(story.clients[OWNER], cursor=story.delivered))
    cursors = [int(page["next_cursor"]) for page in pages if page["next_cursor"] is not None]
    shown = [int(e["index"]) for page in pages for e in page["entries"]]
    assert story.refused > story.delivered
    assert story.refused not in cursors + shown
    assert shown == readable != []
    assert set(cursors) <= set(shown)


def test_the_citizen_portal_reads_only_the_subjects_own_accesses(story: Story) -> None:
    accesses = story.clients["portal"].citizen_access_log(SUBJECT)
    assert [a["index"] for a in accesses] == [story.delivered]
    assert story.clients["portal"].citizen_access_log("49403136515") == []


# --- what reads leave behind ----------------------------------------------------------


def _entries(story: Story, **filters: str) -> list[dict[str, Any]]:
    page = httpx.get(
        f"{story.url}/v1/audit/entries", params={**filters, "limit": "1000"}, headers=story.auditor
    ).json()
    return [e["entry"] for e in page["entries"]]


def test_every_read_of_content_is_itself_an_audit_entry(story: Story) -> None:
    reads = len(_entries(story, action="audit.read"))
    httpx.get(f"{story.url}/v1/audit/entries/{story.other}", headers=story.auditor)
    story.clients[OTHER].audit_entry(story.other)
    httpx.get(f"{story.url}/v1/audit/entries/{story.other}")  # the public's: not logged
    found = _entries(story, action="audit.read")[reads:]
    assert [(e.get("person"), e.get("department"), e["query"]) for e in found] == [
        ("aurora", None, {"index": story.other}),
        (None, OTHER, {"index": story.other}),
    ]


def test_queries_and_exports_record_every_filter(story: Story) -> None:
    filters = {
        "department": OTHER,
        "action": "record.query",
        "outcome": "refused",
        "since": "2020-01-01T02:00:00+02:00",
        "until": "2099-01-01T00:00:00Z",
    }
    httpx.get(f"{story.url}/v1/audit/entries", params=filters, headers=story.auditor)
    httpx.get(
        f"{story.url}/v1/audit/export",
        params={**filters, "format": "csv", "subject": SUBJECT},
        headers=story.auditor,
    )
    query, export = (
        _entries(story, action="audit.query")[-1],
        _entries(story, action="audit.export")[-1],
    )
    expected = {
        "department": OTHER,
        "action": "record.query",
        "outcome": "refused",
        "since": "2020-01-01T00:00:00.000Z",
        "until": "2099-01-01T00:00:00.000Z",
    }
    assert query["query"] == {**expected, "limit": 100}
    assert export["query"] == {**expected, "format": "csv"}
    assert export["subject"] == story.pseudonym()


def test_the_csv_export_has_a_column_for_every_member_of_every_entry(story: Story) -> None:
    """docs/audit.md: "CSV (one column per entry member)". owner, owner_ms, query, v
    and salt were left out (an independent verifier's review)."""
    exported = {}
    for format in ("csv", "jsonl"):
        answer = httpx.get(
            f"{story.url}/v1/audit/export", params={"format": format}, headers=story.auditor
        )
        assert answer.status_code == 200, answer.text
        exported[format] = answer.text
    rows = {int(row["index"]): row for row in csv.DictReader(io.StringIO(exported["csv"]))}
    header = next(csv.reader(io.StringIO(exported["csv"])))
    assert {*leaves.ENTRY_FIELDS, "v", "salt", "index", "leaf_hash"} <= set(header)
    members_seen: set[str] = set()
    for line in exported["jsonl"].splitlines():
        record = json.loads(line)
        row = rows.get(record["index"])
        if row is None:  # the CSV export's own audit.export entry, written after it
            continue
        for member, value in record["entry"].items():
            members_seen.add(member)
            assert row[member] != "", (member, value, row)
    assert {"owner", "owner_ms", "query", "salt", "v"} <= members_seen


# --- the guessing attack --------------------------------------------------------------


def _candidates() -> list[dict[str, Any]]:
    """Every record an attacker might try: the true one among many of the same shape."""
    countries = ["ND", "EE", "FI", "LV", "SE", "DE", "FR"]
    cities = ["Tallinn", "Tartu", "Narva", "Pärnu"]
    return [
        {**ADDRESS_RECORD, "country": country, "city": city, "municipality": city}
        for country in countries
        for city in cities
    ]


def _guesses(candidate: dict[str, Any]) -> set[str]:
    """What a guess can be compared with, in the encodings the log uses."""
    canonical = canonical_json(candidate)
    sha = hashlib.sha256(canonical).digest()
    return {
        sha.hex(),
        f"sha256:{sha.hex()}",
        base64url.encode(sha),
        leaves.b64(sha),
        leaves.commitment(b"", candidate),
        leaves.commitment(canonical, candidate),
    }


def _readable_values(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for member in value.values():
            yield from _readable_values(member)
    elif isinstance(value, list):
        for member in value:
            yield from _readable_values(member)
    else:
        yield str(value)


def test_no_value_the_public_or_an_auditor_reads_matches_a_guessed_record(
    story: Story,
) -> None:
    """The attack that recovered a person's income from the public log in seconds: hash
    every candidate record and compare with what the log shows. With salted leaves and
    commitments under a key only the consumer holds, nothing matches; only the consumer
    key opens the commitment, and only on the true record."""
    candidates = _candidates()
    assert ADDRESS_RECORD in candidates
    shown: set[str] = set()
    for headers in ({}, story.auditor):
        for path in ("/v1/audit/leaves?limit=1000", f"/v1/audit/entries/{story.delivered}"):
            shown |= set(_readable_values(httpx.get(f"{story.url}{path}", headers=headers).json()))
    for candidate in candidates:
        assert not _guesses(candidate) & shown, candidate
    entry = httpx.get(
        f"{story.url}/v1/audit/entries/{story.delivered}", headers=story.auditor
    ).json()["entry"]
    unsalted = {k: v for k, v in entry.items() if k != "salt"}
    public_hashes = {e["leaf_hash"] for e in _leaves(story).values()}
    assert leaves.b64(leaves.leaf_hash(leaves.leaf_bytes(unsalted))) not in public_hashes
    key = base64url.decode(story.commitment_key)
    opened = [c for c in candidates if leaves.commitment(key, c) == entry["commitment"]]
    assert opened == [ADDRESS_RECORD]


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("record.query", "record.query"),
        ("", ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralized(cell: str, written: str) -> None:
    assert neutralize_formula(cell) == written


def test_jsonl_export_lines_are_the_entries(story: Story) -> None:
    export = httpx.get(f"{story.url}/v1/audit/export?format=jsonl", headers=story.auditor)
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert {line["index"] for line in lines} >= {story.delivered, story.refused, story.other}


def test_a_department_reads_its_page_with_head_under_a_dpop_proof_for_head(story: Story) -> None:
    """HEAD is answered as the GET it asks for (decision 0074), and a DPoP proof's
    ``htm`` is the method the client sent (RFC 9449 §4.3): HEAD, not the GET the route
    sees (before: refused 401 invalid_dpop_proof)."""
    dpop = DPoPKey.generate()
    token = access_token(story.world, dpop)
    url = f"{story.url}/v1/audit/department-entries"
    got = httpx.get(url, headers=dpop.headers("GET", url, token))
    head = httpx.head(url, headers=dpop.headers("HEAD", url, token))
    assert got.status_code == 200, got.text
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == got.headers["content-length"]
    for_get = httpx.head(url, headers=dpop.headers("GET", url, token))
    assert for_get.status_code == 401  # a proof for GET is not one for this HEAD
