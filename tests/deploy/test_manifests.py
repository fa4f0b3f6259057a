"""deploy/k8s: both kustomizations render, every document is valid Kubernetes, and
they have the properties issue 15 asks for.

Rendered with ``kubectl kustomize`` (skipped only where kubectl is missing), validated
offline by kubernetes-validate against the schemas of one fixed Kubernetes version,
strictly (unknown fields are errors). The commands run through the real ``onceonly``
parser, the settings through the hub's own production validation, and the adapter's
configuration through the adapter's own loader. No cluster runs here: whether the pods
start is not checked (deploy/README.md, "What was tested how").
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from onceonly.adapters import load_config
from onceonly.hub.cli import build_parser
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys

from tests.deploy.dockerfile import ROOT, stages

KUBERNETES_VERSION = "1.32.0"  # the kubectl installed here; the schemas are offline
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
PLACEHOLDER = "REPLACE"

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
    assert migrate["env"] == hub["env"]  # the same database


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
    assert {5432, 9100, 53} <= ports <= {5432, 9100, 53, 443}
    adapter = one(documents, "Deployment", "onceonly-adapter")["spec"]["template"]
    to_adapters = [peer for port, peer in destinations if port == 9100]
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
    assert config.listen_port == adapter["ports"][0]["containerPort"]
    data = mounts[str(config.data_dir)]
    assert not data.get("readOnly")
    claim = volumes[data["name"]]["persistentVolumeClaim"]["claimName"]
    assert one(documents, "PersistentVolumeClaim", claim)
    assert adapter["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_services_and_ingress_point_at_what_exists(overlay: tuple[str, list[Document]]) -> None:
    _, documents = overlay
    templates = pod_templates(documents)
    for service in (d for d in documents if d["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        targets = [t for t in templates.values() if selector <= t["metadata"]["labels"].items()]
        assert targets, f"service {service['metadata']['name']} selects no pod"
        names = {p["name"] for t in targets for c in t["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    ingress = one(documents, "Ingress", "onceonly-hub")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert one(documents, "Service", backend["name"])


def test_base_declares_the_secrets_as_placeholders_that_cannot_start_a_hub() -> None:
    secrets = [d for d in render(KUSTOMIZATIONS["base"]) if d["kind"] == "Secret"]
    assert {s["metadata"]["name"] for s in secrets} == {
        "onceonly-hub-keys",
        "onceonly-hub-signing-keys",
        "onceonly-database",
    }
    for secret in secrets:
        assert all(value.startswith(PLACEHOLDER) for value in secret["stringData"].values())


def test_production_pins_the_image_and_never_ships_a_placeholder(
    production: list[Document],
) -> None:
    assert [d for d in production if d["kind"] == "Secret"] == []
    assert PLACEHOLDER not in yaml.safe_dump_all(production)
    assert all(d["metadata"].get("namespace") == "onceonly" for d in production)
    for name, template in pod_templates(production).items():
        for spec in template["spec"]["containers"]:
            repository, _, tag = spec["image"].rpartition(":")
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
