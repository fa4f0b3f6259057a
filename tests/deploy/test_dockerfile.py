"""deploy/Dockerfile, checked without a Docker engine (none runs on these machines).

What can be known from the file itself: the stages, the user, the health check (run
here against a real HTTP server), the files it copies and the build context that
.dockerignore leaves, and that its command is a console script of the wheel that
``python -m build`` makes, with arguments the ``onceonly`` parser accepts. Whether the
image builds and starts is not checked here (deploy/README.md, "What was tested how").
"""

import os
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from configparser import ConfigParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from onceonly.hub.cli import build_parser

from tests.deploy.dockerfile import ROOT, Stage, ignore_patterns, is_ignored, stages

IMAGE_UID = 10001


@pytest.fixture(scope="module")
def builder() -> Stage:
    return stages()[0]


@pytest.fixture(scope="module")
def runtime() -> Stage:
    return stages()[-1]


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = out.glob("onceonly-*.whl")
    return wheel


def test_builds_a_wheel_in_a_builder_stage_and_runs_on_python_slim(
    builder: Stage, runtime: Stage
) -> None:
    assert len(stages()) >= 2
    assert builder.name == "builder"
    assert any("python -m build" in run.value for run in builder.all("RUN"))
    assert runtime.base == "python:3.11-slim"
    assert builder.base == runtime.base  # the venv's Python is the one the wheel was built on
    takes_wheel = [i for i in runtime.instructions if "from=builder" in i.value]
    assert takes_wheel, "the runtime stage takes nothing from the builder"
    assert any(
        "pip install /dist/*.whl" in i.value and "python -m venv" in i.value for i in takes_wheel
    )


def test_runs_as_a_fixed_non_root_user(runtime: Stage) -> None:
    user = runtime.last("USER").value
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "a numeric uid, so that runAsNonRoot can check it"
    assert gid.isdigit()
    assert (int(uid), int(gid)) == (IMAGE_UID, IMAGE_UID)
    created = " ".join(run.value for run in runtime.all("RUN"))
    assert f"--uid {IMAGE_UID}" in created
    assert f"--gid {IMAGE_UID}" in created
    # the only place it may write, besides /tmp, exists and is its own
    assert f"-o onceonly -g onceonly {runtime_data_dir(runtime)}" in created


def runtime_data_dir(runtime: Stage) -> str:
    env = " ".join(e.value for e in runtime.all("ENV"))
    assert "ONCEONLY_DATA_DIR=/var/lib/onceonly" in env
    return "/var/lib/onceonly"


def test_writes_no_bytecode_at_run_time(runtime: Stage) -> None:
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(e.value for e in runtime.all("ENV"))


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()
    server.server_close()


def _probe(argv: list[str], url: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("HEALTHCHECK_URL", None)
    if url is not None:
        env["HEALTHCHECK_URL"] = url
    command = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_asks_healthz_with_python_and_fails_on_an_error(
    runtime: Stage, health_server: str
) -> None:
    argv = runtime.last("HEALTHCHECK").exec_form()
    assert argv[:2] == ["python", "-c"], "the image has no curl: Python's urllib"
    assert "urllib.request" in argv[2]
    assert "'http://127.0.0.1:8000/healthz'" in argv[2]  # the hub's CMD port, by default
    assert _probe(argv, f"{health_server}/healthz") == 0
    assert _probe(argv, f"{health_server}/not-healthy") != 0
    assert _probe(argv, "http://127.0.0.1:9/healthz") != 0  # nothing listens


def test_every_copied_path_exists_and_is_in_the_build_context(
    builder: Stage, runtime: Stage
) -> None:
    patterns = ignore_patterns()
    copied = [
        source
        for stage in (builder, runtime)
        for copy in stage.all("COPY")
        if "from" not in copy.flags
        for source in copy.words[:-1]
    ]
    assert copied
    for source in copied:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such path in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [f for f in files if not is_ignored(f.relative_to(ROOT).as_posix(), patterns)]
        assert kept, f"COPY {source}: .dockerignore leaves it out of the build context"


@pytest.mark.parametrize(
    "path",
    [".git/config", ".venv/bin/python", "var/keys/pseudonym.key", "hub/__pycache__/app.pyc"],
)
def test_build_context_leaves_out_keys_venvs_and_history(path: str) -> None:
    assert is_ignored(path, ignore_patterns())


def test_builder_copies_every_package_folder(builder: Stage) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    copied = {source.rstrip("/") for copy in builder.all("COPY") for source in copy.words[:-1]}
    assert folders <= copied
    assert project["project"]["readme"] in copied


def test_entrypoint_is_a_console_script_of_the_built_wheel(
    runtime: Stage, built_wheel: Path
) -> None:
    (entrypoint,) = runtime.last("ENTRYPOINT").exec_form()
    with zipfile.ZipFile(built_wheel) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
        scripts = ConfigParser()
        scripts.read_string(wheel.read(name).decode())
    assert scripts.has_option("console_scripts", entrypoint), dict(scripts["console_scripts"])
    assert scripts.get("console_scripts", entrypoint) == "onceonly.hub.cli:main"


def test_command_serves_the_hub_on_all_interfaces_behind_a_proxy(runtime: Stage) -> None:
    args = build_parser().parse_args(runtime.last("CMD").exec_form())
    assert args.command == "serve"
    assert (args.host, args.port, args.proxy_headers) == ("0.0.0.0", 8000, True)
    assert runtime.last("EXPOSE").value == str(args.port)
