"""`onceonly audit verify` against a real hub on loopback, on SQLite and PostgreSQL.

Two kinds of tampering are tried. *In place*: someone edits the stored rows and
leaves the signed checkpoints alone; ``--full`` finds it by recomputing the root.
*Rewritten*: an operator who holds the signing key rebuilds the whole log (nodes
and checkpoints too) and lets the hub sign it; the auditor's remembered checkpoint
(the state file), or another auditor's, exposes the fork or the shrink.
"""

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onceonly.hub.audit import leaves
from onceonly.hub.audit.notes import Signer
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.cli import main
from onceonly.hub.db import make_engine, make_sync_engine

from tests.hub.audit.hub_copies import Copies, restore
from tests.hub_testing import (
    DATABASES,
    RunningHub,
    migrated_sqlite,
    module_database,
    problem_type,
    running_hub,
    signed_in,
    wait_until,
)

ORIGIN = "hub.test/audit"
SIZE = 40
CHECKPOINT_INTERVAL = 0.05
"""How often each test hub's checkpointer looks at the log (the default is 1 s): a
round costs ~1.5 ms of CPU whether or not the log grew: at every 20 ms a live hub
spent 76 ms of CPU a second on it, at 50 ms 35 (measured); a checkpoint waited for
comes at most 30 ms later."""


def _entry(n: int) -> dict[str, Any]:
    return leaves.build_entry(
        time=datetime.now(UTC),
        action="record.query",
        outcome="ok",
        request_id=f"r{n}",
        subject=hashlib.sha256(f"s{n}".encode()).hexdigest(),
        purpose="benefit-eligibility",
    )


def append(url: str, entries: list[dict[str, Any]]) -> None:
    """Append through a writer of its own: another hub process sharing the database."""

    async def run() -> None:
        engine = make_engine(url)
        log = AuditLog(engine, batch_size=16)
        await log.start()
        try:
            for entry in entries:  # one by one: the order is the list's
                await log.append(entry)
        finally:
            await log.stop()
            await engine.dispose()

    asyncio.run(run())


def stored_entries(url: str) -> list[dict[str, Any]]:
    engine = make_sync_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT leaf FROM audit_entries ORDER BY idx"))
        found = [json.loads(bytes(row[0])) for row in rows]
    engine.dispose()
    return found


def execute(url: str, *statements: str, **params: Any) -> None:
    engine = make_sync_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params)
    engine.dispose()


def rewrite(url: str, entries: list[dict[str, Any]]) -> None:
    """What an operator with the key could do: replace the log, its nodes and its
    checkpoints; the hub then signs the new tree."""
    # One transaction: the running checkpointer must never see entries without nodes
    # (it would sign that tree, and never sign the smaller rewritten one after it).
    execute(
        url, "DELETE FROM audit_checkpoints", "DELETE FROM audit_nodes", "DELETE FROM audit_entries"
    )
    append(url, entries)
    # ...and any checkpoint the running checkpointer stored meanwhile (it may have read
    # the old tree just before the delete): from here the hub signs only the new tree.
    execute(url, "DELETE FROM audit_checkpoints")


def checkpoint_size(hub: RunningHub) -> int:
    return int(httpx.get(f"{hub.url}/v1/audit/checkpoint").text.split("\n")[1])


def stored_checkpoint_size(hub: RunningHub) -> int:
    """The largest checkpoint the hub has stored (0: none). ``GET /v1/audit/checkpoint``
    signs the current tree when none is stored, without storing it; a checkpointer that
    read the tree before a rewrite may still store a smaller one after that answer."""
    page = httpx.get(f"{hub.url}/v1/audit/checkpoints", params={"since_size": 0, "limit": 1000})
    sizes = [int(row["tree_size"]) for row in page.json()["checkpoints"]]
    return max(sizes, default=0)


