"""deploy/compose.yaml: a well-formed Compose file whose services fit together.

``docker compose config`` needs the compose plugin, which these machines lack (the
docker client is here, its compose command is not, and no engine runs): the first
test uses it where it exists and skips otherwise. The rest read the file with PyYAML
(merge keys resolved), interpolate it the way Compose does, and check what Compose
would only find out at ``up``: every reference resolves, one-shot and health
conditions fit their targets, the replicas' ports are nginx's upstream servers, the
commands parse with the real ``onceonly`` parser, the hub settings pass production
validation and each adapter's configuration loads with the adapter's own loader.

Adapters are reached over HTTPS only (a production hub refuses an ``http://``
adapter URL): each sits behind its TLS proxy, nginx with nginx/adapter-tls.conf. The
tests check that every adapter URL deploy/README.md registers is that proxy's
``https://`` name and port, that the ports, names, certificates and trust line up, and
run the proxy's configuration itself in front of a stand-in adapter.
"""

import http.server
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import trustme
import yaml

from onceonly.adapters import load_config
from onceonly.hub.cli import build_parser
from onceonly.hub.cli.demo import DEPARTMENT_ITEMS
from onceonly.hub.config import Settings

from tests.deploy.dockerfile import ROOT
from tests.deploy.nginx_testing import nginx_binary

COMPOSE = ROOT / "deploy" / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "onceonly.conf"
ADAPTER_TLS_CONF = ROOT / "deploy" / "nginx" / "adapter-tls.conf"
K8S_ADAPTER_TLS_CONF = ROOT / "deploy" / "k8s" / "base" / "adapter-tls.conf"
README = ROOT / "deploy" / "README.md"
ENVIRONMENT = {"ONCEONLY_DB_PASSWORD": "not-a-real-password"}
TOP_LEVEL = {"name", "services", "networks", "volumes", "configs", "secrets"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, operator, word = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator == ":?":
            raise KeyError(f"{name}: {word}")
        return word or ""

    result = re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", substitute, value)
    assert "$" not in result.replace("$$", ""), f"not interpolated: {value}"
    return result


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return {k: v for k, v in interpolate(document, ENVIRONMENT).items() if not k.startswith("x-")}


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _parsed(service: dict[str, Any]) -> Any:
    return build_parser().parse_args(service["command"])


def _by_command(services: dict[str, dict[str, Any]], *words: str) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services.items()
        if service.get("command", [])[: len(words)] == list(words)
    }


def _port(url: str) -> int:
    return int(re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\w+", url).group(1))  # type: ignore[union-attr]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts and volumes: target -> source."""
    return {
        volume.split(":")[1]: volume.split(":")[0]
        for volume in service.get("volumes", [])
        if ":" in volume
    }


def _tls_proxy_conf() -> dict[str, Any]:
    """What nginx/adapter-tls.conf listens on, passes to, and serves as certificate."""
    conf = ADAPTER_TLS_CONF.read_text(encoding="utf-8")
    (listen,) = re.findall(r"^\s*listen (\d+) ssl;", conf, re.MULTILINE)
    (upstream,) = re.findall(r"proxy_pass http://([\d.]+):(\d+);", conf)
    (certificate,) = re.findall(r"^\s*ssl_certificate\s+(\S+);", conf, re.MULTILINE)
    (key,) = re.findall(r"^\s*ssl_certificate_key\s+(\S+);", conf, re.MULTILINE)
    return {
        "listen": int(listen),
        "upstream": (upstream[0], int(upstream[1])),
        "certificate": certificate,
        "key": key,
    }


def _readme_section(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n### {heading}\n")
    end = text.index("\n### ", start + 1)
    return text[start:end]


def _probe_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], "the image has no curl"
    (url,) = re.findall(r"urlopen\('([^']+)'", test[3])
    return str(url)


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    if plugin.returncode != 0:
        pytest.skip("the docker client has no compose command here (the YAML tests below run)")
    checked = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **ENVIRONMENT},
    )
    assert checked.returncode == 0, checked.stderr


def test_refuses_to_start_without_a_database_password() -> None:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    with pytest.raises(KeyError, match="ONCEONLY_DB_PASSWORD"):
        interpolate(document, {})


