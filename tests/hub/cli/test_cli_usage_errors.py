"""A command line that cannot be used exits 1 ("a local file or option that cannot be
used"), never 2, which says the hub cannot be reached (an operator's review: argparse's
usage errors, and a --hub that is no http(s) URL, exited 2)."""

import pytest

from tests.hub.cli.conftest import Onceonly


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["backup"], id="missing-argument"),
        pytest.param(["items", "list", "--no-such-option"], id="unknown-option"),
        pytest.param(["keys", "rotate", "--activate-after", "abc"], id="bad-value"),
        pytest.param(["no-such-command"], id="unknown-command"),
        pytest.param(["serve", "--port", "eighty"], id="serve-port"),
    ],
)
def test_a_usage_error_exits_1(
    onceonly: Onceonly, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        onceonly(*argv)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("usage: onceonly")
    assert "error: " in err.splitlines()[-1]


@pytest.mark.parametrize(
    "url", ["ftp://x", "not a url", "http://", "https://[::1", "https://hub.example:notaport"]
)
@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["items", "list"], id="items-list"),
        pytest.param(["audit", "verify", "--key", "k"], id="audit-verify"),
    ],
)
def test_a_hub_that_is_not_an_http_url_exits_1(
    onceonly: Onceonly, argv: list[str], url: str
) -> None:
    status, out, err = onceonly(*argv, "--hub", url)
    assert (status, out) == (1, "")
    assert err == "--hub (or ONCEONLY_HUB_URL) is not an http:// or https:// URL with a host\n"
