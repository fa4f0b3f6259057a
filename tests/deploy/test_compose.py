"""deploy/compose.yaml: a well-formed Compose file whose services fit together.

``docker compose config`` needs the compose plugin, which these machines lack (the
docker client is here, its compose command is not, and no engine runs): the first
test uses it where it exists and skips otherwise. The rest read the file with PyYAML
(merge keys resolved), interpolate it the way Compose does, and check what Compose
would only find out at ``up``: every reference resolves, one-shot and health
conditions fit their targets, the replicas' ports are nginx's upstream servers, the
commands parse with the real ``onceonly`` parser, the hub settings pass production
validation and each adapter's configuration loads with the adapter's own loader.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from onceonly.adapters import load_config
from onceonly.hub.cli import build_parser
from onceonly.hub.cli.demo import DEPARTMENT_ITEMS
from onceonly.hub.config import Settings

from tests.deploy.dockerfile import ROOT

COMPOSE = ROOT / "deploy" / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "onceonly.conf"
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
    environments = [service["environment"] for service in hub_processes]
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
        assert loaded.listen_host == "0.0.0.0"
        assert _port(_probe_url(service)) == loaded.listen_port
        assert f"{name}-data:{loaded.data_dir}" in service["volumes"]
        assert service["environment"]["SSL_CERT_FILE"] in " ".join(service["volumes"])


def test_only_nginx_is_published_and_the_database_is_internal(compose: dict[str, Any]) -> None:
    published = [name for name, s in compose["services"].items() if "ports" in s]
    assert published == ["nginx"]
    assert compose["networks"]["backend"]["internal"] is True
    assert compose["networks"]["departments"]["internal"] is True
    assert compose["services"]["postgres"]["networks"] == ["backend"]
