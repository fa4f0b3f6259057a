"""Adapter URLs: the bases the hub joins its own paths under (decision 0060).

A department's adapter URL is a base: :func:`base_url_problem` says whether a URL can
be one, :func:`join_path` joins a path under it, :func:`local_host_problem` names a base
whose host is this machine or its link (loopback, link-local such as cloud metadata
services), and :func:`call_problem` judges a stored URL again before each call.
"""

import functools
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def base_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a base URL to join paths under (None: it can): an absolute
    ``http``/``https`` URL with a host, and nothing after its path. A query or fragment
    (even an empty ``?`` or ``#``, RFC 3986 §3.4-3.5) would swallow the joined path
    (``.../admin?op=x#`` + ``/v1/events`` is still ``/admin``), and user information
    (§3.2.1) puts a credential in every log that shows the URL. It is ASCII: HTTP
    clients turn other dots (U+3002, U+FF0E, U+FF61) into ``.``, so a host written with
    them would escape :func:`local_host_problem`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "it must be an absolute http:// or https:// URL with a host"
    if not url.isascii():  # an HTTP client reads 127。0。0。1 (U+3002) as 127.0.0.1
        return "it must be written in ASCII: a host name in its IDNA form (xn--...)"
    if "?" in url or "#" in url:
        return "it must not have a query ('?') or a fragment ('#'): paths are added to it"
    if "@" in parts.netloc:
        return "it must not hold user information ('user@'): no credential goes in a URL"
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
    (``127.1``, ``0x7f.0.0.1``, ``2130706433`` are 127.0.0.1 to inet_aton)."""
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


def local_host_problem(url: str, *, loopback_allowed: bool = False) -> str | None:
    """Why ``url``'s host is this machine or its link (None: it is not, as far as its
    spelling tells): ``localhost`` and its subdomains (RFC 6761 §6.3), a loopback
    (127.0.0.0/8, ::1), unspecified (0.0.0.0, ::, which reach this machine) or
    link-local address (169.254.0.0/16, where cloud metadata services answer, and
    fe80::/10). Private networks (10.0.0.0/8, 192.168.0.0/16, fc00::/7...) are not
    refused: departments' adapters live in them. A name is not resolved. With
    ``loopback_allowed`` (a hub and its adapters on one host), loopback and localhost
    are not refused; unspecified and link-local addresses still are."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    if (host == "localhost" or host.endswith(".localhost")) and not loopback_allowed:
        return f"its host {host!r} is this machine"
    address = _literal_address(host)
    if address is None:
        return None
    if address.is_unspecified or (address.is_loopback and not loopback_allowed):
        return f"its host {host!r} is this machine (a loopback or unspecified address)"
    if address.is_link_local:
        return f"its host {host!r} is link-local (such as a cloud metadata service)"
    return None


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
