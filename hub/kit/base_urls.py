"""Adapter URLs: the bases the hub joins its own paths under (decision 0060).

A department's adapter URL is a base: :func:`base_url_problem` says whether a URL can
be one, :func:`join_path` joins a path under it, :func:`local_host_problem` names a base
whose host is this machine or its link (loopback, link-local such as cloud metadata
services), and :func:`call_problem` judges a stored URL again before each call.
:func:`peer_rule` judges the address a direct adapter call's connection reached, before
anything is sent on it (a name's address; decision 0071).
"""

import functools
import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def base_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a base URL to join paths under (None: it can): an absolute
    ``http``/``https`` URL with a host, and nothing after its path. A query or fragment
    (even an empty ``?`` or ``#``, RFC 3986 §3.4-3.5) would swallow the joined path
    (``.../admin?op=x#`` + ``/v1/events`` is still ``/admin``), and user information
    (§3.2.1) puts a credential in every log that shows the URL. It is ASCII: HTTP
    clients turn other dots (U+3002, U+FF0E, U+FF61) into ``.``, so a host written with
    them would escape :func:`local_host_problem`. It holds no space or control character,
    its port is a number from 1 to 65535, and httpx accepts it (:func:`_port_problem`):
    a URL the hub cannot call is refused when it is registered. Its host is a name, an
    IPv6 address in brackets, or an IPv4 address as four decimal numbers
    (:func:`_host_problem`)."""
    try:
        parts = urlsplit(url)
    except ValueError as error:  # a bracketed host that is no address: [::ffff:127.1]
        return f"it is not a URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it must be an absolute http:// or https:// URL with a host"
    if not url.isascii():  # an HTTP client reads 127。0。0。1 (U+3002) as 127.0.0.1
        return "it must be written in ASCII: a host name in its IDNA form (xn--...)"
    if _UNPRINTABLE.search(url):  # urlsplit drops tab and line breaks; httpx refuses them
        return "it must not hold a space or a control character (RFC 3986 §2 has none)"
    if "?" in url or "#" in url:
        return "it must not have a query ('?') or a fragment ('#'): paths are added to it"
    if "@" in parts.netloc:
        return "it must not hold user information ('user@'): no credential goes in a URL"
    return _port_problem(url, parts) or _host_problem(
        parts.hostname, bracketed=parts.netloc.startswith("[")
    )


# RFC 3986 §2: a URL holds no space, no C0 control character and no DEL.
_UNPRINTABLE = re.compile(r"[\x00-\x20\x7f]")


def _port_problem(url: str, parts: SplitResult) -> str | None:
    """Why the port of ``url`` (split as ``parts``) is none an HTTP client connects to
    (None: it is one, or there is none): RFC 3986 §3.2.3's digits, from 1 to 65535. It
    is read here so that a URL that cannot be called is refused when it is registered,
    not at each call (httpx raises InvalidURL, no HTTPError, for ``:abc``); and the URL
    must be one httpx itself accepts, which is how the hub calls it."""
    try:
        port = parts.port
    except ValueError:  # not digits (":abc", ":+80"), or past 65535
        return "its port must be a number from 1 to 65535"
    if port == 0:  # an empty port (":") is the scheme's own (§3.2.3), as httpx reads it
        return "its port must be a number from 1 to 65535"
    try:
        httpx.URL(url)
    except httpx.InvalidURL as error:
        return f"it is not a URL an HTTP client accepts ({error})"
    return None


# A part of a host that inet_aton, and so getaddrinfo, reads as a number (decimal,
# octal with a leading 0, hex with 0x): 127.1, 0x7f.1, 0177.1, 2130706433 are 127.0.0.1.
_NUMBER = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z")


def _host_problem(host: str, *, bracketed: bool) -> str | None:
    """Why ``host`` (lower case, as urlsplit gives it) is no host of a base URL. A host
    whose last label is a number is an IPv4 address (as the WHATWG URL standard reads
    it): it must be written as four decimal numbers, the one spelling that every
    reader, :mod:`ipaddress` included, reads alike. Percent-encoding and IPv6 zones
    (``%25eth0``) are refused: an adapter has a plain name or address."""
    if "%" in host:
        return f"its host {host!r} must not be percent-encoded or name a zone ('%')"
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"its host [{host}] must be an IPv6 address"
        return None
    if _NUMBER.match(host.removesuffix(".").rpartition(".")[2]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return (
                f"its host {host!r} is an IPv4 address written in another form than"
                " four decimal numbers (a.b.c.d, no leading zeros, no trailing dot)"
            )
    return None


def join_path(base: str, path: str) -> str:
    """``path`` (absolute: ``/v1/events``) under ``base``'s own path, as its child:
    ``https://h/adapter/`` + ``/v1/events`` is ``https://h/adapter/v1/events`` (RFC 3986
    §5.2's reference resolution would drop ``adapter``). ValueError for a ``base`` that
    :func:`base_url_problem` refuses."""
    problem = base_url_problem(base)
    if problem is not None:
        raise ValueError(f"{base!r} is not a base URL: {problem}")
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


def _literal_address(host: str) -> IpAddress | None:
    """The address ``host`` is written as, in any form the resolver accepts for one
    (``127.1``, ``0x7f.0.0.1``, ``2130706433`` are 127.0.0.1 to inet_aton); an
    IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) is the IPv4 address it maps."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")  # RFC 1122 §3.2.1.3: "this host"
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1
# RFC 8215: the IPv4 address sits where the site's translator's prefix length puts it
# (RFC 6052 §2.2: /48 to /96), which the hub cannot know: the whole prefix is refused.
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_V4 = 0xFFFFFFFF


