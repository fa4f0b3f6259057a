"""deploy/k8s: both kustomizations render, every document is valid Kubernetes, and
they have the properties issue 15 asks for.

Rendered with ``kubectl kustomize`` (skipped only where kubectl is missing), validated
offline by kubernetes-validate against the schemas of one fixed Kubernetes version,
strictly (unknown fields are errors). The commands run through the real ``onceonly``
parser, the settings through the hub's own production validation, and the adapter's
configuration through the adapter's own loader. No cluster runs here: whether the pods
start is not checked (deploy/README.md, "What was tested how").

The adapter is reached over HTTPS only (a production hub refuses an ``http://``
adapter URL): its pod's TLS proxy serves it on 9443, and the tests check that the
Service, both NetworkPolicies, the proxy's container and configuration and the URL
deploy/README.md registers agree on it. The README's Secret commands run against
``kubectl --dry-run=client`` on the files ``onceonly keys init`` makes.
"""

import base64
import os
import re
import shutil
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import trustme
import yaml

from onceonly.adapters import load_config
from onceonly.hub.audit import checkpoints
from onceonly.hub.cli import build_parser
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys, key_file_names

from tests.deploy.dockerfile import ROOT, stages

KUBERNETES_VERSION = "1.32.0"  # the kubectl installed here; the schemas are offline
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
PLACEHOLDER = "REPLACE"
README = ROOT / "deploy" / "README.md"
ORIGIN = "exchange.example.gov/audit"  # the README's

Document = dict[str, Any]


def render(directory: Path) -> list[Document]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests cannot be rendered")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Document]]:
    return request.param, render(KUSTOMIZATIONS[request.param])


@pytest.fixture(scope="module")
def production() -> list[Document]:
    return render(KUSTOMIZATIONS["production"])


def one(documents: list[Document], kind: str, name: str) -> Document:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_templates(documents: list[Document]) -> dict[str, Document]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in documents
        if d["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}
    }


def hub_settings(documents: list[Document]) -> dict[str, str]:
    (config,) = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("onceonly-hub-settings")
    ]
    return dict(config["data"])


def container(template: Document, name: str) -> Document:
    (found,) = [c for c in template["spec"]["containers"] if c["name"] == name]
    return found


def container_port(template: Document, port: int | str) -> int:
    """A port (a number, or the name of a container port) as the number it is."""
    if isinstance(port, int):
        return port
    (number,) = [
        p["containerPort"]
        for c in template["spec"]["containers"]
        for p in c.get("ports", [])
        if p["name"] == port
    ]
    return int(number)


def env_value(container_spec: Document, name: str) -> Document:
    (found,) = [e for e in container_spec.get("env", []) if e["name"] == name]
    return found


def kubernetes_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n### Kubernetes\n")
    return text[start : text.index("\n### ", start + 1)]


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def parsed(container_spec: Document) -> Any:
    (entrypoint,) = stages()[-1].last("ENTRYPOINT").exec_form()
    assert entrypoint == "onceonly"
    assert "command" not in container_spec, "the image's entry point runs the command"
    return build_parser().parse_args(container_spec["args"])


def test_every_document_is_valid_kubernetes(overlay: tuple[str, list[Document]]) -> None:
    name, documents = overlay
    assert len(documents) >= 12
    for document in documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(
                f"{name}: {document['kind']} {document['metadata']['name']}: {path}: "
                f"{error.message}"
            )
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{name}: {error.message}")


