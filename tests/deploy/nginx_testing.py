"""Running the shipped nginx configuration (deploy/nginx/onceonly.conf) on loopback.

The tests run the shipped file itself. :func:`render` changes only what differs from
one machine to another, each a literal replacement that must match exactly once (a
change to one of those lines in the shipped file fails the tests rather than running
something else):

| shipped | rendered |
|---|---|
| ``listen 443 `` | ``listen 127.0.0.1:<port> `` |
| ``server 127.0.0.1:8001 `` and ``:8002 `` | the two replicas' ports |
| ``/etc/ssl/onceonly/fullchain.pem``, ``privkey.pem`` | a trustme certificate and key |
| ``/var/log/nginx/onceonly.access.log`` | a file in the test's directory |

The shipped file belongs in nginx's http context; :func:`write_config` writes the
main file around it (what /etc/nginx/nginx.conf is on a host), with everything nginx
writes kept in the test's directory.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "nginx" / "onceonly.conf"


@dataclass(frozen=True)
class Placement:
    """Where the rendered file listens, proxies to, and finds and writes its files."""

    listen_port: int
    replica_ports: tuple[int, int]
    certificate: Path
    private_key: Path
    access_log: Path

    def replacements(self) -> dict[str, str]:
        first, second = self.replica_ports
        return {
            "listen 443 ": f"listen 127.0.0.1:{self.listen_port} ",
            "server 127.0.0.1:8001 ": f"server 127.0.0.1:{first} ",
            "server 127.0.0.1:8002 ": f"server 127.0.0.1:{second} ",
            "/etc/ssl/onceonly/fullchain.pem": str(self.certificate),
            "/etc/ssl/onceonly/privkey.pem": str(self.private_key),
            "/var/log/nginx/onceonly.access.log": str(self.access_log),
        }


def render(placement: Placement, shipped: str | None = None) -> str:
    """The shipped file (or ``shipped``) with only ``placement``'s replacements made."""
    text = SHIPPED.read_text() if shipped is None else shipped
    for old, new in placement.replacements().items():
        count = text.count(old)
        assert count == 1, f"{SHIPPED.name}: {old!r} occurs {count} times, not once"
        text = text.replace(old, new)
    return text


def write_config(directory: Path, placement: Placement, *, servers: str = "") -> Path:
    """``directory/nginx.conf``: a main context whose http context includes the rendered
    file (``directory/onceonly.conf``) and then ``servers``, more server blocks."""
    (directory / "onceonly.conf").write_text(render(placement))
    temp = directory / "temp"
    temp.mkdir(exist_ok=True)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {temp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would run as nobody, who cannot enter pytest's
    # directories (mode 0700) where they keep temporary files.
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = directory / "nginx.conf"
    config.write_text(
        f"{user}worker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\n"
        "events {\n    worker_connections 512;\n}\n"
        "http {\n"
        f"{temp_paths}\n"
        f"    include {directory / 'onceonly.conf'};\n"
        f"{servers}"
        "}\n"
    )
    return config


def nginx_binary() -> str:
    """nginx's path; outside CI the test skips without it, in CI it fails (.ci/run
    installs it)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI and is not installed")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return found


def nginx_command(binary: str, config: Path, *options: str) -> list[str]:
    """nginx on ``config``, its early errors in the same directory's error.log."""
    directory = config.parent
    logs = ["-e", str(directory / "error.log")]
    return [binary, *logs, "-p", str(directory), "-c", str(config), *options]