def _embedded(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a packet to ``address`` is translated or tunnelled to: an
    IPv4-compatible address (``::127.0.0.1``; not ``::`` or ``::1``), NAT64's
    well-known prefix (64:ff9b::/96), 6to4 (2002::/16: its relay) and Teredo
    (2001::/32: its server and its client)."""
    if (address in _COMPATIBLE and int(address) > 1) or address in _NAT64:
        return [ipaddress.IPv4Address(int(address) & _V4)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


# Cloud instance metadata services outside link-local (169.254.169.254, where most
# answer, is link-local already). They hand out the machine's credentials.
_METADATA = frozenset(
    {
        ipaddress.IPv6Address("fd00:ec2::254"),  # Amazon EC2's IPv6 instance metadata (IMDS)
        ipaddress.IPv4Address("100.100.100.200"),  # Alibaba Cloud ECS's instance metadata
        # Azure's WireServer (the VM agent's channel to the host, known to attacks on it)
        ipaddress.IPv4Address("168.63.129.16"),
    }
)


def _local_kind(address: IpAddress, *, loopback_allowed: bool) -> str | None:
    """How ``address`` is this machine or its link, in words (None: it is not)."""
    if address.is_unspecified or address in _THIS_NETWORK:
        return "this machine (an unspecified address)"
    if address.is_loopback and not loopback_allowed:
        return "this machine (a loopback address)"
    if address.is_link_local:
        return "link-local (such as a cloud metadata service)"
    if address in _METADATA:
        return "a cloud metadata service's address"
    return None


def local_host_problem(url: str, *, loopback_allowed: bool = False) -> str | None:
    """Why ``url``'s host is this machine or its link (None: it is not, as far as its
    spelling tells): ``localhost`` and its subdomains (RFC 6761 §6.3), a loopback
    (127.0.0.0/8, ::1), unspecified (0.0.0.0/8, ::, which reach this machine) or
    link-local address (169.254.0.0/16, where cloud metadata services answer, and
    fe80::/10), another cloud metadata service's address (``fd00:ec2::254``,
    ``100.100.100.200``, ``168.63.129.16``), in any spelling the resolver reads as one
    (``127.1``, ``::ffff:127.0.0.1``), or an IPv6 address that embeds such an IPv4 address for a
    translator or tunnel (``::127.0.0.1``, ``64:ff9b::7f00:1``, ``2002:7f00:1::``,
    Teredo; decision 0067). Private networks (10.0.0.0/8, 192.168.0.0/16, fc00::/7...)
    are not refused: departments' adapters live in them. A name is not resolved. With
    ``loopback_allowed`` (a hub and its adapters on one host), loopback and localhost
    are not refused; unspecified, link-local and metadata addresses, and local
    addresses behind a translator or tunnel, still are."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:  # a bracketed host that is no address: no base URL either
        return "its host is no address nor name"
    if (host == "localhost" or host.endswith(".localhost")) and not loopback_allowed:
        return f"its host {host!r} is this machine"
    address = _literal_address(host)
    if address is None:
        return None
    what = _address_problem(address, loopback_allowed=loopback_allowed)
    return None if what is None else f"its host {host!r} {what}"