def wait_for_checkpoint(hub: RunningHub, size: int) -> None:
    """Until the hub has stored a checkpoint of ``size`` (and serves it as its latest)."""
    wait_until(
        lambda: stored_checkpoint_size(hub) == size and checkpoint_size(hub) == size,
        what=f"a stored checkpoint of size {size}",
    )


def verifier_key(hub: RunningHub) -> str:
    return httpx.get(f"{hub.url}/v1/audit/verifier-key").text.strip()


class Auditor:
    """Runs the command as an auditor would, with a state file of their own; without a
    credential (an outside monitor: public routes only) unless ``token`` is given."""

    def __init__(
        self, capsys: pytest.CaptureFixture[str], state: Path, key: str, token: str = ""
    ) -> None:
        self.capsys, self.state, self.key, self.token = capsys, state, key, token

    def verify(self, hub: RunningHub, *options: str) -> tuple[int, str]:
        self.capsys.readouterr()
        args = ["audit", "verify", "--hub", hub.url, "--key", self.key]
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ONCEONLY_SESSION_FILE", str(self.state.with_suffix(".session")))
            if self.token:
                patch.setenv("ONCEONLY_TOKEN", self.token)
            else:
                patch.delenv("ONCEONLY_TOKEN", raising=False)
            status = main([*args, "--state", str(self.state), *options])
        captured = self.capsys.readouterr()
        return status, captured.out + captured.err

    def signed_in(self, token: str) -> "Auditor":
        return Auditor(self.capsys, self.state, self.key, token)


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Copies:
    return Copies(tmp_path_factory.mktemp("copies"))


@pytest.fixture
def hub(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest, copies: Copies
) -> Iterator[RunningHub]:
    """A hub of the test's own on a fresh database; for a test that takes ``verified``,
    on a copy of the verified log (and the auditor's state file) once it is saved."""
    data_dir = tmp_path / "hub"
    saved = copies.saved("verified", database_url) if "verified" in request.fixturenames else None
    if saved is not None:
        restore(saved, database_url, data_dir)
        (tmp_path / "auditor.json").write_text(saved.extra["state"])
    with running_hub(
        database_url=database_url,
        data_dir=data_dir,
        checkpoint_interval=CHECKPOINT_INTERVAL,
        audit_origin=ORIGIN,
    ) as running:
        yield running


@pytest.fixture
def auditor(hub: RunningHub, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Auditor:
    return Auditor(capsys, tmp_path / "auditor.json", verifier_key(hub))


@pytest.fixture
def verified(
    hub: RunningHub, auditor: Auditor, database_url: str, tmp_path: Path, copies: Copies
) -> list[dict[str, Any]]:
    """A log of SIZE entries that the auditor has verified once (state file written).

    Built and verified once per database, then saved (database, keys, the auditor's
    state): every later test gets a copy of it (``hub``) instead of appending, waiting
    for the checkpoint and verifying again."""
    if copies.saved("verified", database_url) is None:
        append(database_url, [_entry(n) for n in range(SIZE)])
        wait_for_checkpoint(hub, SIZE)
        status, output = auditor.verify(hub, "--full")
        assert status == 0, output
        copies.keep("verified", database_url, tmp_path / "hub", state=auditor.state.read_text())
    assert json.loads(auditor.state.read_text())["tree_size"] == SIZE
    assert checkpoint_size(hub) == SIZE
    return stored_entries(database_url)


def test_an_honest_log_verifies_and_keeps_verifying_as_it_grows(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    append(database_url, [_entry(n) for n in range(SIZE, SIZE + 25)])
    wait_for_checkpoint(hub, SIZE + 25)
    status, output = auditor.verify(hub, "--full")
    assert status == 0, output
    assert f"consistent with the checkpoint in {auditor.state} ({SIZE} entries)" in output
    assert f"all {SIZE + 25} leaf hashes recomputed" in output
    assert "entry contents not checked" in output
    assert json.loads(auditor.state.read_text())["tree_size"] == SIZE + 25
    status, output = auditor.signed_in(hub.keys.admin_token).verify(hub, "--full")
    assert status == 0, output
    assert f"all {SIZE + 25} entries' contents match their leaf hashes" in output


def test_a_credential_that_is_no_auditors_cannot_check_contents(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]]
) -> None:
    status, output = auditor.signed_in("oop_not-a-session").verify(hub, "--full")
    assert status == 2
    assert "the hub refuses this credential (401" in output


