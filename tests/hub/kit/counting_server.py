"""A server on loopback (or all interfaces) that counts what reached it, a name that
resolves to loopback, and this machine's own address: for tests of the hub's
connected-peer check (decision 0071)."""

import ipaddress
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


def own_address(family: socket.AddressFamily) -> str:
    """One of this machine's own non-loopback, non-link-local addresses of ``family``:
    the source address its routes choose toward a documentation address (a UDP socket's
    connect sends nothing)."""
    target = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((target, 9))
            address: str = probe.getsockname()[0]
    except OSError as error:
        pytest.skip(f"this machine has no route for {family.name} ({error}): no own address")
    parsed = ipaddress.ip_address(address)
    if parsed.is_loopback or parsed.is_link_local or parsed.is_unspecified:
        pytest.skip(f"this machine's {family.name} source address {address} is not its own")
    return address


class CountingServer:
    """A server on 127.0.0.1 (or ``host``: ``0.0.0.0``, ``::``): counts connections and
    the bytes each first sent (TLS's ClientHello is bytes too), then answers each request
    200 ``{}``, over TLS with a context."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.tls = tls
        self.connections = 0
        self.received = 0
        self.handled = 0  # connections whose handling ended
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, 0), family=family)
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