def test_every_reference_resolves(compose: dict[str, Any]) -> None:
    assert set(compose) <= TOP_LEVEL
    services = compose["services"]
    for name, service in services.items():
        for network in service.get("networks", {}):
            assert network in compose["networks"], f"{name}: network {network}"
        mode = service.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.removeprefix("service:") in services, f"{name}: {mode}"
            assert "networks" not in service
            assert "ports" not in service
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: volume {source}"
            else:
                assert (COMPOSE.parent / source).exists() or "tls" in PurePosixPath(source).parts
        for config in service.get("configs", []):
            assert config["source"] in compose["configs"], f"{name}: config {config}"


def test_dependencies_wait_for_what_they_need(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for target, wanted in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            condition = wanted["condition"]
            assert condition in CONDITIONS
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no health check"
            if condition == "service_completed_successfully":
                assert services[target]["restart"] == "no", f"{target} is not a one-shot"


def test_every_container_has_a_read_only_root_and_long_runners_a_health_check(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        assert service.get("read_only") is True, f"{name} has a writable root filesystem"
        if service.get("restart") == "no":
            continue  # a one-shot: its exit status is its health
        assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert service["restart"] == "unless-stopped", name
    ours = [s for s in services.values() if s["image"].startswith("onceonly:")]
    assert len(ours) == 7  # keys init, migrate, two replicas, three adapters
    for service in ours:
        assert "/tmp" in service["tmpfs"]
        assert service["cap_drop"] == ["ALL"]


def test_two_hub_replicas_are_the_upstream_servers_of_the_shipped_nginx_conf(
    services: dict[str, dict[str, Any]],
) -> None:
    replicas = _by_command(services, "serve")
    assert len(replicas) == 2
    conf = NGINX_CONF.read_text(encoding="utf-8")
    upstream = re.search(r"upstream onceonly_hub \{(.*?)\}", conf, re.DOTALL)
    assert upstream is not None
    upstream_servers = set(re.findall(r"server (127\.0\.0\.1:\d+)", upstream.group(1)))
    listening = set()
    for name, service in replicas.items():
        args = _parsed(service)
        listening.add(f"{args.host}:{args.port}")
        assert args.proxy_headers, f"{name}: X-Forwarded-For from nginx is ignored"
        # nginx's loopback is the replica's: the replica is not reachable around it
        assert service["network_mode"] == "service:nginx"
        assert _probe_url(service) == f"http://{args.host}:{args.port}/readyz"
        assert "hub-data:/var/lib/onceonly:ro" in service["volumes"]
    assert listening == upstream_servers


def test_replicas_start_after_keys_and_migration(services: dict[str, dict[str, Any]]) -> None:
    (keys,) = _by_command(services, "keys", "init")
    (migrate,) = _by_command(services, "migrate")
    assert _parsed(services[keys]).keys_command == "init"
    assert "hub-data:/var/lib/onceonly" in services[keys]["volumes"]  # writable, once
    assert services[migrate]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for replica in _by_command(services, "serve").values():
        assert replica["depends_on"][keys]["condition"] == "service_completed_successfully"
        assert replica["depends_on"][migrate]["condition"] == "service_completed_successfully"


def test_hub_settings_pass_production_validation(services: dict[str, dict[str, Any]]) -> None:
    hub_processes = [*_by_command(services, "serve").values()]
    hub_processes += [*_by_command(services, "migrate").values()]
    hub_processes += [*_by_command(services, "keys").values()]
    environments = [
        {
            name: value
            for name, value in service["environment"].items()
            if name.startswith("ONCEONLY_")
        }
        for service in hub_processes
    ]
    assert all(env == environments[0] for env in environments)
    env = environments[0]
    settings = Settings(
        **{name.removeprefix("ONCEONLY_").lower(): value for name, value in env.items()}
    )
    assert settings.is_production
    assert settings.database_url is not None
    assert "@postgres:5432/" in settings.database_url
    assert settings.resolved_audit_origin == "exchange.example.gov/audit"


def test_nginx_serves_the_shipped_conf_with_mounted_certificates(
    services: dict[str, dict[str, Any]],
) -> None:
    nginx = services["nginx"]
    conf = NGINX_CONF.read_text(encoding="utf-8")
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in nginx["volumes"] if ":" in volume)
    assert mounts["./nginx/onceonly.conf"] == "/etc/nginx/conf.d/onceonly.conf"
    targets = set(mounts.values())
    for directive in ("ssl_certificate", "ssl_certificate_key"):
        (path,) = re.findall(rf"^\s*{directive}\s+(\S+);", conf, re.MULTILINE)
        assert path in targets, f"{directive} {path} is not mounted"
    (log,) = re.findall(r"access_log\s+(\S+)\s+onceonly;", conf)
    assert any(log.startswith(v.split(":")[1] + "/") for v in nginx["volumes"] if "logs" in v)
    (listen,) = re.findall(r"listen (\d+) ssl", conf)
    assert nginx["ports"] == [f"443:{listen}"]
    (server_name,) = re.findall(r"server_name (\S+);", conf)
    assert server_name in nginx["networks"]["departments"]["aliases"]


def test_the_demo_departments_adapters_load_with_the_adapters_own_loader(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    services = compose["services"]
    adapters = _by_command(services, "adapter", "serve")
    assert set(adapters) == set(DEPARTMENT_ITEMS)
    issuer = services["hub-1"]["environment"]["ONCEONLY_ISSUER"]
    for name, service in adapters.items():
        (config,) = service["configs"]
        assert config["target"] == str(_parsed(service).config)
        path = tmp_path / f"{name}.toml"
        path.write_text(compose["configs"][config["source"]]["content"], encoding="utf-8")
        loaded = load_config(path)
        shipped = load_config(ROOT / "config" / f"{name}.toml")
        assert loaded.department == shipped.department == name
        assert loaded.client_id == shipped.client_id
        assert set(loaded.items) == set(shipped.items)
        assert loaded.hub_url == issuer
        # plain HTTP on the loopback it shares with its TLS proxy, and nowhere else
        assert loaded.listen_host == "127.0.0.1"
        assert (loaded.listen_host, loaded.listen_port) == _tls_proxy_conf()["upstream"]
        assert service["network_mode"] == f"service:{name}-tls"
        assert _port(_probe_url(service)) == loaded.listen_port
        assert f"{name}-data:{loaded.data_dir}" in service["volumes"]
        assert service["environment"]["SSL_CERT_FILE"] in _mounts(service)


def test_only_nginx_is_published_and_the_database_is_internal(compose: dict[str, Any]) -> None:
    published = [name for name, s in compose["services"].items() if "ports" in s]
    assert published == ["nginx"]
    assert compose["networks"]["backend"]["internal"] is True
    assert compose["networks"]["departments"]["internal"] is True
    assert compose["services"]["postgres"]["networks"] == ["backend"]


def test_every_adapter_is_served_over_tls_by_its_proxy(services: dict[str, dict[str, Any]]) -> None:
    conf = _tls_proxy_conf()
    adapters = _by_command(services, "adapter", "serve")
    for name, adapter in adapters.items():
        proxy = services[adapter["network_mode"].removeprefix("service:")]
        assert adapter["depends_on"][f"{name}-tls"]["condition"] == "service_started"
        command = proxy["command"]
        assert command[0] == "nginx"
        config_path = command[command.index("-c") + 1]
        mounts = _mounts(proxy)
        assert mounts[config_path] == "./nginx/adapter-tls.conf"
        # the adapter's own certificate and key, where the configuration reads them
        assert mounts[conf["certificate"]] == f"./tls/{name}.crt"
        assert mounts[conf["key"]] == f"./tls/{name}.key"
        # the proxy holds the adapter's name on the network the hub reaches it on
        assert name in proxy["networks"]["departments"]["aliases"]
        assert "ports" not in proxy, "an adapter is not published"
        # healthy once a request through it reaches the adapter, the certificate checked
        # against the CA for the adapter's name
        test = proxy["healthcheck"]["test"]
        assert test[:2] == ["CMD", "curl"]
        assert "--insecure" not in test
        assert mounts[test[test.index("--cacert") + 1]] == "./tls/ca.pem"
        assert test[test.index("--resolve") + 1] == f"{name}:{conf['listen']}:127.0.0.1"
        assert test[-1] == f"https://{name}:{conf['listen']}/healthz"


def test_the_replicas_trust_the_authority_of_the_adapters_certificates(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, replica in _by_command(services, "serve").items():
        ca_file = replica["environment"]["SSL_CERT_FILE"]  # httpx honours it (trust_env)
        assert _mounts(replica)[ca_file] == "./tls/ca.pem", name
    for name, proxy in services.items():
        if name.endswith("-tls"):
            assert _mounts(proxy)["/etc/ssl/onceonly/ca.pem"] == "./tls/ca.pem"


def test_the_readme_registers_every_adapter_at_its_https_proxy(
    services: dict[str, dict[str, Any]],
) -> None:
    section = _readme_section("Compose")
    registered = dict(re.findall(r"department put (\S+) .*?--adapter-url (\S+)", section))
    adapters = _by_command(services, "adapter", "serve")
    assert set(registered) == set(adapters)
    listen = _tls_proxy_conf()["listen"]
    for department, url in registered.items():
        assert url == f"https://{department}:{listen}", url
    clients = set(re.findall(r"client put (\S+) --department (\S+)", section))
    assert clients == {("$d-adapter", "$d")}
    (loop,) = re.findall(r"for d in ([\w -]+); do", section)
    assert set(loop.split()) == set(adapters)
    # nowhere in the page an adapter URL in plain HTTP
    text = README.read_text(encoding="utf-8")
    assert not re.search(r"adapter[-_ ]url[`\s]+`?http://", text, re.IGNORECASE)


def test_the_kubernetes_adapter_proxy_runs_the_same_configuration() -> None:
    assert K8S_ADAPTER_TLS_CONF.read_bytes() == ADAPTER_TLS_CONF.read_bytes()


class _StandIn(http.server.BaseHTTPRequestHandler):
    """The adapter behind the proxy: answers with what it was sent."""

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = f"{self.command} {self.path} {len(body)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def stand_in_adapter() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _render_tls_proxy(directory: Path, *, listen: int, adapter: int) -> Path:
    """nginx/adapter-tls.conf with its port, upstream, certificate directory and /tmp
    replaced, each literally and as many times as the shipped file has them."""
    conf = _tls_proxy_conf()
    text = ADAPTER_TLS_CONF.read_text(encoding="utf-8")
    certificates = str(PurePosixPath(conf["certificate"]).parent) + "/"
    replacements = {
        "/tmp/": (f"{directory}/", 6),  # first: the test's directory may be under /tmp
        f"listen {conf['listen']} ssl;": (f"listen 127.0.0.1:{listen} ssl;", 1),
        "proxy_pass http://127.0.0.1:{}".format(conf["upstream"][1]): (
            f"proxy_pass http://127.0.0.1:{adapter}",
            1,
        ),
        certificates: (f"{directory}/", 2),
    }
    for old, (new, count) in replacements.items():
        assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    # as root, nginx's workers would be nobody, who cannot enter pytest's directories
    path = directory / "adapter-tls.conf"
    path.write_text(("user root;\n" if os.geteuid() == 0 else "") + text, encoding="utf-8")
    return path


def _https(port: int, name: str, ca: ssl.SSLContext, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ca.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(request)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    return answer


def test_the_adapter_tls_proxy_serves_the_adapter_over_https(
    tmp_path: Path, stand_in_adapter: int
) -> None:
    """The shipped proxy configuration, run by nginx: the hub's request (a POST with a
    body, checked against the CA for the adapter's name) reaches the adapter."""
    binary = nginx_binary()
    authority = trustme.CA()
    issued = authority.issue_cert("civil-registry")
    issued.private_key_and_cert_chain_pem.write_to_path(tmp_path / "tls.crt")
    issued.private_key_pem.write_to_path(tmp_path / "tls.key")
    listen = _free_port()
    config = _render_tls_proxy(tmp_path, listen=listen, adapter=stand_in_adapter)
    with (tmp_path / "nginx.out").open("wb") as output:
        nginx = subprocess.Popen(
            [binary, "-e", "stderr", "-p", str(tmp_path), "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        ca = ssl.create_default_context()
        authority.configure_trust(ca)
        deadline = time.monotonic() + 20
        while True:
            assert nginx.poll() is None, (tmp_path / "nginx.out").read_text()
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx does not listen"
                time.sleep(0.1)
        body = b'{"subjects": ["38001085718"]}'
        answer = _https(
            listen,
            "civil-registry",
            ca,
            b"POST /v1/items/person.identity/records/query HTTP/1.1\r\n"
            b"Host: civil-registry:9443\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
            + body,
        )
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert answer.endswith(f"POST /v1/items/person.identity/records/query {len(body)}".encode())
        # a certificate for another name is refused, as the hub's client refuses it
        with pytest.raises(ssl.SSLCertVerificationError):
            _https(listen, "tax", ca, b"GET /healthz HTTP/1.1\r\nHost: tax\r\n\r\n")
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
    log = (tmp_path / "nginx.out").read_text()
    assert "/v1/items/person.identity/records/query" in log  # the access log, on stdout
    assert "[emerg]" not in log, log
    assert "[alert]" not in log, log
