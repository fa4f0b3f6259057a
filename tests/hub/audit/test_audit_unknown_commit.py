"""A change whose COMMIT reaches PostgreSQL and commits, but whose answer is lost (the
connection cut after the server committed: a failover, a network cut). The request is
answered 503 and its entry is the one its transaction committed, alone: the error
handler, which cannot know the commit's outcome, writes no failure beside it (a hostile
review, helper-138: "ok" and "failed" for one request). The connection cut before the
commit began (helper-139) committed nothing: that failure is audited, as a commit that
fails for a known reason is (tests/hub/people/test_people.py)."""

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from onceonly.hub.db import make_sync_engine

from tests.hub_testing import empty_postgres, running_hub

pytestmark = pytest.mark.postgres


class _CommitAnswerLost:
    """A loopback proxy to PostgreSQL that, once armed, cuts the connection of a
    transaction that inserted a person's session: after forwarding its COMMIT, instead
    of the server's answer (``at_commit``), or at the read of the person's roles that
    follows the sign-in's audit entry, which the server never receives."""

    def __init__(self, upstream: tuple[str, int], *, at_commit: bool) -> None:
        self.upstream = upstream
        self.at_commit = at_commit
        self.armed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            state: dict[str, bool] = {}
            for args in ((client, server, state, True), (server, client, state, False)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, state: dict[str, bool], up: bool
    ) -> None:
        try:
            while data := src.recv(65536):
                if up and b"INSERT INTO person_sessions" in data:
                    state["session"] = True
                    dst.sendall(data)
                    continue
                roles = b"person_roles" in data  # read after the audit entry is written
                if up and state.get("session") and roles and not self.at_commit:
                    if self.armed.is_set():
                        self.armed.clear()
                        break  # never sent: nothing committed
                if up and state.get("session") and b"COMMIT" in data and self.armed.is_set():
                    self.armed.clear()
                    state["lose"] = True
                elif not up and state.get("lose"):
                    time.sleep(0.2)  # the server has committed; its answer is lost
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _closed(sock)

    def close(self) -> None:
        self.listener.close()


def _closed(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture(params=[True, False], ids=["at the commit", "before the commit"])
def proxied(
    postgres_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[str, _CommitAnswerLost]]:
    empty_postgres(postgres_url)
    url = sa.engine.make_url(postgres_url)
    at = (url.host or "127.0.0.1", url.port or 5432)
    proxy = _CommitAnswerLost(at, at_commit=request.param)
    try:
        yield str(url.set(port=proxy.port).render_as_string(hide_password=False)), proxy
    finally:
        proxy.close()


def test_a_sign_in_cut_off_from_its_database_has_the_entry_of_what_happened(
    proxied: tuple[str, _CommitAnswerLost], postgres_url: str, tmp_path: Path
) -> None:
    url, proxy = proxied
    with running_hub(database_url=url, data_dir=tmp_path / "hub") as hub:
        username, password = f"p{uuid.uuid4().hex[:10]}", f"Correct-Horse-{uuid.uuid4().hex}"
        with hub.admin() as admin:
            admin.call("PUT", f"/v1/admin/people/{username}", {"password": password})
        proxy.armed.set()
        answer = httpx.post(
            f"{hub.url}/v1/people/sign-in",
            json={"username": username, "password": password},
            timeout=30,
        )
        assert answer.status_code == 503, answer.text
        assert not proxy.armed.is_set()  # the lost answer was the sign-in's commit's
    engine = make_sync_engine(postgres_url)
    with engine.connect() as conn:
        query = "SELECT outcome FROM audit_entries WHERE action = 'person.sign-in'"
        outcomes = [row[0] for row in conn.execute(sa.text(query))]
        sessions = conn.execute(sa.text("SELECT count(*) FROM person_sessions")).scalar()
    engine.dispose()
    if proxy.at_commit:
        assert sessions == 1  # it did commit
        assert outcomes == ["ok"]  # before: ["ok", "failed"]
    else:
        assert sessions == 0  # nothing committed
        assert outcomes == ["failed"]  # with the first rule (5472f6f): none
