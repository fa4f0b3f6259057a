"""``serve`` with ``allow_plain_http_hub`` and an http:// hub off loopback logs a
WARNING at start naming the risk (decision 0061): it started silently, although the
request tokens are then checked against keys fetched in clear, which anyone on the path
can replace, and so forge tokens."""

from pathlib import Path

import pytest

from onceonly.adapters import load_config

from tests.adapters.adapter_testing import HubDouble, adapter_process, write_config
from tests.adapters.test_adapters_config_hub_url import config

RISK = (
    "request tokens are checked against keys fetched in clear, so anyone on the path can forge them"
)


@pytest.mark.parametrize(
    ("hub_url", "in_clear"),
    [
        ("http://10.0.0.5:8000", True),
        ("http://hub.onceonly.example", True),
        ("https://hub.onceonly.example", False),
        ("http://127.0.0.1:8000", False),
        ("http://localhost:8000", False),
    ],
)
def test_the_risk_is_named_for_plain_http_off_loopback_only(
    tmp_path: Path, hub_url: str, in_clear: bool
) -> None:
    settings = load_config(config(tmp_path, hub_url, "allow_plain_http_hub = true"))

    risk = settings.hub_in_clear

    assert (risk is not None) == in_clear
    assert risk is None or (hub_url in risk and RISK in risk)


def serve_stderr(path: Path) -> str:
    """What ``serve`` logged from its start to its stop."""
    with adapter_process(path) as (_, server):
        server.send_signal(2)
        server.wait(timeout=20)
        return server.stderr.read().decode() if server.stderr else ""


def test_serve_warns_of_a_plain_http_hub_off_loopback(tmp_path: Path) -> None:
    path = write_config(tmp_path, hub_url="http://hub.invalid:8080", items=())
    path.write_text("allow_plain_http_hub = true\n" + path.read_text())

    stderr = serve_stderr(path)

    assert "WARNING:     adapters.cli the hub http://hub.invalid:8080 is reached" in stderr
    assert RISK in stderr


def test_serve_does_not_warn_of_a_hub_on_loopback(tmp_path: Path, hub: HubDouble) -> None:
    path = write_config(tmp_path, hub_url=hub.url, items=())
    path.write_text("allow_plain_http_hub = true\n" + path.read_text())

    assert RISK not in serve_stderr(path)
