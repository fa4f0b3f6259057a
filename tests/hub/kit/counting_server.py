"""A server on loopback that counts what reached it, and a name that resolves to
loopback: for tests of the hub's connected-peer check (decision 0071)."""

import socket
import ssl
import threading
import time

import pytest


def loopback_name() -> str:
    """A name (no address spelling) this machine resolves to 127.0.0.1, offline."""
    for name in ("vm", "runsc"):
        try:
            if socket.gethostbyname(name) == "127.0.0.1":
                return name
        except OSError:
            continue
    pytest.skip("no name in /etc/hosts resolves to 127.0.0.1 here (vm, runsc)")


class CountingServer:
    """A server on 127.0.0.1: counts connections and the bytes each first sent (TLS's
    ClientHello is bytes too), then answers each request 200 ``{}``, over TLS with a
    context."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.connections = 0
        self.received = 0
        self.handled = 0  # connections whose handling ended
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._handle(conn)
        finally:
            self.handled += 1

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                first = conn.recv(65536, socket.MSG_PEEK)
            except OSError:  # reset: the hub aborted the connection
                return
            self.received += len(first)
            if not first:
                return
            try:
                stream = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn
            except OSError:  # a client that does not trust the certificate
                return
            with stream:
                try:
                    while _read_request(stream):
                        stream.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                except OSError:
                    return

    def settled(self, connections: int) -> "CountingServer":
        """Itself, once ``connections`` connections were accepted and handled."""
        deadline = time.monotonic() + 5
        while self.handled < connections and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def close(self) -> None:
        self._sock.close()


def _read_request(stream: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        part = stream.recv(65536)
        if not part:
            return False
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += stream.recv(65536)
    return True
