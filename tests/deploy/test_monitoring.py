"""The monitoring artefacts of deploy/monitoring/ (deploy/TESTED.md, "Monitoring").

promtool (Debian's Prometheus 2.42, tests/deploy/promtool.py) checks the alert rules,
the Prometheus configuration and every expression of the Grafana dashboard, and runs
the alerts' unit tests (tests/deploy/monitoring/alerts.test.yml). A real hub with an
exchange world is scraped to check that every metric the alerts and the dashboard read
is one it exports. The shipped nginx configurations run in front of the real hub and
adapter, and answer 404 for /metrics however the path is spelled.
"""

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml
from prometheus_client.parser import text_string_to_metric_families

from onceonly.adapters import AccessDenied, UpstreamError

from tests.deploy.nginx_testing import (
    SHIPPED,
    Placement,
    nginx_binary,
    nginx_command,
    write_config,
)
from tests.deploy.promtool import promtool
from tests.deploy.test_compose import _free_port, _https, _render_tls_proxy
from tests.hub.exchange_world import ADDRESS, OWNER, PURPOSE, SUBJECT, World, exchange_world
from tests.hub_testing import migrated_sqlite

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
PROMETHEUS = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "onceonly-hub.json"
PROVISIONING = MONITORING / "grafana" / "provisioning"
UNIT_TESTS = Path(__file__).resolve().parent / "monitoring" / "alerts.test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Grafana's variables, as a query would see them with every item and owner selected.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "6h",
    "$item": ".*",
    "$owner": ".*",
}
# What Prometheus makes itself rather than scrapes.
SYNTHETIC = {"up"}


@pytest.fixture(scope="module")
def promtool_path() -> Path:
    return promtool()


