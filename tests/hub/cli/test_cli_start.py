"""``onceonly --help`` starts without the web stack (issue 16): what it imports is
checked here, in a fresh interpreter; how long it takes is measured by
bench/cli_start.py, never by a test (a shared machine makes timings flaky)."""

import subprocess
import sys

import pytest

from onceonly.hub.cli import build_parser, main

WEB_STACK = {"fastapi", "starlette", "sqlalchemy", "uvicorn", "httpx", "alembic", "joserfc"}
IMPORTED_BY = """
import contextlib, io, sys
from onceonly.hub.cli import main
with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
    main({argv!r})
print(" ".join(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


def top_level_modules_after(argv: list[str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_BY.format(argv=argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["items", "list", "--help"], ["audit", "export", "--help"]],
    ids=" ".join,
)
def test_help_and_version_import_no_web_stack(argv: list[str]) -> None:
    assert top_level_modules_after(argv) & WEB_STACK == set()


def test_the_adapter_commands_are_mounted_when_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["adapter", "--help"])
    assert ended.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "jwks", "import", "put", "check", "reconcile"):
        assert command in out


def test_the_top_level_help_lists_the_adapter_without_mounting_it() -> None:
    parser = build_parser(["--help"])
    assert "adapter" in parser.format_help()
    assert "adapter" in build_parser(["items", "list"]).format_help()


def test_a_parser_built_without_argv_knows_every_command() -> None:
    args = build_parser().parse_args(["adapter", "jwks", "--config", "x.toml"])
    assert args.adapter_command == "jwks"
