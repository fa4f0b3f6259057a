"""Every spelling of this machine's address that the hub's HTTP clients connect to is
refused for an adapter (decision 0067). The table is measured here, on this machine:
a server on 127.0.0.1 and ::1 (one port), and each spelling asked through the hub's
own clients (httpx over kit.keepalive for deliveries, kit.http1 for record queries);
any spelling that reaches it must be refused by ``call_problem`` (the check before
every call) and by registration on a production hub (the admin API over HTTP).
"""

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from onceonly.hub.kit.base_urls import base_url_problem, call_problem, local_host_problem
from onceonly.hub.kit.keepalive import KeepAliveTransport

from tests.hub.registry.test_registry_adapter_urls import (  # noqa: F401  # a fixture
    production_hub,
    put_department,
    stored_url,
)
from tests.hub_testing import RunningHub, problem_type

# Hosts an HTTP client may be given for this machine. Decision 0067 has the table of
# which reach a server on loopback here (Linux 6.18, glibc getaddrinfo).
SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "0x7f.0.0.1",
    "0x7f.1",
    "0177.1",
    "0177.0.0.1",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "127.0.0.1.",
    "0",
    "0.0",
    "0x0",
    "0.0.0.0",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::]",
    "[::1%25lo]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::ffff:0.0.0.0]",
    "[::127.0.0.1]",
    "[::7f00:1]",
    "[64:ff9b::127.0.0.1]",
    "[2002:7f00:1::]",
]

# Refused by spelling whether or not this machine routes them: a translator or tunnel
# on the hub's host (a CLAT, a 6to4 or Teredo interface) takes them to its loopback or
# link; and the odd spellings no client here reached.
NEVER = [
    "[::127.0.0.1]",  # IPv4-compatible (RFC 4291 §2.5.5.1)
    "[::7f00:1]",
    "[::a9fe:a9fe]",
    "[64:ff9b::127.0.0.1]",  # NAT64 (RFC 6052)
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::7f00:1]",  # local-use NAT64 (RFC 8215): the whole /48
    "[64:ff9b:1:7f00:1::]",
    "[2002:7f00:1::]",  # 6to4 (RFC 3056)
    "[2002:a9fe:a9fe::1]",
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo, client 127.0.0.1 (RFC 4380)
    "[2001:0:7f00:1::1]",  # Teredo, server 127.0.0.1
    "[::ffff:169.254.169.254]",
    "0.1.2.3",  # 0.0.0.0/8, "this host on this network"
    "169.254.169.254.",
    "0xa9.0xfe.0xa9.0xfe",  # 169.254.169.254
    "2852039166",
    "[::ffff:127.1]",  # no IPv6 address at all
    "[v1.x]",
    "127.0.0.%31",
    "%31%32%37.0.0.1",
]

# Not this machine: departments' networks, public addresses, names, and addresses that
# embed one of those.
TAKEN = [
    "10.20.30.40",
    "192.168.1.5",
    "[fd00::5]",
    "[2001:db8::1]",
    "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
    "[2002:a00:1::]",  # 6to4 of 10.0.0.1
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo, server 65.54.227.120, client 192.0.2.45
    "adapter.social-welfare.example",
    "cafe.bad",  # letters a-f, but no number to the resolver
    "bad.cafe",
]


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # http.server names it format
        pass


class _Server6(HTTPServer):
    address_family = socket.AF_INET6


@pytest.fixture(scope="module")
def loopback() -> Iterator[tuple[int, list[str]]]:
    """A server on 127.0.0.1 and on ::1 (one port): the port, and the paths it was asked."""
    hits: list[str] = []
    four = HTTPServer(("127.0.0.1", 0), _Handler)
    servers = [four]
    try:
        servers.append(_Server6(("::1", four.server_address[1]), _Handler))
    except OSError:  # no IPv6 loopback: the IPv6 spellings reach nothing
        pass
    for server in servers:
        server.hits = hits  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield four.server_address[1], hits
    for server in servers:
        server.shutdown()
        server.server_close()


async def _reaches(url: str, hits: list[str]) -> bool:
    """Whether either of the hub's clients got a request for ``url`` to the server."""
    path = f"/{uuid.uuid4().hex}"
    transport = KeepAliveTransport(verify=True)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=1.0) as client:
            try:
                await client.get(url + path)
            except (httpx.HTTPError, httpx.InvalidURL):  # InvalidURL: httpx refused it
                pass
        try:
            async with asyncio.timeout(1.0):
                await transport.posts.post(url + path, headers=[], body=b"{}", limit=100)
        except (httpx.HTTPError, TimeoutError):
            pass
    finally:
        await transport.aclose()
    return path in hits