def _check(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def _panels() -> list[dict[str, Any]]:
    return [panel for panel in _dashboard()["panels"] if panel["type"] != "row"]


def _dashboard_expressions() -> list[str]:
    """Every query of the dashboard, Grafana's variables replaced as Grafana would."""
    expressions = []
    for panel in _panels():
        for target in panel["targets"]:
            expression = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            assert "$" not in expression, f"{panel['title']}: a variable left in {expression}"
            expressions.append(expression)
    return expressions


# --- PromQL metric names -----------------------------------------------------------

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_CLAUSES = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on"}


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects: what is left once strings, label
    matchers, ranges, grouping clauses and function calls are taken out."""
    for pattern in (_QUOTED, _MATCHERS, _RANGES, _CLAUSES):
        expression = pattern.sub(" ", expression)
    return {name for name in _NAME.findall(expression) if name.lower() not in _KEYWORDS}


def test_metric_names_are_found_in_promql() -> None:
    expression = (
        'histogram_quantile(0.95, sum by (owner, le) (rate(x_bucket{a="rate(y)"}[5m])))'
        " / on (owner) group_left(item) max without (instance) (z) > bool 1e3"
        " and up offset 5m"
    )
    assert metric_names(expression) == {"x_bucket", "z", "up"}


def _exported(text: str) -> set[str]:
    """The sample names a scrape holds, and those its declared families would have
    once they have a child (a labelled metric has no sample before its first use)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


# --- promtool ----------------------------------------------------------------------


def test_promtool_accepts_the_alert_rules(promtool_path: Path) -> None:
    checked = _check(promtool_path, "check", "rules", ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


def test_promtool_accepts_the_prometheus_configuration(promtool_path: Path, tmp_path: Path) -> None:
    """The shipped file with its rule file where this checkout has it. Debian's
    Prometheus is built without Kubernetes service discovery, so the one job that uses
    it is left out here (its relabelling is checked against the pods below)."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    (rule_file,) = config["rule_files"]
    assert Path(rule_file).name == ALERTS.name
    config["rule_files"] = [str(ALERTS)]
    kubernetes = [job for job in config["scrape_configs"] if "kubernetes_sd_configs" in job]
    assert [job["job_name"] for job in kubernetes] == ["onceonly-hub-kubernetes"]
    config["scrape_configs"] = [job for job in config["scrape_configs"] if job not in kubernetes]
    assert {job["job_name"] for job in config["scrape_configs"]} == {
        "onceonly-hub",
        "onceonly-adapter",
    }
    token = tmp_path / "metrics-token"  # the hub's keys/metrics-token, where promtool finds it
    token.write_text("a-token\n")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token)
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))

    checked = _check(promtool_path, "check", "config", copy)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in checked.stdout


def test_the_hub_jobs_send_the_metrics_token_and_the_adapters_none() -> None:
    """A hub answers /metrics only with keys/metrics-token (decision 0063)."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    sent = {job["job_name"]: job.get("authorization") for job in config["scrape_configs"]}
    hub = {"credentials_file": "/etc/prometheus/onceonly/metrics-token"}
    assert sent == {
        "onceonly-hub": hub,
        "onceonly-hub-kubernetes": hub,
        "onceonly-adapter": None,
    }


def test_the_hub_job_scrapes_the_replicas_nginx_balances_across() -> None:
    """Each replica on its own address, the upstream servers of nginx/onceonly.conf."""
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "onceonly-hub"]
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    upstreams = re.findall(r"^\s*server (\S+) ", SHIPPED.read_text(), flags=re.MULTILINE)
    assert targets == upstreams == ["127.0.0.1:8001", "127.0.0.1:8002"]


def test_kubernetes_scrape_job_finds_the_hub_pods_by_their_annotations() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "onceonly-hub-kubernetes"]
    deployment = yaml.safe_load(
        (ROOT / "deploy" / "k8s" / "base" / "hub-deployment.yaml").read_text()
    )
    template = deployment["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    keep = {
        rule["source_labels"][0]: rule["regex"]
        for rule in job["relabel_configs"]
        if rule.get("action") == "keep"
    }
    label = "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    assert keep[label] == template["metadata"]["labels"]["app.kubernetes.io/name"]
    assert (
        keep["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
        == annotations["prometheus.io/scrape"]
    )
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    assert job["relabel_configs"][-1] == {"target_label": "job", "replacement": "onceonly-hub"}


def test_alert_unit_tests_pass(promtool_path: Path) -> None:
    tested = _check(promtool_path, "test", "rules", UNIT_TESTS.name, cwd=UNIT_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@pytest.mark.parametrize(
    ("change", "alert"),
    [
        (
            ('outcome=~"ok|failed"}[5m])) >= 10', 'outcome=~"ok|failed"}[5m])) >= 0'),
            "OnceonlyOwnerDown",
        ),
        (("max by (job) (changes(", "max by (job) (0 * changes("), "OnceonlyCheckpointStale"),
        (("> 0\n        for: 15m", ">= 0\n        for: 15m"), "OnceonlyAccessRequestsOverdue"),
        (
            (
                'onceonly_exchanges_total{job="onceonly-hub", outcome="failed"}',
                'onceonly_exchanges_total{outcome="failed"}',
            ),
            "OnceonlyOwnerDown",
        ),
        (
            (
                'onceonly_event_dead_letters_total{job="onceonly-hub"}',
                "onceonly_event_dead_letters_total",
            ),
            "OnceonlyEventDeadLetters",
        ),
        (('status="500"}', 'status=~"5.."}'), "OnceonlyHubErrors"),
    ],
)
def test_alert_unit_tests_fail_on_a_broken_rule(
    promtool_path: Path, tmp_path: Path, change: tuple[str, str], alert: str
) -> None:
    """The unit tests can fail: each of these changes (a lost traffic guard, a stale
    checkpoint that never fires, an alert on a healthy owner, 503s taken as errors)
    makes promtool report the alert."""
    old, new = change
    rules = ALERTS.read_text()
    assert rules.count(old) == 1, old
    relative = UNIT_TESTS.relative_to(ROOT)
    (tmp_path / relative).parent.mkdir(parents=True)
    shutil.copy(UNIT_TESTS, tmp_path / relative)
    (tmp_path / ALERTS.relative_to(ROOT)).parent.mkdir(parents=True)
    (tmp_path / ALERTS.relative_to(ROOT)).write_text(rules.replace(old, new))

    tested = _check(promtool_path, "test", "rules", relative.name, cwd=(tmp_path / relative).parent)

    assert tested.returncode != 0, tested.stdout
    assert f"alertname: {alert}," in tested.stdout + tested.stderr


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    alerts = {rule["alert"] for rule in _alerts()}
    assert fired == alerts
    assert silent == alerts


def _heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a document's headings."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    anchors = _heading_anchors(OPERATIONS.read_text())
    for rule in _alerts():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        document, anchor = rule["annotations"]["runbook"].split("#")
        assert document == "docs/operations.md"
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, f"docs/operations.md has no section {rule['alert']}"


# --- the Grafana dashboard -------------------------------------------------------------


def test_every_dashboard_expression_parses(promtool_path: Path, tmp_path: Path) -> None:
    """Each query of the dashboard as a recording rule, checked by promtool."""
    expressions = _dashboard_expressions()
    rules = [
        {"record": f"onceonly:dashboard_query_{index}", "expr": expression}
        for index, expression in enumerate(expressions)
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    checked = _check(promtool_path, "check", "rules", path)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout


def test_dashboard_checks_catch_a_broken_query(promtool_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    rule = {"record": "onceonly:broken", "expr": "sum by (item (rate(x[1m]))"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [rule]}]}))
    assert _check(promtool_path, "check", "rules", path).returncode != 0


