"""The command line's shape (issue 17): no module of the CLI imports another's private
name; one reader of problem responses; uvicorn's start-up traceback folded into one
line."""

import ast
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import onceonly.hub.cli
from onceonly.hub.cli.admin_client import AdminError, answer_of, problem_of
from onceonly.hub.kit import logs

CLI = Path(onceonly.hub.cli.__file__).parent


def private_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("onceonly"):
            names += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    return names


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_no_cli_module_imports_a_private_name(path: Path) -> None:
    assert private_imports(path) == []


def test_the_package_only_builds_the_parser_and_runs_main() -> None:
    tree = ast.parse((CLI / "__init__.py").read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert functions == {"build_parser", "main"}


PROBLEM = {"type": "urn:onceonly:problem:no-grant", "title": "No grant", "detail": "none"}


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        (httpx.Response(403, json=PROBLEM), PROBLEM),
        # anything else is described, never shown: no page or body in the terminal
        (
            httpx.Response(502, text="<html>Bad gateway</html>"),
            {"detail": "an answer of 24 bytes of text/plain"},
        ),
        (
            httpx.Response(500, json=["not", "an", "object"]),
            {"detail": "an answer of 21 bytes of application/json"},
        ),
        (
            httpx.Response(400, content=b"[" * 100_000),
            {"detail": "an answer of 100000 bytes of no content type"},
        ),
    ],
    ids=["problem", "html", "json-array", "nested-too-deep"],
)
def test_one_reader_of_problems(response: httpx.Response, problem: dict[str, str]) -> None:
    assert problem_of(response) == problem
    with pytest.raises(AdminError) as refused:
        answer_of(response)
    assert (refused.value.status, refused.value.problem) == (response.status_code, problem)


def test_answers_that_are_not_refusals() -> None:
    assert answer_of(httpx.Response(204)) == {}
    assert answer_of(httpx.Response(200, json={"a": [1]})) == {"a": [1]}
    with pytest.raises(AdminError, match="nested deeper"):
        answer_of(httpx.Response(200, content=b"[" * 100_000 + b"]" * 100_000))


def lifespan_failure_records() -> list[logging.LogRecord]:
    traceback = (
        'Traceback (most recent call last):\n  File "app.py", line 45, in prepare\n'
        "    raise RuntimeError(...)\n"
        "RuntimeError: the database schema is not current: run `onceonly migrate`\n"
    )
    made = [
        logging.LogRecord("uvicorn.error", logging.ERROR, "", 0, traceback, (), None),
        logging.LogRecord(
            "uvicorn.error", logging.ERROR, "", 0, "Application startup failed. Exiting.", (), None
        ),
    ]
    return made


@pytest.fixture
def configured_logs() -> Iterator[None]:
    """logs.configure, undone afterwards (it replaces process-wide handlers)."""
    names = ("onceonly", "uvicorn", "uvicorn.access", "uvicorn.error")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).filters[:]) for n in names}
    level, propagate = logging.getLogger("onceonly").level, logging.getLogger("onceonly").propagate
    logs.configure(level="INFO", as_json=True)
    yield
    for name, (handlers, filters) in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).filters[:] = filters
    logging.getLogger("onceonly").setLevel(level)
    logging.getLogger("onceonly").propagate = propagate


@pytest.mark.usefixtures("configured_logs")
def test_uvicorn_start_up_failure_is_one_line() -> None:
    logger = logging.getLogger("uvicorn.error")
    kept = [record for record in lifespan_failure_records() if logger.filter(record)]
    assert len(kept) == 1
    assert kept[0].getMessage() == (
        "the hub cannot start: RuntimeError: the database schema is not current:"
        " run `onceonly migrate`"
    )
    assert kept[0].exc_info is None


@pytest.mark.parametrize("as_json", [True, False])
def test_fatal_is_one_line_in_the_log_format(
    as_json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.fatal("cannot start:\n  the reason", as_json=as_json, logger="onceonly.hub.cli")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(
        '"message": "cannot start: the reason"}' if as_json else "cannot start: the reason"
    )