def _address_problem(address: IpAddress, *, loopback_allowed: bool) -> str | None:
    """How ``address`` is this machine or its link, as a predicate ("is ...", "embeds
    ..."), by :func:`local_host_problem`'s rule (None: it is not)."""
    kind = _local_kind(address, loopback_allowed=loopback_allowed)
    if kind is not None:
        return f"is {kind}"
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL:
            return "is a local-use NAT64 address (64:ff9b:1::/48)"
        for inner in _embedded(address):
            if (kind := _local_kind(inner, loopback_allowed=False)) is not None:
                return f"embeds {inner}, which is {kind}"
    return None


def peer_problem(peer: str, local: str | None = None, *, loopback_allowed: bool) -> str | None:
    """Why a production hub must not talk to the adapter it is connected to at ``peer``
    (the connected socket's ``getpeername()`` address, judged before any byte is sent;
    decision 0071), by :func:`local_host_problem`'s rule: a name the spelling check let
    through may resolve, or be rebound, to this machine or its link. ``local`` is the
    socket's own address (``getsockname()``; None judges ``peer`` alone): a connection
    whose two ends are one address is to this machine through one of its own
    non-loopback addresses (its eth0's, which services listening on all interfaces
    answer), refused unless ``loopback_allowed`` (a hub whose adapters are on its own
    host may reach them by the host's address as well as by loopback). An address that
    does not parse is refused too."""
    address = _literal_address(peer)
    if address is None:
        return f"the connected address {peer!r} is no IP address"
    what = _address_problem(address, loopback_allowed=loopback_allowed)
    if what is None and local is not None and not loopback_allowed:
        own = _literal_address(local)
        if own is None:
            what = f"was reached from a local address {local!r} that is no IP address"
        elif own == address:
            what = "is this machine (the connection's own local address)"
    return None if what is None else f"the connected address {peer} {what}"


PeerRule = Callable[[str, str | None], str | None]
"""Why the hub must not talk to a connected peer address, given the connection's local
address (None: it may)."""


def peer_rule(*, production: bool, loopback_allowed: bool) -> PeerRule | None:
    """The rule a hub's direct adapter calls judge each new connection by
    (:func:`peer_problem`): on a production hub only, as :func:`call_problem`'s spelling
    check; None on a development hub (adapters on loopback are its normal case)."""
    if not production:
        return None
    return functools.partial(peer_problem, loopback_allowed=loopback_allowed)


@functools.lru_cache(maxsize=1024)
def call_problem(url: str, *, production: bool, loopback_allowed: bool) -> str | None:
    """Why the hub must not call the adapter at ``url`` now (None: it may): a URL that is
    no base, or, on a production hub, one on its own machine or link. Registration
    refuses both, and this holds a URL stored before it did (read at every call, kept
    per URL)."""
    problem = base_url_problem(url)
    if problem is None and production:
        problem = local_host_problem(url, loopback_allowed=loopback_allowed)
    return problem
