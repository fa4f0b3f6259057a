"""A production hub judges the address a direct adapter call's connection reached, before
it sends anything on it (decision 0071): a name the spelling check lets through (``vm``
is 127.0.0.1 in this machine's /etc/hosts, as a department's DNS or a rebinding name
could answer) reaches a server on loopback over TCP, and the server receives no byte,
TLS's ClientHello included, from either of the hub's clients (httpx over
kit.keepalive, kit.http1), on asyncio's loop and on uvloop.
"""

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import httpx
import pytest
import trustme
import uvloop

from onceonly.hub.kit.base_urls import peer_problem, peer_rule
from onceonly.hub.kit.deadline import post_within
from onceonly.hub.kit.http1 import AdapterAddressRefused
from onceonly.hub.kit.keepalive import KeepAliveTransport

from tests.hub.kit.counting_server import CountingServer, loopback_name, own_address


@pytest.fixture(scope="module")
def pki() -> tuple[trustme.CA, ssl.SSLContext]:
    """A CA the client trusts, and a server context with a certificate for the name."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("vm", "runsc").configure_cert(server)
    return ca, server


def _client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def server(
    request: pytest.FixtureRequest, pki: tuple[trustme.CA, ssl.SSLContext]
) -> Iterator[CountingServer]:
    counting = CountingServer(pki[1] if getattr(request, "param", "http") == "https" else None)
    yield counting
    counting.close()


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run_on(loop: str, coroutine: Coroutine[Any, Any, Any]) -> Any:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(coroutine)


async def _calls(
    url: str, *, adapter_peers: Any, verify: ssl.SSLContext | bool = True
) -> list[object]:
    """A record query through each client and a delivery's post_within: each one's
    answer status or exception."""
    transport = KeepAliveTransport(verify=verify, adapter_peers=adapter_peers)
    outcomes: list[object] = []
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            try:
                answer = await asyncio.wait_for(
                    transport.posts.post(f"{url}/q", headers=[], body=b"{}", limit=100), 5
                )
                outcomes.append(answer.status)
            except httpx.HTTPError as error:
                outcomes.append(error)
            try:
                response = await post_within(client, f"{url}/e", seconds=5, json={}, headers={})
                outcomes.append(response.status_code)
            except httpx.HTTPError as error:
                outcomes.append(error)
    finally:
        await transport.aclose()
    return outcomes


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("server", ["http", "https"], indirect=True)
def test_a_name_that_reaches_loopback_gets_no_byte(
    server: CountingServer,
    loop: str,
    pki: tuple[trustme.CA, ssl.SSLContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="onceonly.outbound")
    name = loopback_name()
    scheme = "https" if server.tls else "http"
    rule = peer_rule(production=True, loopback_allowed=False)
    outcomes = run_on(
        loop,
        _calls(f"{scheme}://{name}:{server.port}", adapter_peers=rule, verify=_client_tls(pki[0])),
    )
    assert [type(outcome) for outcome in outcomes] == [AdapterAddressRefused] * 2, outcomes
    assert all(isinstance(outcome, httpx.ConnectError) for outcome in outcomes)
    assert "adapter-address-refused" in str(outcomes[0])
    assert server.settled(2).connections == 2  # TCP reached it: judged after connect
    assert server.received == 0  # and nothing was sent on it, TLS included
    logged = [r.getMessage() for r in caplog.records if r.name == "onceonly.outbound"]
    assert len(logged) == 2
    assert all(m.startswith("adapter-address-refused") and name in m for m in logged)
    assert all("127.0.0.1" in m and "loopback" in m for m in logged)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("server", ["http", "https"], indirect=True)
def test_adapters_on_loopback_lets_the_calls_through_with_verified_tls(
    server: CountingServer, loop: str, pki: tuple[trustme.CA, ssl.SSLContext]
) -> None:
    name = loopback_name()
    scheme = "https" if server.tls else "http"
    rule = peer_rule(production=True, loopback_allowed=True)
    outcomes = run_on(
        loop,
        _calls(f"{scheme}://{name}:{server.port}", adapter_peers=rule, verify=_client_tls(pki[0])),
    )
    assert outcomes == [200, 200]
    assert server.received > 0


@pytest.mark.parametrize("server", ["https"], indirect=True)
def test_tls_is_still_verified_after_the_peer_is_judged(
    server: CountingServer,
) -> None:
    """start_tls after the check verifies the certificate as create_connection did: a
    server the client's roots do not trust is a ConnectError, not an answer."""
    rule = peer_rule(production=True, loopback_allowed=True)
    outcomes = run_on(
        "asyncio", _calls(f"https://{loopback_name()}:{server.port}", adapter_peers=rule)
    )
    assert all(isinstance(outcome, httpx.ConnectError) for outcome in outcomes), outcomes
    assert not any(isinstance(outcome, AdapterAddressRefused) for outcome in outcomes)


