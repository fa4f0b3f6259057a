"""The adapter reaches its hub over https://; plain http:// only on loopback, unless
the file says ``allow_plain_http_hub = true`` (decision 0061). A plain http:// hub_url
was accepted anywhere: the request tokens' keys and the records' schemas then crossed
the network in clear, open to anyone on the path."""

from pathlib import Path

import pytest

from onceonly.adapters import ConfigError, load_config


def config(tmp_path: Path, hub_url: str, *extra: str) -> Path:
    path = tmp_path / "adapter.toml"
    lines = ['department = "tax"', f'hub_url = "{hub_url}"', 'data_dir = "d"', *extra]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "hub_url",
    [
        "https://hub.onceonly.example",
        "http://127.0.0.1:8000",
        "http://127.8.9.1",
        "http://localhost:8000/",
        "http://[::1]:8000",
    ],
)
def test_https_or_loopback_is_taken(tmp_path: Path, hub_url: str) -> None:
    assert load_config(config(tmp_path, hub_url)).hub_url == hub_url.rstrip("/")


@pytest.mark.parametrize(
    "hub_url", ["http://hub.onceonly.example", "http://10.0.0.5:8000", "http://127.0.0.1.nip.io"]
)
def test_plain_http_elsewhere_is_refused(tmp_path: Path, hub_url: str) -> None:
    with pytest.raises(ConfigError, match=r"adapter\.toml: hub_url: the hub is reached over"):
        load_config(config(tmp_path, hub_url))


def test_plain_http_elsewhere_is_taken_when_the_file_allows_it(tmp_path: Path) -> None:
    path = config(tmp_path, "http://10.0.0.5:8000", "allow_plain_http_hub = true")
    assert load_config(path).hub_url == "http://10.0.0.5:8000"