def test_an_administrator_signed_in_verifies_the_leaf_hashes_as_if_signed_out(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]]
) -> None:
    """docs/audit.md: --full needs no account. Signed in as an administrator (whom the
    hub refuses the content, 403), it exited 2: "sign in again as an auditor, or verify
    without one". Now it checks what a signed-out verifier checks, and says so."""
    token = signed_in(hub, "ada", {"role": "administrator"})["Authorization"].split()[1]
    status, output = auditor.signed_in(token).verify(hub, "--full")
    assert status == 0, output
    assert "leaf hashes recomputed to the signed root" in output  # and the sign-in's
    assert (
        "entry contents not checked: the hub does not show them to the account signed in"
        " (403), so leaf hashes only, as signed out" in output
    )
    assert "inclusion and consistency proofs of every entry and size" in output


def test_an_entry_edited_in_place_is_detected(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    forged = leaves.leaf_bytes({**verified[7], "purpose": "curiosity"})
    execute(
        database_url,
        "UPDATE audit_entries SET leaf = :leaf, leaf_hash = :hash WHERE idx = 7",
        leaf=forged,
        hash=leaves.leaf_hash(forged),
    )
    status, output = auditor.verify(hub, "--full")
    assert status == 1
    assert "do not add up to the signed root" in output


def test_an_entry_whose_leaf_no_longer_matches_its_hash_is_named(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    """Only a reader of contents can see this: the public leaf hashes are unchanged."""
    forged = leaves.leaf_bytes({**verified[3], "outcome": "refused"})
    execute(database_url, "UPDATE audit_entries SET leaf = :leaf WHERE idx = 3", leaf=forged)
    assert auditor.verify(hub, "--full")[0] == 0
    status, output = auditor.signed_in(hub.keys.admin_token).verify(hub, "--full")
    assert status == 1
    assert "entry 3: its content does not match its leaf hash" in output


def test_an_index_subject_changed_under_a_subject_commitment_is_detected(
    hub: RunningHub, auditor: Auditor, database_url: str
) -> None:
    """Decision 0069: a leaf that commits to its subject instead of naming it leaves the
    pseudonym to the row's indexed column; an auditor's ``--full`` checks one against
    the other, so the column cannot be moved to another person unnoticed (the leaves,
    their hashes and the signed root are untouched)."""
    sealed = [
        leaves.build_entry(
            time=datetime.now(UTC),
            action="record.query",
            outcome="refused",
            request_id=f"sealed{n}",
            sealed_subject=hashlib.sha256(f"sealed{n}".encode()).hexdigest(),
        )
        for n in range(3)
    ]
    append(database_url, [_entry(0), *sealed])
    wait_for_checkpoint(hub, 4)
    assert all("subject" not in entry for entry in stored_entries(database_url)[1:])
    status, output = auditor.signed_in(hub.keys.admin_token).verify(hub, "--full")
    assert status == 0, output
    execute(
        database_url,
        "UPDATE audit_entries SET subject = :other WHERE idx = 2",
        other=hashlib.sha256(b"someone else").hexdigest(),
    )
    assert auditor.verify(hub, "--full")[0] == 0  # the public cannot tell
    status, output = auditor.signed_in(hub.keys.admin_token).verify(hub, "--full")
    assert status == 1, output
    assert "entry 2: the subject the hub indexes it by is not the one its leaf" in output
    execute(database_url, "UPDATE audit_entries SET subject = NULL WHERE idx = 2")
    assert auditor.signed_in(hub.keys.admin_token).verify(hub, "--full")[0] == 1


@pytest.mark.parametrize("change", ["moved", "emptied", "added"])
def test_an_index_subject_changed_under_a_named_subject_is_detected(
    hub: RunningHub,
    auditor: Auditor,
    verified: list[dict[str, Any]],
    database_url: str,
    change: str,
) -> None:
    """0069's follow-up: the pseudonym the row indexes, which the auditors' search by
    subject and the citizen's page read, is checked against the ``subject`` its leaf
    names too (before, only against a ``subject_commitment``): moved to another person
    or emptied, the entry no longer shows for its person; set on an entry that names
    nobody, it shows for someone it is not about. The leaves, their hashes and the
    signed root are untouched, so the public check cannot tell."""
    session = signed_in(hub, "audra", {"role": "auditor"})  # its entries name nobody
    as_auditor = auditor.signed_in(session["Authorization"].split()[1])
    wait_until(lambda: stored_checkpoint_size(hub) > SIZE, what="the sign-in's checkpoint")
    status, output = as_auditor.verify(hub, "--full")
    assert status == 0, output  # a clean log
    assert "subject" not in stored_entries(database_url)[SIZE]
    moved = "the subject the hub indexes it by (indexed_subject) is not the one its leaf names"
    index, value, named = {
        "moved": (7, hashlib.sha256(b"someone else").hexdigest(), moved),
        "emptied": (7, None, moved),
        "added": (SIZE, verified[7]["subject"], "the hub indexes it by a subject its leaf does"),
    }[change]
    execute(database_url, f"UPDATE audit_entries SET subject = :v WHERE idx = {index}", v=value)
    assert auditor.verify(hub, "--full")[0] == 0  # the public cannot tell
    status, output = as_auditor.verify(hub, "--full")
    assert status == 1, output
    assert f"VERIFICATION FAILED: entry {index}: {named}" in output


@pytest.mark.parametrize(
    ("column", "value", "named"),
    [
        ("action", "'record.publish'", "action 'record.publish', its leaf says 'record.query'"),
        ("outcome", "'refused'", "outcome 'refused', its leaf says 'ok'"),
        ("department", "'tax'", "department 'tax', its leaf says None"),
        ("client", "'tax-adapter'", "client 'tax-adapter', its leaf says None"),
        ("item", "'person.death'", "item 'person.death', its leaf says None"),
        ("time", None, "the hub indexes it at time"),
    ],
)
def test_an_index_column_changed_under_its_leaf_is_detected(
    hub: RunningHub,
    auditor: Auditor,
    verified: list[dict[str, Any]],
    database_url: str,
    column: str,
    value: str | None,
    named: str,
) -> None:
    """Decision 0078: the columns the auditors' filters (``department=``, ``item=``,
    ``action=``, ``outcome=``, ``since=``), the departments' pages and the reports read
    are checked against the leaf as the subject is: changed, they hid the entry from a
    search that should find it, and ``audit verify --full`` exited 0 (the leaves, their
    hashes and the signed root are untouched)."""
    if value is None:  # an hour later, in each database's own arithmetic
        on_sqlite = database_url.startswith("sqlite")
        value = "datetime(time, '+1 hour')" if on_sqlite else "time + interval '1 hour'"
    execute(database_url, f"UPDATE audit_entries SET {column} = {value} WHERE idx = 7")
    assert auditor.verify(hub, "--full")[0] == 0  # the public cannot tell
    as_auditor = auditor.signed_in(hub.keys.admin_token)
    status, output = as_auditor.verify(hub, "--full")
    assert status == 1, output
    assert "VERIFICATION FAILED: entry 7: " in output
    assert named in output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("column", "value", "named"),
    [
        ("subject", "CAST(subject AS BLOB)", "(indexed_subject) is not the one"),
        ("action", "CAST(action AS BLOB)", "action '(not stored as the hub writes it)'"),
        ("outcome", "CAST(outcome AS BLOB)", "outcome '(not stored as the hub writes it)'"),
        # the same instant, spelt with a 'T', and at +13:00
        ("time", "strftime('%Y-%m-%dT%H:%M:%f', time)", "at time '(not stored as"),
        ("time", "datetime(time, '+13 hours') || '+13:00'", "at time '(not stored as"),
    ],
    ids=["subject-blob", "action-blob", "outcome-blob", "time-T", "time-offset"],
)
def test_a_value_stored_otherwise_on_sqlite_is_detected(
    hub: RunningHub,
    auditor: Auditor,
    verified: list[dict[str, Any]],
    database_url: str,
    column: str,
    value: str,
    named: str,
) -> None:
    """Decision 0078's follow-up (a hostile review): SQLite keeps any type in any column
    and compares what is stored. The right bytes stored as a BLOB, or the same instant
    in another spelling, read back as the right value, so ``indexed`` showed it and
    ``--full`` exited 0, while ``action=``, ``since=``/``until=``, a search by subject
    and a department's page no longer matched the entry."""
    execute(database_url, f"UPDATE audit_entries SET {column} = {value} WHERE idx = 7")
    assert auditor.verify(hub, "--full")[0] == 0  # the public cannot tell
    status, output = auditor.signed_in(hub.keys.admin_token).verify(hub, "--full")
    assert status == 1, output
    assert "VERIFICATION FAILED: entry 7: " in output
    assert named in output


def test_an_edited_history_re_signed_by_the_operator_is_a_fork(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    edited = [*verified[:7], {**verified[7], "purpose": "curiosity"}, *verified[8:]]
    rewrite(database_url, [*edited, _entry(100), _entry(101)])
    wait_for_checkpoint(hub, SIZE + 2)
    status, output = auditor.verify(hub)
    assert status == 1
    assert f"FORK: the log of {SIZE + 2} entries does not extend" in output
    assert "Keep both signed checkpoints as evidence" in output


def test_a_deleted_entry_is_detected(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    execute(database_url, "DELETE FROM audit_entries WHERE idx = 12")
    status, output = auditor.verify(hub, "--full")
    assert status == 1
    assert "entry 12 is missing" in output

    rewrite(database_url, verified[:12] + verified[13:])
    wait_for_checkpoint(hub, SIZE - 1)
    status, output = auditor.verify(hub)
    assert status == 1
    assert f"SHRINK: the log now has {SIZE - 1} entries" in output


def test_two_swapped_entries_are_detected(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    execute(
        database_url,
        "UPDATE audit_entries SET idx = -1 WHERE idx = 5",
        "UPDATE audit_entries SET idx = 5 WHERE idx = 6",
        "UPDATE audit_entries SET idx = 6 WHERE idx = -1",
    )
    status, output = auditor.verify(hub, "--full")
    assert status == 1
    assert "do not add up to the signed root" in output

    swapped = [*verified[:5], verified[6], verified[5], *verified[7:]]
    rewrite(database_url, swapped)
    wait_for_checkpoint(hub, SIZE)
    status, output = auditor.verify(hub)
    assert status == 1
    assert f"FORK: two different logs of {SIZE} entries" in output


def test_a_truncated_tail_is_detected(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    execute(database_url, "DELETE FROM audit_entries WHERE idx >= 30")
    status, output = auditor.verify(hub, "--full")
    assert status == 1
    assert "entry 30 is missing" in output

    rewrite(database_url, verified[:30])
    wait_for_checkpoint(hub, 30)
    status, output = auditor.verify(hub)
    assert status == 1
    assert f"SHRINK: the log now has 30 entries, but the checkpoint in {auditor.state}" in output


def test_two_auditors_shown_different_trees_detect_the_fork_by_comparing(
    hub: RunningHub,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    sqlite_template: Path,
) -> None:
    """A second hub with the same key and origin but another log: each auditor alone
    is satisfied; comparing their checkpoints shows the fork."""
    other_url = migrated_sqlite(sqlite_template, tmp_path)  # a copy: no migration to wait for
    append(database_url, [_entry(n) for n in range(SIZE)])
    append(other_url, [_entry(n + 1000) for n in range(SIZE)])
    with running_hub(
        database_url=other_url,
        data_dir=tmp_path / "hub",  # the same keys
        checkpoint_interval=CHECKPOINT_INTERVAL,
        audit_origin=ORIGIN,
    ) as other:
        wait_for_checkpoint(hub, SIZE)
        wait_for_checkpoint(other, SIZE)
        key = verifier_key(hub)
        assert verifier_key(other) == key
        first = Auditor(capsys, tmp_path / "first.json", key)
        second = Auditor(capsys, tmp_path / "second.json", key)
        assert first.verify(hub, "--full")[0] == 0
        assert second.verify(other, "--full")[0] == 0
        status, output = second.verify(other, "--compare", str(first.state))
    assert status == 1
    assert f"FORK: two different logs of {SIZE} entries" in output


def test_a_checkpoint_not_signed_by_the_pinned_key_is_refused(
    three_entries: RunningHub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    impostor = Signer(ORIGIN, Ed25519PrivateKey.generate()).verifier
    status, output = Auditor(capsys, tmp_path / "s.json", str(impostor)).verify(three_entries)
    assert status == 1
    assert "not validly signed by the pinned key" in output
    assert not (tmp_path / "s.json").exists()


def test_usage_and_network_problems_exit_2(
    three_entries: RunningHub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    hub = three_entries
    auditor = Auditor(capsys, tmp_path / "auditor.json", verifier_key(hub))
    status, output = Auditor(capsys, tmp_path / "s.json", "not a key").verify(hub)
    assert status == 2
    assert "--key" in output
    gone = RunningHub(url="http://127.0.0.1:9", settings=hub.settings, keys=hub.keys)
    status, output = auditor.verify(gone)
    assert status == 2
    assert "cannot reach the hub" in output


def test_the_empty_log_has_a_signed_checkpoint_of_size_zero(hub: RunningHub) -> None:
    note = httpx.get(f"{hub.url}/v1/audit/checkpoint")
    assert note.headers["content-type"].startswith("text/plain")
    empty_root = base64.b64encode(hashlib.sha256(b"").digest()).decode()
    assert note.text.startswith(f"{ORIGIN}\n0\n{empty_root}\n\n\u2014 {ORIGIN} ")
    assert verifier_key(hub).startswith(f"{ORIGIN}+")


@pytest.fixture(scope="module", params=DATABASES)
def three_entries(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    """A hub whose log holds three entries, shared by the tests that only read it (a
    refused proof or listing adds no entry, nor does a refused verification)."""
    database_url = module_database(request, tmp_path_factory)
    with running_hub(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("hub"),
        checkpoint_interval=CHECKPOINT_INTERVAL,
        audit_origin=ORIGIN,
    ) as running:
        append(database_url, [_entry(n) for n in range(3)])
        yield running


@pytest.mark.parametrize(
    "query",
    [
        "proof/inclusion?index=3&tree_size=3",
        "proof/inclusion?index=0&tree_size=4",
        "proof/inclusion?index=-1&tree_size=2",
        "proof/inclusion?index=x&tree_size=2",
        "proof/inclusion?index=0",
        "proof/consistency?from=3&to=2",
        "proof/consistency?from=1&to=4",
        "proof/consistency?from=0&to=99999999999999999999999999",
        "proof/consistency?from=1.5&to=2",
        "checkpoints?since_size=-4",
        "leaves?start=0&limit=100000",
    ],
)
def test_bad_proof_parameters_are_a_400_problem(three_entries: RunningHub, query: str) -> None:
    response = httpx.get(f"{three_entries.url}/v1/audit/{query}")
    assert response.status_code == 400
    assert problem_type(response) in ("invalid-request", "invalid-tree-request")


def test_proofs_and_history_are_public(hub: RunningHub, database_url: str) -> None:
    append(database_url, [_entry(n) for n in range(5)])
    wait_for_checkpoint(hub, 5)
    for path in (
        "proof/inclusion?index=2&tree_size=5",
        "proof/consistency?from=2&to=5",
        "entries/4",
        "leaves?start=3",
    ):
        assert httpx.get(f"{hub.url}/v1/audit/{path}").status_code == 200, path
    history = httpx.get(f"{hub.url}/v1/audit/checkpoints?since_size=1").json()
    sizes = [c["tree_size"] for c in history["checkpoints"]]
    assert sizes == sorted(set(sizes))
    assert sizes[-1] == 5


@pytest.fixture
def hub_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The hub's log records of ERROR and above (also when its logging stops propagation)."""
    logger = logging.getLogger("onceonly")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.ERROR, logger="onceonly"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.mark.parametrize(
    ("damage", "query", "named"),
    [
        (
            "DELETE FROM audit_entries WHERE idx = 2",
            "proof/inclusion?index=3&tree_size=8",
            "entry 2",
        ),
        (
            "DELETE FROM audit_entries WHERE idx = 2",
            "proof/consistency?from=3&to=8",
            "entry 2",
        ),
        (
            "DELETE FROM audit_nodes WHERE level = 1 AND idx = 0",
            "proof/inclusion?index=3&tree_size=8",
            "the subtree (1, 0) of entries 0-1",
        ),
    ],
)
def test_a_proof_that_needs_a_lost_hash_is_a_damaged_log_problem(
    hub: RunningHub,
    database_url: str,
    hub_log: pytest.LogCaptureFixture,
    damage: str,
    query: str,
    named: str,
) -> None:
    append(database_url, [_entry(n) for n in range(8)])
    wait_for_checkpoint(hub, 8)
    execute(database_url, damage)
    response = httpx.get(f"{hub.url}/v1/audit/{query}")
    assert response.status_code == 500
    assert problem_type(response) == "audit-log-damaged"
    assert named in response.json()["detail"]
    assert "KeyError" not in response.text
    damaged = [r for r in hub_log.records if "audit log is damaged" in r.getMessage()]
    assert damaged, hub_log.text
    assert named in damaged[0].getMessage()
    assert not any(r.exc_info for r in hub_log.records), "no traceback"


def test_a_hub_that_cannot_prove_a_size_it_signed_fails_verification(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    """A 5xx to a proof of signed sizes is the hub failing to prove what it signed."""
    append(database_url, [_entry(n) for n in range(SIZE, SIZE + 25)])
    wait_for_checkpoint(hub, SIZE + 25)
    # (3, 4), entries 32-39, is in the proof from 40 to 65 but not in the root of 65.
    execute(database_url, "DELETE FROM audit_nodes WHERE level = 3 AND idx = 4")
    status, output = auditor.verify(hub)
    assert status == 1, output
    assert f"cannot prove /v1/audit/proof/consistency?from={SIZE}&to={SIZE + 25}" in output
    assert "500" in output
    assert json.loads(auditor.state.read_text())["tree_size"] == SIZE  # evidence kept


def test_full_checks_the_proofs_the_hub_serves_not_only_the_root(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]], database_url: str
) -> None:
    """A corrupted stored subtree that the root of 40 does not use (the root is made of
    (5, 0) and (3, 4)): the leaves still add up, the hub's proofs do not."""
    execute(
        database_url,
        "UPDATE audit_nodes SET hash = :forged WHERE level = 1 AND idx = 0",
        forged=hashlib.sha256(b"forged").digest(),
    )
    assert auditor.verify(hub)[0] == 0  # the quick check sees nothing
    status, output = auditor.verify(hub, "--full")
    assert status == 1, output
    assert f"all {SIZE} leaf hashes recomputed" in output
    assert f"entry 2: the hub's inclusion proof does not lead to the signed root of {SIZE}" in (
        output
    )


def test_full_reports_the_proofs_it_checked(
    hub: RunningHub, auditor: Auditor, verified: list[dict[str, Any]]
) -> None:
    status, output = auditor.verify(hub, "--full")
    assert status == 0, output
    assert "inclusion and consistency proofs of every entry and size lead to the signed" in (output)


def test_checkpoint_times_carry_their_offset(hub: RunningHub, database_url: str) -> None:
    append(database_url, [_entry(n) for n in range(3)])
    wait_for_checkpoint(hub, 3)
    history = httpx.get(f"{hub.url}/v1/audit/checkpoints").json()["checkpoints"]
    assert history
    for checkpoint in history:
        assert datetime.fromisoformat(checkpoint["time"]).utcoffset() is not None, checkpoint


def test_a_development_hub_keeps_its_origin_when_restarted_elsewhere(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No audit_origin: the origin is derived once and kept with the data directory, so
    the same log, served from another port and host name, still verifies."""
    data_dir = tmp_path / "hub"
    with running_hub(
        database_url=database_url, data_dir=data_dir, checkpoint_interval=CHECKPOINT_INTERVAL
    ) as hub:
        key = verifier_key(hub)
        append(database_url, [_entry(n) for n in range(SIZE)])
        wait_for_checkpoint(hub, SIZE)
        auditor = Auditor(capsys, tmp_path / "auditor.json", key)
        status, output = auditor.verify(hub, "--full")
        assert status == 0, output
    with running_hub(
        database_url=database_url,
        data_dir=data_dir,
        checkpoint_interval=CHECKPOINT_INTERVAL,
        issuer="http://localhost:8443",  # another port and host name than the first
    ) as moved:
        assert moved.url != hub.url
        assert verifier_key(moved) == key
        append(database_url, [_entry(n) for n in range(SIZE, SIZE + 5)])
        wait_for_checkpoint(moved, SIZE + 5)
        status, output = auditor.verify(moved, "--full")
    assert status == 0, output
    assert f"consistent with the checkpoint in {auditor.state} ({SIZE} entries)" in output


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda note: note.replace(b"\n", b"\r\n"), "holds no checkpoint signed by the pinned key"),
        (lambda note: note + b"\xff", "is not UTF-8 text"),
    ],
    ids=["crlf", "not-utf-8"],
)
def test_a_compared_note_is_read_as_its_bytes(
    three_entries: RunningHub,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    change: Callable[[bytes], bytes],
    said: str,
) -> None:
    """C2SP signed-note: no control character but newline. A checkpoint from the hub
    with CR LF line ends was refused, but the same note given with ``--compare`` was
    taken: ``read_text`` turned CR LF into LF (helper-142)."""
    note = httpx.get(f"{three_entries.url}/v1/audit/checkpoint").content
    compared = tmp_path / "compared.txt"
    compared.write_bytes(change(note))
    auditor = Auditor(capsys, tmp_path / "auditor.json", verifier_key(three_entries))
    status, output = auditor.verify(three_entries, "--compare", str(compared))
    assert status == 2, output
    assert said in output
    compared.write_bytes(note)  # the note as sent is taken
    assert auditor.verify(three_entries, "--compare", str(compared))[0] == 0


def test_a_hostile_state_file_nested_deep_cannot_crash_the_verifier(
    three_entries: RunningHub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    auditor = Auditor(capsys, tmp_path / "auditor.json", verifier_key(three_entries))
    auditor.state.write_text("{" + '"a":[' * 100_000 + "]" * 100_000 + "}")
    status, output = auditor.verify(three_entries)
    assert status == 2
    assert "is not a state file or a checkpoint" in output
    assert "RecursionError" not in output


def test_a_compared_file_without_end_is_refused_unread(
    three_entries: RunningHub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An operator's review (helper-185): ``--compare /dev/zero`` read until memory ran
    out (a MemoryError traceback under a ulimit)."""
    auditor = Auditor(capsys, tmp_path / "auditor.json", verifier_key(three_entries))
    status, output = auditor.verify(three_entries, "--compare", "/dev/zero")
    assert status == 2, output
    assert "/dev/zero is larger than 1048576 bytes" in output