def test_no_proxy_from_the_environment_takes_an_adapter_call(
    server: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client with its own transport (the hub's, kit.keepalive) takes no proxy from
    the environment (httpx), so an adapter call is never sent where its peer is a proxy:
    it is direct, and judged."""
    proxy = CountingServer()
    try:
        for variable in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.port}")
        rule = peer_rule(production=True, loopback_allowed=False)
        outcomes = run_on(
            "asyncio", _calls(f"http://{loopback_name()}:{server.port}", adapter_peers=rule)
        )
        assert [type(outcome) for outcome in outcomes] == [AdapterAddressRefused] * 2
        assert proxy.connections == 0
    finally:
        proxy.close()


def test_a_development_hub_does_not_judge_peers(server: CountingServer) -> None:
    assert peer_rule(production=False, loopback_allowed=False) is None
    outcomes = run_on(
        "asyncio", _calls(f"http://{loopback_name()}:{server.port}", adapter_peers=None)
    )
    assert outcomes == [200, 200]


def test_other_requests_are_not_judged_and_their_connections_never_serve_an_adapter_call(
    server: CountingServer,
) -> None:
    """The transport is shared with the OpenID provider's calls (an operator's provider
    may be on loopback): a request not marked as an adapter call is not judged, and the
    connection it leaves idle is not taken by an adapter call to the same origin."""
    url = f"http://{loopback_name()}:{server.port}"

    async def run() -> tuple[int, object]:
        transport = KeepAliveTransport(
            adapter_peers=peer_rule(production=True, loopback_allowed=False)
        )
        try:
            async with httpx.AsyncClient(transport=transport) as client:
                plain = await client.post(f"{url}/token", json={})
                try:
                    await post_within(client, f"{url}/e", seconds=5, json={}, headers={})
                except httpx.HTTPError as error:
                    return plain.status_code, error
                return plain.status_code, "reached"
        finally:
            await transport.aclose()

    status, adapter_call = run_on("asyncio", run())
    assert status == 200
    assert isinstance(adapter_call, AdapterAddressRefused)
    assert server.settled(2).connections == 2  # a new connection for the adapter call


def test_a_judged_connection_is_kept_and_reused_without_a_new_check(
    server: CountingServer,
) -> None:
    """One check per new connection: pooled connections are not judged again."""
    judged: list[str] = []

    def rule(peer: str, local: str | None) -> str | None:
        judged.append(peer)
        return None

    async def run() -> list[int]:
        transport = KeepAliveTransport(adapter_peers=rule)
        url = f"http://{loopback_name()}:{server.port}"
        statuses = []
        try:
            async with httpx.AsyncClient(transport=transport) as client:
                for _ in range(3):
                    answer = await transport.posts.post(f"{url}/q", headers=[], body=b"", limit=9)
                    statuses.append(answer.status)
                    response = await post_within(client, f"{url}/e", seconds=5, json={}, headers={})
                    statuses.append(response.status_code)
        finally:
            await transport.aclose()
        return statuses

    assert run_on("asyncio", run()) == [200] * 6
    assert judged == ["127.0.0.1", "127.0.0.1"]  # one connection each client
    assert server.settled(2).connections == 2


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_this_machines_own_address_gets_no_byte(
    family: socket.AddressFamily, loop: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A service listening on all interfaces (a database, an exporter, another replica)
    is reached through the machine's own non-loopback address (eth0's, say 192.0.2.2 or
    fd00::2): the connection's two ends are one address, so it is this machine, and
    neither client sends a byte on it."""
    caplog.set_level(logging.WARNING, logger="onceonly.outbound")
    address = own_address(family)
    server = CountingServer(host="0.0.0.0" if family == socket.AF_INET else "::")
    try:
        host = address if family == socket.AF_INET else f"[{address}]"
        rule = peer_rule(production=True, loopback_allowed=False)
        outcomes = run_on(loop, _calls(f"http://{host}:{server.port}", adapter_peers=rule))
        assert [type(outcome) for outcome in outcomes] == [AdapterAddressRefused] * 2, outcomes
        assert server.settled(2).connections == 2  # TCP reached it: judged after connect
        assert server.received == 0
        logged = [r.getMessage() for r in caplog.records if r.name == "onceonly.outbound"]
        assert len(logged) == 2
        assert all(address in m and "own local address" in m for m in logged), logged
    finally:
        server.close()


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_adapters_on_loopback_lets_the_machines_own_address_through(
    family: socket.AddressFamily,
) -> None:
    """A hub whose adapters run on its own host may reach them by the host's address
    (or a name for it) as well as by loopback: adapters_on_loopback allows both."""
    address = own_address(family)
    server = CountingServer(host="0.0.0.0" if family == socket.AF_INET else "::")
    try:
        host = address if family == socket.AF_INET else f"[{address}]"
        rule = peer_rule(production=True, loopback_allowed=True)
        outcomes = run_on("asyncio", _calls(f"http://{host}:{server.port}", adapter_peers=rule))
        assert outcomes == [200, 200]
        assert server.received > 0
    finally:
        server.close()


@pytest.mark.parametrize(
    ("peer", "local", "loopback_allowed", "refused"),
    [
        ("192.0.2.2", "192.0.2.2", False, True),
        ("fd00::2", "fd00::2", False, True),
        ("::ffff:192.0.2.2", "192.0.2.2", False, True),  # one address, two spellings
        ("192.0.2.2", "::ffff:192.0.2.2", False, True),
        ("10.0.0.7", "not an address", False, True),
        ("192.0.2.2", "192.0.2.2", True, False),
        ("fd00::2", "fd00::2", True, False),
        ("10.0.0.7", "10.0.0.5", False, False),  # a neighbour on the hub's network
        ("fd00::7", "fd00::2", False, False),
        ("10.0.0.7", None, False, False),  # the address alone
    ],
)
def test_a_connection_to_this_machines_own_address_is_refused(
    peer: str, local: str | None, loopback_allowed: bool, refused: bool
) -> None:
    problem = peer_problem(peer, local, loopback_allowed=loopback_allowed)
    assert (problem is not None) is refused, problem


@pytest.mark.parametrize(
    ("peer", "loopback_allowed", "refused"),
    [
        ("127.0.0.1", False, True),
        ("127.0.0.5", False, True),
        ("::1", False, True),
        ("::ffff:127.0.0.1", False, True),
        ("0.0.0.0", False, True),
        ("::", False, True),
        ("169.254.169.254", False, True),
        ("::ffff:169.254.169.254", False, True),
        ("fe80::1%lo", False, True),
        ("::7f00:1", False, True),  # IPv4-compatible 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False, True),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", False, True),  # 6to4, relay 127.0.0.1
        ("not an address", False, True),
        ("10.20.30.40", False, False),
        ("192.168.1.5", False, False),
        ("fd00::5", False, False),
        ("2001:db8::1", False, False),
        ("127.0.0.1", True, False),
        ("::1", True, False),
        ("::ffff:127.0.0.1", True, False),
        ("0.0.0.0", True, True),
        ("169.254.169.254", True, True),
        ("fe80::1%lo", True, True),
        ("::7f00:1", True, True),  # loopback behind a translator: never
        ("fd00:ec2::254", False, True),  # Amazon EC2's IPv6 instance metadata
        ("fd00:ec2::254", True, True),
        ("100.100.100.200", False, True),  # Alibaba Cloud's instance metadata
        ("100.100.100.200", True, True),
        ("::ffff:100.100.100.200", False, True),
        ("64:ff9b::6464:64c8", False, True),  # NAT64 of 100.100.100.200
        ("168.63.129.16", False, True),  # Azure's WireServer
        ("168.63.129.16", True, True),
        ("100.100.100.201", False, False),
        ("fd00:ec2::253", False, False),
    ],
)
def test_the_peer_rule_is_the_spelling_rule_for_addresses(
    peer: str, loopback_allowed: bool, refused: bool
) -> None:
    assert (peer_problem(peer, loopback_allowed=loopback_allowed) is not None) is refused