def test_every_spelling_that_reaches_this_machine_is_refused(
    loopback: tuple[int, list[str]],
) -> None:
    """The measured table as a test: whatever this machine's resolver and routes take
    to its loopback, call_problem refuses (production, loopback not allowed)."""
    port, hits = loopback
    reached = []
    for host in SPELLINGS:
        url = f"http://{host}:{port}"
        if asyncio.run(_reaches(url, hits)):
            reached.append(host)
            assert call_problem(url, production=True, loopback_allowed=False), url
    # not vacuous: the resolver's own spellings do reach it here
    assert {"127.1", "0x7f.1", "2130706433", "0", "[::ffff:127.0.0.1]"} <= set(reached)


@pytest.mark.parametrize("host", SPELLINGS + NEVER)
def test_a_local_host_is_refused_before_every_call(host: str) -> None:
    url = f"https://{host}:8443/adapter"
    assert call_problem(url, production=True, loopback_allowed=False) is not None


@pytest.mark.parametrize("host", NEVER)
def test_a_host_behind_a_translator_is_refused_even_with_adapters_on_loopback(host: str) -> None:
    """``adapters_on_loopback`` lets 127.0.0.1 and ::1 through (a hub and its adapters on
    one host), never this machine or its link through an odd spelling or a tunnel."""
    url = f"https://{host}:8443"
    assert call_problem(url, production=True, loopback_allowed=True) is not None


@pytest.mark.parametrize(
    "host", ["0x7f.1", "127.1", "2130706433", "0177.1", "127.0.0.1.", "0", "1.2.3.4.5", "10.1"]
)
def test_an_ipv4_address_in_another_form_is_no_base_even_in_development(host: str) -> None:
    """The resolver reads these as addresses, ipaddress does not: only a.b.c.d is taken,
    by every hub, so the two never disagree about where a URL goes."""
    url = f"http://{host}:8080"
    assert "four decimal numbers" in (base_url_problem(url) or "")
    assert call_problem(url, production=False, loopback_allowed=False) is not None


@pytest.mark.parametrize("host", TAKEN)
def test_private_public_and_named_hosts_are_taken(host: str) -> None:
    url = f"https://{host}:8443/adapter"
    assert base_url_problem(url) is None
    assert local_host_problem(url) is None
    assert call_problem(url, production=True, loopback_allowed=False) is None


@pytest.mark.parametrize(
    "host",
    [
        "[fd00:ec2::254]",  # Amazon EC2's IPv6 instance metadata
        "[FD00:EC2:0::254]",
        "100.100.100.200",  # Alibaba Cloud's instance metadata
        "[::ffff:100.100.100.200]",
        "[64:ff9b::6464:64c8]",  # NAT64 of 100.100.100.200
        "[64:ff9b::100.100.100.200]",
    ],
)
@pytest.mark.parametrize("loopback_allowed", [False, True])
def test_a_cloud_metadata_address_outside_link_local_is_refused(
    host: str, loopback_allowed: bool
) -> None:
    """Registration's spelling check refuses the metadata services that do not answer on
    link-local, as link-local itself, with adapters_on_loopback too."""
    url = f"http://{host}/adapter"
    assert "metadata" in (local_host_problem(url, loopback_allowed=loopback_allowed) or "")
    assert call_problem(url, production=True, loopback_allowed=loopback_allowed) is not None


def test_loopback_itself_is_taken_with_adapters_on_loopback() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "[::1]", "[::ffff:127.0.0.1]", "localhost"):
        assert call_problem(f"https://{host}:8443", production=True, loopback_allowed=True) is None


@pytest.mark.postgres
def test_production_registration_refuses_every_local_spelling(
    production_hub: RunningHub,  # noqa: F811  # the fixture imported above
) -> None:
    """Registration over the admin API: 400 invalid-request naming adapter_url, the
    department as it was."""
    department = f"registry-{uuid.uuid4().hex[:8]}"
    kept = "https://10.20.30.40:8443/adapter"
    assert put_department(production_hub, department, kept).status_code == 200
    for host in SPELLINGS + NEVER:
        refused = put_department(production_hub, department, f"https://{host}:8443/adapter")
        assert refused.status_code == 400, (host, refused.text)
        assert problem_type(refused) == "invalid-request"
        assert "adapter_url" in refused.json()["detail"]
    assert stored_url(production_hub, department) == kept