def test_dashboard_asks_for_its_data_source_and_is_provisioned() -> None:
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all(target["datasource"] == panel["datasource"] for target in panel["targets"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"].lower() for panel in _panels())
    for subject in (
        "reuse",
        "refusals",
        "owner response",
        "hub adds",
        "overdue",
        "dead letters",
        "audit writer",
        "checkpoint",
    ):
        assert subject in titles, subject

    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "onceonly.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus"
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "onceonly.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert provider["options"]["path"] in readme  # where the README copies the dashboard


# --- the metrics exist -------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    database_url = migrated_sqlite(sqlite_template, tmp_path_factory.mktemp("db"))
    with exchange_world(database_url=database_url, tmp_path=tmp_path_factory.mktemp("world")) as w:
        _make_traffic(w)
        yield w


def _make_traffic(world: World) -> None:
    """An exchange served, one refused, and one the owner's adapter cannot answer."""
    with world.client() as client:
        client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
        with pytest.raises(AccessDenied):
            client.fetch(ADDRESS, SUBJECT, purpose="tax-assessment")
        with world.hub.admin() as admin:
            admin.put_department(
                OWNER, name="Civil Registry Office", adapter_url=f"http://127.0.0.1:{_free_port()}"
            )
            try:
                with pytest.raises(UpstreamError):
                    client.fetch(ADDRESS, SUBJECT, purpose=PURPOSE)
            finally:
                admin.put_department(
                    OWNER, name="Civil Registry Office", adapter_url=world.owner_url
                )


def test_every_metric_the_alerts_and_dashboard_read_is_exported(world: World) -> None:
    hub = world.hub.metrics()
    assert hub.status_code == 200
    exported = _exported(hub.text)
    adapter = httpx.get(f"{world.owner_url}/metrics", timeout=10)
    if adapter.status_code == 200:
        exported |= _exported(adapter.text)
    assert "onceonly_http_requests_total" in exported  # the scrape is what it should be

    read = {rule["alert"]: metric_names(rule["expr"]) for rule in _alerts()}
    read |= {f"dashboard: {e}": metric_names(e) for e in _dashboard_expressions()}
    assert all(read.values()), "an expression that reads no metric: the parser missed it"
    missing = {where: names - exported - SYNTHETIC for where, names in read.items()}
    assert {where: names for where, names in missing.items() if names} == {}


def test_the_adapter_serves_metrics_for_its_zones_prometheus(world: World) -> None:
    """The adapter job of prometheus.yml scrapes the adapter's listen address."""
    answer = httpx.get(f"{world.owner_url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert list(text_string_to_metric_families(answer.text))


# --- nginx keeps /metrics in ---------------------------------------------------------------

# The same path spelled as a client might, to get past a rule on the literal /metrics.
METRICS_PATHS = [
    "/metrics",
    "/metrics/",
    "/metrics?format=prometheus",
    "/%6Detrics",
    "//metrics",
    "/v1/../metrics",
    "/./metrics",
]


def _get(port: int, name: str, ca: ssl.SSLContext, path: str) -> bytes:
    request = f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    return _https(port, name, ca, request.encode())


def _listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "nginx does not listen"
            time.sleep(0.1)


def _certificate(directory: Path, name: str) -> tuple[ssl.SSLContext, Path, Path]:
    authority = trustme.CA()
    issued = authority.issue_cert(name)
    chain, key = directory / "tls.crt", directory / "tls.key"
    issued.private_key_and_cert_chain_pem.write_to_path(chain)
    issued.private_key_pem.write_to_path(key)
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context, chain, key


def _assert_kept_in(port: int, name: str, ca: ssl.SSLContext) -> None:
    healthy = _get(port, name, ca, "/healthz")
    assert healthy.startswith(b"HTTP/1.1 200"), healthy  # the proxy does pass requests on
    for path in METRICS_PATHS:
        answer = _get(port, name, ca, path)
        assert answer.startswith(b"HTTP/1.1 404"), (path, answer[:200])
        assert b"<center>nginx" in answer, (path, answer)  # nginx's answer, not the server's
        assert b"onceonly_" not in answer, path


def test_the_shipped_nginx_does_not_serve_the_hubs_metrics(world: World, tmp_path: Path) -> None:
    binary = nginx_binary()
    hub_port = int(world.hub.url.rsplit(":", 1)[1])
    ca, chain, key = _certificate(tmp_path, "127.0.0.1")
    placement = Placement(
        listen_port=_free_port(),
        replica_ports=(hub_port, hub_port),
        certificate=chain,
        private_key=key,
        access_log=tmp_path / "access.log",
    )
    config = write_config(tmp_path, placement)
    with (tmp_path / "nginx.out").open("wb") as output:
        nginx = subprocess.Popen(
            nginx_command(binary, config, "-g", "daemon off;"), stdout=output, stderr=output
        )
    try:
        _listening(placement.listen_port, nginx, tmp_path / "error.log")
        direct = world.hub.metrics()
        assert "onceonly_http_requests_total" in direct.text  # the replica itself serves it
        _assert_kept_in(placement.listen_port, "127.0.0.1", ca)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


def test_the_adapter_tls_proxy_does_not_serve_the_adapters_metrics(
    world: World, tmp_path: Path
) -> None:
    binary = nginx_binary()
    ca, _, _ = _certificate(tmp_path, "civil-registry")
    listen = _free_port()
    adapter_port = int(world.owner_url.rsplit(":", 1)[1])
    config = _render_tls_proxy(tmp_path, listen=listen, adapter=adapter_port)
    with (tmp_path / "nginx.out").open("wb") as output:
        nginx = subprocess.Popen(
            [binary, "-e", "stderr", "-p", str(tmp_path), "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _listening(listen, nginx, tmp_path / "nginx.out")
        _assert_kept_in(listen, "civil-registry", ca)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
