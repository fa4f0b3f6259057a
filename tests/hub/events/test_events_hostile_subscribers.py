"""A subscriber that misbehaves costs the hub little and the other subscribers nothing
(decision 0088). One that answers a delivery with an endless body is read a few KiB,
then its connection is closed: only the status counts (a 2xx still acknowledges). One
that never answers holds at most its share of the deliverer's attempts until
``owner_timeout``; the others' deliveries go on meanwhile. Real hubs and subscribers on
loopback, SQLite and PostgreSQL, on the worlds of test_events.py."""

import socket
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from joserfc.jwk import ECKey

from onceonly.adapters import HubClient, public_jwks

from tests.hub.events.test_events import (  # its worlds are in conftest.py
    ADDRESS,
    FAST_RETRIES,
    WorldMaker,
    _point,
    consumer_adapter,
    the_delivery,
)
from tests.hub_testing import wait_until

CLAIMED = 64 * 1024 * 1024  # the body's length the subscriber announces


class EndlessAnswer:
    """A subscriber that answers every request with ``status`` and a body of
    :data:`CLAIMED` bytes, written as fast as the hub reads; ``sent`` is what each
    connection got written before the hub closed it (or all of it)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.sent: list[int] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        sent = 0
        with conn:
            conn.recv(65536)
            head = f"HTTP/1.1 {self.status} X\r\nContent-Length: {CLAIMED}\r\n\r\n"
            conn.sendall(head.encode())
            chunk = b" " * (1024 * 1024)
            try:
                while sent < CLAIMED:
                    conn.sendall(chunk)
                    sent += len(chunk)
            except OSError:  # the hub closed the connection: it read no more
                pass
        self.sent.append(sent)

    def close(self) -> None:
        self._sock.close()


@pytest.mark.parametrize(("status", "outcome"), [(200, "delivered"), (503, "dead")])
def test_a_subscribers_endless_answer_is_not_read_and_its_status_counts(
    database_url: str,
    tmp_path: Path,
    event_world: WorldMaker,
    db: sa.Engine,
    status: int,
    outcome: str,
) -> None:
    subscriber = EndlessAnswer(status)
    settings = {**FAST_RETRIES, "event_max_attempts": 1}
    try:
        with event_world(database_url, tmp_path, **settings) as world:
            _point(world, subscriber.url)
            world.subscribe()
            world.publish()
            wait_until(lambda: the_delivery(db)[0] != "pending", what="the delivery settled")
            wait_until(lambda: subscriber.sent, what="the subscriber's answer ended")
            assert the_delivery(db)[0] == outcome
    finally:
        subscriber.close()
    # what the sockets' buffers on loopback take (a few MiB), not the 64 MiB announced,
    # which the hub read whole into memory before
    (sent,) = subscriber.sent
    assert sent < CLAIMED // 2


class Tarpit:
    """An adapter that accepts connections and never answers (hung, or firewalled
    after the handshake)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


HUNG = "tax"
EVENTS = 20
OWNER_TIMEOUT = 5.0


def test_a_subscriber_that_never_answers_does_not_hold_up_the_others(
    database_url: str, tmp_path: Path, event_world: WorldMaker
) -> None:
    settings = {**FAST_RETRIES, "owner_timeout": OWNER_TIMEOUT, "event_batch_size": 8}
    tarpit = Tarpit()
    key = ECKey.generate_key("P-256", auto_kid=True)
    try:
        with (
            event_world(database_url, tmp_path, **settings) as world,
            consumer_adapter(world, tmp_path) as url,
        ):
            _point(world, url)
            world.subscribe()
            with world.hub.admin() as admin:  # a second subscriber, whose adapter hangs
                admin.put_department(HUNG, name="Tax Board", adapter_url=tarpit.url)
                admin.put_client(f"{HUNG}-adapter", department=HUNG, jwks=public_jwks(key))
                admin.create_grant(
                    consumer=HUNG, item=ADDRESS, purpose="benefit-eligibility", legal_basis="t"
                )
            with HubClient(world.hub.url, client_id=f"{HUNG}-adapter", key=key) as hung:
                hung.subscribe(ADDRESS)
            for n in range(EVENTS):
                world.publish(subject=f"3800108{n:04d}")
            published = time.monotonic()
            # Before: each round of 8 waited for its hung attempts (owner_timeout), so
            # the healthy subscriber had its 20 events after four or five such rounds.
            wait_until(lambda: len(world.received) == EVENTS, within=60, what="all events")
            assert time.monotonic() - published < OWNER_TIMEOUT / 2
    finally:
        tarpit.close()