def test_validation_catches_an_unknown_field(production: list[Document]) -> None:
    hub = one(production, "Deployment", "onceonly-hub")
    broken = {**hub, "spec": {**hub["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_hub_is_ready_on_readyz_and_alive_on_healthz(overlay: tuple[str, list[Document]]) -> None:
    _, documents = overlay
    hub = container(one(documents, "Deployment", "onceonly-hub")["spec"]["template"], "hub")
    ports = {port["name"]: port["containerPort"] for port in hub["ports"]}
    assert hub["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert hub["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert hub[probe]["httpGet"]["port"] in ports
    args = parsed(hub)
    assert args.command == "serve"
    assert (args.host, args.port) == ("0.0.0.0", ports["http"])


def test_every_pod_runs_non_root_on_a_read_only_root_with_no_capabilities(
    overlay: tuple[str, list[Document]],
) -> None:
    _, documents = overlay
    image_uid = int(stages()[-1].last("USER").value.split(":")[0])
    templates = pod_templates(documents)
    assert set(templates) == {"onceonly-hub", "onceonly-migrate", "onceonly-adapter"}
    for name, template in templates.items():
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == image_uid, name
        assert pod["automountServiceAccountToken"] is False, name
        mounted = {m["name"]: m for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert any(m["mountPath"] == "/tmp" for m in mounted.values()), f"{name}: no /tmp"
        for spec in pod["containers"]:
            security = spec["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            resources = spec["resources"]
            assert set(resources["requests"]) >= {"cpu", "memory"}, name
            assert "memory" in resources["limits"], name


def test_keys_are_secrets_mounted_read_only_where_the_hub_looks(
    overlay: tuple[str, list[Document]],
) -> None:
    _, documents = overlay
    template = one(documents, "Deployment", "onceonly-hub")["spec"]["template"]
    settings = hub_settings(documents)
    keys_dir = Path(settings["ONCEONLY_DATA_DIR"]) / "keys"
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container(template, "hub")["volumeMounts"]}
    for path, secret in ((keys_dir, "onceonly-hub-keys"), (keys_dir / "signing", None)):
        mount = mounts[str(path)]
        assert mount["readOnly"] is True
        assert "secret" in volumes[mount["name"]]
        if secret:
            assert volumes[mount["name"]]["secret"]["secretName"] == secret


def test_hub_settings_pass_production_validation(overlay: tuple[str, list[Document]]) -> None:
    _, documents = overlay
    values = {
        k.removeprefix("ONCEONLY_").lower(): v
        for k, v in hub_settings(documents).items()
        if k.startswith("ONCEONLY_")
    }
    settings = Settings(**values, database_url="postgresql://onceonly@db/onceonly")
    assert settings.is_production
    ingress = one(documents, "Ingress", "onceonly-hub")
    assert settings.issuer == f"https://{ingress['spec']['rules'][0]['host']}"
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    assert settings.resolved_audit_origin.startswith(ingress["spec"]["rules"][0]["host"])


def test_migration_job_runs_onceonly_migrate(overlay: tuple[str, list[Document]]) -> None:
    _, documents = overlay
    job = one(documents, "Job", "onceonly-migrate")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in {"OnFailure", "Never"}
    (migrate,) = pod["containers"]
    assert parsed(migrate).command == "migrate"
    hub = container(one(documents, "Deployment", "onceonly-hub")["spec"]["template"], "hub")
    assert migrate["image"] == hub["image"]
    assert migrate["envFrom"] == hub["envFrom"]
    database = env_value(hub, "ONCEONLY_DATABASE_URL")
    assert env_value(migrate, "ONCEONLY_DATABASE_URL") == database  # the same database
    # it ends, Complete or Failed, even when its pod never starts: a wait for either ends
    assert 0 < job["spec"]["activeDeadlineSeconds"] <= 3600


def test_disruption_budget_keeps_a_hub_serving(overlay: tuple[str, list[Document]]) -> None:
    _, documents = overlay
    budget = one(documents, "PodDisruptionBudget", "onceonly-hub")
    hub = one(documents, "Deployment", "onceonly-hub")
    labels = hub["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hub["spec"]["replicas"] >= 2
    assert budget["spec"]["maxUnavailable"] < hub["spec"]["replicas"]


def test_hub_network_policy_admits_only_the_ingress_and_labelled_pods(
    overlay: tuple[str, list[Document]],
) -> None:
    _, documents = overlay
    policy = one(documents, "NetworkPolicy", "onceonly-hub")
    spec = policy["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    for name, template in pod_templates(documents).items():
        if name != "onceonly-adapter":  # the replicas and the migration Job
            assert (
                spec["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
            )
    (rule,) = spec["ingress"]
    for peer in rule["from"]:
        allowed = [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                }
            },
            {"podSelector": {"matchLabels": {"onceonly.example/hub-client": "true"}}},
        ]
        assert peer in allowed, peer
    destinations = [
        (port["port"], peer)
        for rule in spec["egress"]
        for peer in rule["to"]
        for port in rule["ports"]
    ]
    ports = {port for port, _ in destinations}
    assert {5432, 9443, 53} <= ports <= {5432, 9443, 53, 443}
    adapter = one(documents, "Deployment", "onceonly-adapter")["spec"]["template"]
    to_adapters = [peer for port, peer in destinations if port == 9443]
    assert to_adapters
    assert all(
        peer["podSelector"]["matchLabels"].items() <= adapter["metadata"]["labels"].items()
        for peer in to_adapters
    )
    assert all(peer for _, peer in destinations), "an empty peer is every address"


def test_adapter_serves_its_config_from_the_config_map(
    overlay: tuple[str, list[Document]], tmp_path: Path
) -> None:
    _, documents = overlay
    template = one(documents, "Deployment", "onceonly-adapter")["spec"]["template"]
    adapter = container(template, "adapter")
    args = parsed(adapter)
    assert (args.command, args.adapter_command) == ("adapter", "serve")
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in adapter["volumeMounts"]}
    config_mount = mounts[str(args.config.parent)]
    config_map = one(documents, "ConfigMap", volumes[config_mount["name"]]["configMap"]["name"])
    path = tmp_path / args.config.name
    path.write_text(config_map["data"][args.config.name], encoding="utf-8")
    config = load_config(path)
    assert config.hub_url == hub_settings(documents)["ONCEONLY_ISSUER"]
    # plain HTTP on the pod's loopback only: no port the Service could name
    assert config.listen_host == "127.0.0.1"
    assert "ports" not in adapter
    probe = " ".join(adapter["livenessProbe"]["exec"]["command"])
    assert f"http://127.0.0.1:{config.listen_port}/healthz" in probe
    data = mounts[str(config.data_dir)]
    assert not data.get("readOnly")
    claim = volumes[data["name"]]["persistentVolumeClaim"]["claimName"]
    assert one(documents, "PersistentVolumeClaim", claim)
    # its TLS proxy passes requests to that address, and is ready when one gets through
    proxy_conf = tls_proxy_conf(documents, template)
    assert proxy_conf["upstream"] == (config.listen_host, config.listen_port)
    tls = container(template, "tls")
    assert tls["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert tls["readinessProbe"]["httpGet"]["path"] == "/healthz"
    ready_on = container_port(template, tls["readinessProbe"]["httpGet"]["port"])
    assert ready_on == proxy_conf["listen"]


def tls_proxy_conf(documents: list[Document], template: Document) -> dict[str, Any]:
    """The adapter pod's TLS proxy: its nginx configuration, from the ConfigMap its
    command names, and what it listens on, passes to and reads its certificate from."""
    tls = container(template, "tls")
    assert tls["command"][0] == "nginx"
    path = Path(tls["command"][tls["command"].index("-c") + 1])
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in tls["volumeMounts"]}
    config_map = one(
        documents, "ConfigMap", volumes[mounts[str(path.parent)]["name"]]["configMap"]["name"]
    )
    conf = config_map["data"][path.name]
    (listen,) = re.findall(r"^\s*listen (\d+) ssl;", conf, re.MULTILINE)
    (host, port) = re.findall(r"proxy_pass http://([\d.]+):(\d+);", conf)[0]
    certificates = re.findall(r"^\s*ssl_certificate(?:_key)?\s+(\S+);", conf, re.MULTILINE)
    return {
        "text": conf,
        "listen": int(listen),
        "upstream": (host, int(port)),
        "certificates": certificates,
        "mounts": mounts,
        "volumes": volumes,
    }


def test_the_adapter_is_reached_over_tls_on_one_port_everywhere(
    overlay: tuple[str, list[Document]],
) -> None:
    """Service, the adapter's NetworkPolicy, the hub's NetworkPolicy, the proxy's
    container port and its nginx configuration: 9443, the port the README registers."""
    _, documents = overlay
    template = one(documents, "Deployment", "onceonly-adapter")["spec"]["template"]
    proxy = tls_proxy_conf(documents, template)
    tls = container(template, "tls")
    (tls_port,) = tls["ports"]
    assert tls_port["containerPort"] == proxy["listen"] == 9443
    (service_port,) = one(documents, "Service", "onceonly-adapter")["spec"]["ports"]
    assert container_port(template, service_port["targetPort"]) == proxy["listen"]
    assert service_port["port"] == proxy["listen"]  # the port in the adapter_url
    (admitted,) = one(documents, "NetworkPolicy", "onceonly-adapter")["spec"]["ingress"]
    assert [container_port(template, p["port"]) for p in admitted["ports"]] == [proxy["listen"]]
    labels = template["metadata"]["labels"].items()

    def the_adapter(peer: Document) -> bool:
        return set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"].items() <= labels

    hub_egress = one(documents, "NetworkPolicy", "onceonly-hub")["spec"]["egress"]
    to_adapter = [
        container_port(template, port["port"])
        for rule in hub_egress
        if any(the_adapter(peer) for peer in rule["to"])
        for port in rule["ports"]
    ]
    assert to_adapter == [proxy["listen"]]
    # the certificate and key: the Secret onceonly-adapter-tls, where the conf reads them
    for path in proxy["certificates"]:
        mount = proxy["mounts"][str(Path(path).parent)]
        assert mount["readOnly"] is True
        secret = proxy["volumes"][mount["name"]]["secret"]["secretName"]
        assert secret == "onceonly-adapter-tls"
    assert sorted(Path(p).name for p in proxy["certificates"]) == ["tls.crt", "tls.key"]
    # its nginx writes to /tmp only, which is a volume (read-only root)
    assert "/tmp" in proxy["mounts"]
    assert proxy["text"] == (ROOT / "deploy" / "nginx" / "adapter-tls.conf").read_text()


def test_the_hub_trusts_the_ca_bundle_of_its_config_map(
    overlay: tuple[str, list[Document]],
) -> None:
    """httpx (the hub's outgoing client, trust_env) reads SSL_CERT_FILE."""
    _, documents = overlay
    template = one(documents, "Deployment", "onceonly-hub")["spec"]["template"]
    hub = container(template, "hub")
    ca_file = Path(env_value(hub, "SSL_CERT_FILE")["value"])
    mount = {m["mountPath"]: m for m in hub["volumeMounts"]}[str(ca_file.parent)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in template["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "onceonly-hub-trust"
    assert "items" not in volume["configMap"]  # every key a file: ca.pem among them
    assert ca_file.name == "ca.pem"


def test_services_and_ingress_point_at_what_exists(overlay: tuple[str, list[Document]]) -> None:
    _, documents = overlay
    templates = pod_templates(documents)
    for service in (d for d in documents if d["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        targets = [t for t in templates.values() if selector <= t["metadata"]["labels"].items()]
        assert targets, f"service {service['metadata']['name']} selects no pod"
        names = {
            p["name"] for t in targets for c in t["spec"]["containers"] for p in c.get("ports", [])
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    ingress = one(documents, "Ingress", "onceonly-hub")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert one(documents, "Service", backend["name"])


def test_base_declares_the_secrets_as_placeholders_that_cannot_start_a_hub() -> None:
    documents = render(KUSTOMIZATIONS["base"])
    secrets = [d for d in documents if d["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} == {
        "onceonly-hub-keys",
        "onceonly-hub-signing-keys",
        "onceonly-database",
        "onceonly-adapter-tls",
    }
    for secret in secrets:
        assert all(value.startswith(PLACEHOLDER) for value in secret["stringData"].values())
    trust = one(documents, "ConfigMap", "onceonly-hub-trust")
    assert all(value.startswith(PLACEHOLDER) for value in trust["data"].values())


def test_the_placeholder_trust_bundle_stops_the_hubs_client(tmp_path: Path) -> None:
    trust = one(render(KUSTOMIZATIONS["base"]), "ConfigMap", "onceonly-hub-trust")
    (tmp_path / "ca.pem").write_text(trust["data"]["ca.pem"], encoding="utf-8")
    with pytest.raises(ssl.SSLError):  # what httpx does with SSL_CERT_FILE at start-up
        ssl.create_default_context(cafile=tmp_path / "ca.pem")


def test_production_pins_the_image_and_never_ships_a_placeholder(
    production: list[Document],
) -> None:
    assert [d for d in production if d["kind"] == "Secret"] == []
    assert PLACEHOLDER not in yaml.safe_dump_all(production)
    assert all(d["metadata"].get("namespace") == "onceonly" for d in production)
    for name, template in pod_templates(production).items():
        for spec in template["spec"]["containers"]:
            repository, _, tag = spec["image"].rpartition(":")
            if spec["name"] != "tls":  # the adapter's TLS proxy is nginx
                assert repository.endswith("/onceonly"), name
            assert tag not in {"", "latest"}, name
    assert one(production, "Deployment", "onceonly-hub")["spec"]["replicas"] >= 2
    assert "example.invalid" not in yaml.safe_dump_all(production)


def test_a_hub_refuses_to_load_the_placeholder_keys(tmp_path: Path) -> None:
    secrets = {d["metadata"]["name"]: d for d in render(KUSTOMIZATIONS["base"])}
    keys_dir = tmp_path / "keys"
    for name, directory in (
        ("onceonly-hub-keys", keys_dir),
        ("onceonly-hub-signing-keys", keys_dir / "signing"),
    ):
        directory.mkdir(parents=True)
        for file_name, value in secrets[name]["stringData"].items():
            (directory / file_name).write_text(value, encoding="utf-8")
    with pytest.raises(ValueError, match="Expecting value"):  # not JSON: the start-up stops
        HubKeys.load(keys_dir, create=False)


def test_the_readme_registers_the_adapter_at_its_tls_service(production: list[Document]) -> None:
    section = kubernetes_section()
    (url,) = re.findall(r"--adapter-url (\S+)", section)
    service = one(production, "Service", "onceonly-adapter")
    (port,) = service["spec"]["ports"]
    namespace = service["metadata"]["namespace"]
    host = f"{service['metadata']['name']}.{namespace}.svc"
    assert url == f"https://{host}:{port['port']}"
    assert f"names the Service, `{host}`" in section  # the certificate's name
    assert not re.search(r"adapter[-_ ]url[`\s]+`?http://", section, re.IGNORECASE)


def test_the_readme_makes_the_namespace_before_anything_in_it(production: list[Document]) -> None:
    (namespace,) = {d["metadata"]["namespace"] for d in production}
    assert not [d for d in production if d["kind"] == "Namespace"]  # so the README makes it
    commands = [
        line.strip()
        for block in sh_blocks(kubernetes_section())
        for line in block.splitlines()
        if re.search(r"\bkubectl\b", line)
    ]
    assert commands[0] == f"kubectl create namespace {namespace}"
    assert all(f"-n {namespace} " in c for c in commands[1:] if " -n " in c)


def test_the_readme_waits_for_the_migration_to_complete_or_fail() -> None:
    (block,) = [b for b in sh_blocks(kubernetes_section()) if "apply -k" in b]
    assert "grep -qwE 'Complete|Failed'" in block
    assert "kubectl -n onceonly logs job/onceonly-migrate" in block
    # `wait --for=condition=complete` alone would wait out its timeout on a failed Job
    waits = re.findall(r"wait --for=condition=complete \S+ (--timeout=\S+)", block)
    assert waits == ["--timeout=0s"]
    assert block.index("Complete|Failed") < block.index("logs job/") < block.index("--timeout=0s")


def _run_with_dry_run_kubectl(block: str, directory: Path) -> list[tuple[str, Document]]:
    """Run a README shell block in ``directory`` with every ``kubectl`` a client-side
    dry run (no cluster): each command line and the object it would have made."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    shim = directory / "bin" / "kubectl"
    shim.parent.mkdir()
    made = directory / "made"
    made.mkdir()
    # A command's number is taken under a lock (a pipeline's commands start together);
    # replace, apply and rollout need a cluster: what they would be given is kept; the
    # others' output also goes on, as kubectl's would, to the pipe.
    shim.write_text(
        "#!/bin/sh\n"
        f'exec 9>"{made}/.lock"\n'
        "flock 9\n"
        f'n=$(find "{made}" -name "*.cmd" | wc -l)\n'
        f'printf "%s\\n" "$*" > "{made}/$n.cmd"\n'
        "flock -u 9\n"
        'case " $* " in\n'
        f'  *" replace "*|*" apply "*) exec cat > "{made}/$n.yaml" ;;\n'
        f'  *" rollout "*) exec printf "{{}}\\n" > "{made}/$n.yaml" ;;\n'
        "esac\n"
        f'"{kubectl}" "$@" --dry-run=client -o yaml > "{made}/$n.yaml" || exit\n'
        f'exec cat "{made}/$n.yaml"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONCEONLY_", "KUBECONFIG"))}
    env["PATH"] = f"{shim.parent}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["HOME"] = str(directory)  # no kubeconfig: nothing reaches a cluster
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=directory / "work",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    count = len(list(made.glob("*.cmd")))
    return [
        ((made / f"{n}.cmd").read_text().strip(), yaml.safe_load((made / f"{n}.yaml").read_text()))
        for n in range(count)
    ]


def _mounted_as_the_hub_pod(
    production: list[Document], secrets: dict[str, Document], root: Path
) -> Path:
    """The Secrets' files where the hub's pod mounts them (an optional Secret that was
    not made mounts an empty folder); the keys directory."""
    template = one(production, "Deployment", "onceonly-hub")["spec"]["template"]
    volumes = {v["name"]: v["secret"] for v in template["spec"]["volumes"] if "secret" in v}
    data_dir = Path(hub_settings(production)["ONCEONLY_DATA_DIR"])
    for mount in container(template, "hub")["volumeMounts"]:
        if mount["name"] in volumes:
            directory = root / Path(mount["mountPath"]).relative_to(data_dir)
            directory.mkdir(parents=True, exist_ok=True)
            source = volumes[mount["name"]]
            if source["secretName"] not in secrets:
                assert source.get("optional") is True, source
                continue
            for name, value in secrets[source["secretName"]]["data"].items():
                (directory / name).write_bytes(base64.b64decode(value))
    return root / "keys"


def test_the_readme_rotates_the_checkpoint_key_into_what_the_pods_mount(
    production: list[Document], tmp_path: Path
) -> None:
    """The README's keys, then its checkpoint-key rotation, run as written: the pods
    mount the new key and the retired one's verifier key, and a hub loads them (it
    opens checkpoints the old key signed, and does not refuse the new key)."""
    blocks = sh_blocks(kubernetes_section())
    (made_keys,) = [b for b in blocks if "keys init" in b]
    (rotation,) = [b for b in blocks if "keys rotate-checkpoint" in b]
    first, then = tmp_path / "first", tmp_path / "then"  # each run's kubectl, one work/
    (first / "work").mkdir(parents=True)
    then.mkdir()
    (then / "work").symlink_to(first / "work")
    made_first = _run_with_dry_run_kubectl(made_keys, first)
    keys_dir = first / "work" / "hub-keys" / "keys"
    before = checkpoints.load_signer(keys_dir=keys_dir, origin=ORIGIN, create=False).verifier
    made = _run_with_dry_run_kubectl(rotation, then)

    secrets = {obj["metadata"]["name"]: obj for _, obj in made if obj.get("kind") == "Secret"}
    assert set(secrets) == {"onceonly-hub-keys", "onceonly-hub-checkpoint-retired"}
    assert [command for command, _ in made if "rollout restart" in command]
    retired = secrets["onceonly-hub-checkpoint-retired"]["data"]
    assert len(retired) == 1
    assert next(iter(retired)).endswith(checkpoints.RETIRED_SUFFIX)
    kept = {obj["metadata"]["name"]: obj for _, obj in made_first if obj["kind"] == "Secret"}
    mounted = _mounted_as_the_hub_pod(production, kept | secrets, tmp_path / "mounted")
    signer = checkpoints.load_signer(keys_dir=mounted, origin=ORIGIN, create=False)
    assert signer.verifier.public_key != before.public_key
    assert [key.public_key for key in signer.retired] == [before.public_key]
    HubKeys.load(mounted, create=False)


def test_the_readme_makes_the_key_secrets_from_exactly_the_key_files(
    production: list[Document], tmp_path: Path
) -> None:
    """The README's commands, run on the files `onceonly keys init` makes (and a lock
    file a rotation leaves): the Secrets hold every key the hub loads and no lock file,
    and a hub loads its keys from them as the pods mount them."""
    (block,) = [b for b in sh_blocks(kubernetes_section()) if "keys init" in b]
    work = tmp_path / "work"
    (work / "hub-keys" / "keys").mkdir(parents=True)
    (work / "hub-keys" / "keys" / ".derivation.key.lock").touch()  # a rotation's
    made = _run_with_dry_run_kubectl(block, tmp_path)
    assert (work / "hub-keys" / "keys" / "signing" / ".lock").exists()  # keys init's

    assert made[0][1]["kind"] == "Namespace"
    secrets = {obj["metadata"]["name"]: obj for _, obj in made if obj["kind"] == "Secret"}
    assert set(secrets) == {"onceonly-hub-keys", "onceonly-hub-signing-keys", "onceonly-database"}
    assert {s["metadata"]["namespace"] for s in secrets.values()} == {"onceonly"}
    for secret in secrets.values():
        assert not [name for name in secret["data"] if name.startswith(".")], secret["data"]

    keys_dir = _mounted_as_the_hub_pod(production, secrets, tmp_path / "mounted")
    expected = set(key_file_names(work / "hub-keys" / "keys")) | {"audit-origin"}
    got = {str(p.relative_to(keys_dir)) for p in keys_dir.rglob("*") if p.is_file()}
    assert got == expected
    HubKeys.load(keys_dir, create=False)


def test_the_readme_makes_the_adapter_certificate_and_the_hubs_trust(
    production: list[Document], tmp_path: Path
) -> None:
    (block,) = [b for b in sh_blocks(kubernetes_section()) if "secret tls" in b]
    work = tmp_path / "work"
    work.mkdir()
    authority = trustme.CA()
    issued = authority.issue_cert("onceonly-adapter.onceonly.svc")
    issued.cert_chain_pems[0].write_to_path(work / "adapter.crt")
    issued.private_key_pem.write_to_path(work / "adapter.key")
    authority.cert_pem.write_to_path(work / "ca.pem")
    made = {obj["kind"]: obj for _, obj in _run_with_dry_run_kubectl(block, tmp_path)}

    adapter = one(production, "Deployment", "onceonly-adapter")["spec"]["template"]
    proxy = tls_proxy_conf(production, adapter)
    secret = made["Secret"]
    assert secret["type"] == "kubernetes.io/tls"
    mount = proxy["mounts"][str(Path(proxy["certificates"][0]).parent)]
    assert proxy["volumes"][mount["name"]]["secret"]["secretName"] == secret["metadata"]["name"]
    assert {Path(p).name for p in proxy["certificates"]} == set(secret["data"])

    hub = one(production, "Deployment", "onceonly-hub")["spec"]["template"]
    ca_file = Path(env_value(container(hub, "hub"), "SSL_CERT_FILE")["value"])
    trust = made["ConfigMap"]
    (volume,) = [v for v in hub["spec"]["volumes"] if "configMap" in v and v["name"] == "trust"]
    assert volume["configMap"]["name"] == trust["metadata"]["name"]
    assert set(trust["data"]) == {ca_file.name}
    ssl.create_default_context(cadata=trust["data"][ca_file.name])  # a CA the hub can load
