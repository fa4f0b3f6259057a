"""The shipped nginx configuration is valid nginx, as it runs in the topology test."""

import subprocess
from pathlib import Path

import pytest
import trustme

from tests.deploy.nginx_testing import (
    SHIPPED,
    Placement,
    nginx_binary,
    nginx_command,
    render,
    write_config,
)


def _placement(directory: Path) -> Placement:
    return Placement(
        listen_port=8443,
        replica_ports=(18001, 18002),
        certificate=directory / "fullchain.pem",
        private_key=directory / "privkey.pem",
        access_log=directory / "access.log",
    )


def test_nginx_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    binary = nginx_binary()
    placement = _placement(tmp_path)
    certificate = trustme.CA().issue_cert("127.0.0.1")
    certificate.private_key_and_cert_chain_pem.write_to_path(placement.certificate)
    certificate.private_key_pem.write_to_path(placement.private_key)
    config = write_config(tmp_path, placement)

    checked = subprocess.run(
        nginx_command(binary, config, "-t"), capture_output=True, text=True, timeout=30
    )

    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "test is successful" in output
    # nginx 1.25.1+ warns that "listen ... http2" is deprecated (it still works; the
    # shipped file explains why it keeps that form); any other warning is a finding.
    warnings = [line for line in output.splitlines() if "[warn]" in line]
    assert all('"http2"' in line for line in warnings), output


def test_rendering_changes_only_the_port_upstreams_and_paths(tmp_path: Path) -> None:
    shipped = SHIPPED.read_text().splitlines()
    rendered = render(_placement(tmp_path)).splitlines()

    changed = [(old, new) for old, new in zip(shipped, rendered, strict=True) if old != new]

    assert [old.strip() for old, _ in changed] == [
        "server 127.0.0.1:8001 max_fails=2 fail_timeout=5s;",
        "server 127.0.0.1:8002 max_fails=2 fail_timeout=5s;",
        "listen 443 ssl http2;",
        "access_log /var/log/nginx/onceonly.access.log onceonly;",
        "ssl_certificate     /etc/ssl/onceonly/fullchain.pem;",
        "ssl_certificate_key /etc/ssl/onceonly/privkey.pem;",
    ]
    assert "listen 127.0.0.1:8443 ssl http2;" in changed[2][1]


def test_rendering_refuses_a_shipped_file_whose_lines_moved(tmp_path: Path) -> None:
    moved = SHIPPED.read_text().replace("listen 443 ssl", "listen 8443 ssl")

    with pytest.raises(AssertionError, match="'listen 443 ' occurs 0 times"):
        render(_placement(tmp_path), moved)
