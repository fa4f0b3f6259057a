"""The production topology, run for real without containers (deploy/TESTED.md).

Two hub replicas (``onceonly serve``, production mode) on one fresh PostgreSQL
database, behind the shipped nginx configuration with TLS; two departments'
adapters (``onceonly adapter serve``), each on its own loopback address behind its
own TLS proxy; a consumer's steady stream of exchanges through nginx, every HTTP
request it sends recorded. Under that stream, in order:

1. ``kill -9`` of one replica: no exchange fails that one client retry cannot save;
2. a rolling upgrade: ``onceonly migrate``, then a rolling restart (SIGTERM, wait
   until the process is gone, start it again, wait until it is ready and takes
   requests again, then the other the same way): no request fails. A rolling restart
   without the migrations proved nothing more, and cost a third of the stream's time
   (two replica starts, each ``fail_timeout`` until nginx takes the replica back).

Then every exchange answered 200 has its audit entry (index, leaf hash, request id),
``onceonly audit verify --full`` accepts the whole log against the key that
``onceonly keys init`` printed, and nginx's access log holds no personal code.
"""

import itertools
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest
import trustme
from joserfc.jwk import ECKey

from onceonly.adapters import (
    HubClient,
    OnceonlyError,
    RecordResult,
    RecordStore,
    load_config,
    public_jwks,
)
from onceonly.hub.cli import main
from onceonly.hub.cli.admin_client import AdminClient
from onceonly.hub.cli.demo import ADDRESS, CIVIL, INCOME, PURPOSE, TAX, WELFARE, sample_records

from tests.deploy.nginx_testing import ROOT, Placement, nginx_binary, nginx_command, write_config
from tests.hub_testing import load_item, wait_until
from tests.pg_cluster import new_database

CONSUMER = f"{WELFARE}-adapter"
OWNERS = {CIVIL: ("127.0.0.2", ADDRESS), TAX: ("127.0.0.3", INCOME)}
"""Each owner's adapter: its loopback address and the item it serves."""
AUDIT_ORIGIN = "topology.test/audit"
STARTUP = 60.0  # seconds a process may take to be ready on a loaded machine
PROBE_INTERVAL = 0.1
WORKERS = 2  # consumer threads, each fetching without pause
ANSWERED_PER_PHASE = 20


# --- the consumer's stream ---------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One HTTP request the consumer sent: its phase, and its status or error."""

    phase: str
    method: str
    path: str
    outcome: str

    @property
    def failed(self) -> bool:
        return not self.outcome.startswith("2")


@dataclass(frozen=True)
class Exchange:
    """One record fetched: the 200 it got (None when the retry failed too), and why
    the first try failed (None when it did not)."""

    phase: str
    answer: RecordResult | None
    first_failure: str | None


@dataclass
class Stream:
    """Consumer threads fetching records through nginx until stopped. Each request
    and each exchange is recorded with the phase in which it ended."""

    hub_url: str
    key: ECKey
    tls: ssl.SSLContext
    phase: str = "warm-up"
    began: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def enter(self, phase: str) -> None:
        self.phase, self.began[phase] = phase, time.monotonic()

    def start(self) -> None:
        self.began[self.phase] = time.monotonic()
        self._threads = [threading.Thread(target=self._consume, args=(n,)) for n in range(WORKERS)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self._threads), "a consumer hangs"

    def answered(self, phase: str | None = None) -> int:
        return sum(
            1
            for exchange in list(self.exchanges)
            if exchange.answer is not None and phase in (None, exchange.phase)
        )

    def _consume(self, worker: int) -> None:
        requests = [
            (item, subject) for _, item in OWNERS.values() for subject in sample_records()[item]
        ]
        transport = _Recording(httpx.HTTPTransport(verify=self.tls), self)
        # retries=0: the SDK's own retries would hide the failures counted here.
        with HubClient(
            self.hub_url, client_id=CONSUMER, key=self.key, retries=0, transport=transport
        ) as client:
            for turn in itertools.count(worker):
                if self._stop.is_set():
                    return
                item, subject = requests[turn % len(requests)]
                self.exchanges.append(self._exchange(client, item, subject))

    def _exchange(self, client: HubClient, item: str, subject: str) -> Exchange:
        """Fetch, and once more if that fails; recorded with the phase it ended in."""
        try:
            answer = client.fetch(item, subject, purpose=PURPOSE)
            return Exchange(self.phase, answer, None)
        except OnceonlyError as first:
            try:
                retried = client.fetch(item, subject, purpose=PURPOSE)  # the one client retry
            except OnceonlyError:
                return Exchange(self.phase, None, type(first).__name__)
            return Exchange(self.phase, retried, type(first).__name__)


class _Recording(httpx.BaseTransport):
    """Records every request the consumer sends (the SDK retries a 401 by itself)."""

    def __init__(self, inner: httpx.BaseTransport, stream: Stream) -> None:
        self._inner, self._stream = inner, stream

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as error:
            self._note(request, type(error).__name__)
            raise
        challenge = response.headers.get("www-authenticate", "")
        why = re.search(r'error_description="([^"]*)"', challenge)
        self._note(request, f"{response.status_code}{f' ({why[1]})' if why else ''}")
        return response

    def _note(self, request: httpx.Request, outcome: str) -> None:
        # The phase in which the request ended: one that a kill or a SIGTERM fails
        # ends after the operation began, even if it was sent just before.
        sent = Sent(self._stream.phase, request.method, request.url.path, outcome)
        self._stream.sent.append(sent)

    def close(self) -> None:
        self._inner.close()


# --- processes ----------------------------------------------------------------------


def _free_port(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _onceonly(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "onceonly.hub", *arguments]


def _operator(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str]:
    """An operator's ``onceonly`` command (the console script's ``main``, in this
    process, whose environment holds the replicas' settings): its status and output."""
    status = main(list(arguments))
    out, err = capsys.readouterr()
    return status, out + err


def _probing(condition: Callable[[], bool]) -> Callable[[], bool]:
    """``condition`` for wait_until, asked at most every PROBE_INTERVAL: each time it
    sends a request to a busy machine."""

    def probe() -> bool:
        if condition():
            return True
        time.sleep(PROBE_INTERVAL)
        return False

    return probe


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@dataclass
class Replica:
    """One ``onceonly serve`` on 127.0.0.1:port, run as deploy/systemd runs it."""

    name: str
    port: int
    log: IO[bytes]
    metrics_token: str  # keys/metrics-token, which Prometheus sends (decision 0063)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        serve = _onceonly("serve", "--host", "127.0.0.1", "--port", str(self.port))
        self.process = subprocess.Popen(
            [*serve, "--proxy-headers"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, f"replica {self.name} exited: {self.log.name}"
            try:
                return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(_probing(ready), within=STARTUP, what=f"replica {self.name} to be ready")

    def wait_in_rotation(self) -> None:
        """Until nginx passes it exchanges again (after two failed attempts, nginx
        tries a replica again only once its fail_timeout has passed)."""
        wait_until(
            _probing(lambda: self.answered() >= 3),
            within=STARTUP,
            what=f"nginx to use replica {self.name} again",
        )

    def answered(self) -> int:
        """Record queries this process answered 200: its /metrics, as Prometheus reads them."""
        scraper = {"Authorization": f"Bearer {self.metrics_token}"}
        metrics = httpx.get(f"{self.url}/metrics", headers=scraper, timeout=5).text
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in metrics.splitlines()
            if line.startswith("onceonly_http_requests_total{")
            and "records/query" in line
            and 'status="200"' in line
        )

    def terminate(self) -> int:
        """SIGTERM, then wait until the process is gone; its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STARTUP)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STARTUP)

    def stop(self) -> None:
        _stop(self.process)


@dataclass(frozen=True)
class OwnerAdapter:
    """``onceonly adapter serve`` on its own loopback address, plain HTTP, and the
    department's TLS proxy in front of it on the same address: what the hub calls."""

    department: str
    item: str
    address: str
    port: int
    proxy_port: int

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.proxy_port}"

    def config(self, directory: Path, *, hub_url: str) -> Path:
        path = directory / f"{self.department}.toml"
        path.write_text(
            f'department = "{self.department}"\nhub_url = "{hub_url}"\n'
            f'listen = "{self.address}:{self.port}"\ndata_dir = "{directory / self.department}"\n'
            f'[items."{self.item}"]\nsource = "store"\n'
        )
        return path

    def tls_proxy(self, placement: Placement) -> str:
        """A server block for nginx (the department's own; not in the shipped file)."""
        return (
            "    server {\n"
            f"        listen {self.address}:{self.proxy_port} ssl;\n"
            f"        ssl_certificate {placement.certificate};\n"
            f"        ssl_certificate_key {placement.private_key};\n"
            f"        location / {{ proxy_pass http://{self.address}:{self.port}; }}\n"
            "    }\n"
        )


@dataclass(frozen=True)
class Topology:
    hub_url: str
    replicas: tuple[Replica, Replica]
    owners: tuple[OwnerAdapter, ...]
    tls: ssl.SSLContext
    admin_token: str
    verifier_key: str
    directory: Path

    def admin(self) -> AdminClient:
        return AdminClient(self.hub_url, self.admin_token)  # trusts $SSL_CERT_FILE

    @property
    def access_log(self) -> Path:
        return self.directory / "onceonly.access.log"


@pytest.fixture
def topology_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped after it."""
    with new_database("onceonly_topology") as url:
        yield url


def _certificates(directory: Path, addresses: list[str]) -> ssl.SSLContext:
    """A trustme CA and one server certificate for ``addresses``; a context trusting it."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(directory / "ca.pem")
    certificate = ca.issue_cert(*addresses)
    certificate.private_key_and_cert_chain_pem.write_to_path(directory / "fullchain.pem")
    certificate.private_key_pem.write_to_path(directory / "privkey.pem")
    return ssl.create_default_context(cafile=directory / "ca.pem")


def _configure(
    monkeypatch: pytest.MonkeyPatch, directory: Path, *, hub_url: str, database_url: str
) -> None:
    """What /etc/onceonly/hub.env holds, and whom the hub and adapters trust: set in
    this process's environment, which every process started here inherits."""
    for name in [name for name in os.environ if name.startswith("ONCEONLY_")]:
        monkeypatch.delenv(name)
    settings = {
        "ONCEONLY_MODE": "production",
        "ONCEONLY_ADAPTERS_ON_LOOPBACK": "true",  # the owners' adapters are on 127.0.0.2-3
        "ONCEONLY_ISSUER": hub_url,
        "ONCEONLY_DATABASE_URL": database_url,
        "ONCEONLY_AUDIT_ORIGIN": AUDIT_ORIGIN,
        "ONCEONLY_DATA_DIR": str(directory / "hub"),
        "ONCEONLY_LOG_LEVEL": "WARNING",
        "SSL_CERT_FILE": str(directory / "ca.pem"),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def topology(
    topology_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Topology]:
    binary = nginx_binary()
    owners = tuple(
        OwnerAdapter(department, item, address, _free_port(address), _free_port(address))
        for department, (address, item) in OWNERS.items()
    )
    tls = _certificates(tmp_path, ["127.0.0.1", *(owner.address for owner in owners)])
    placement = Placement(
        listen_port=_free_port(),
        replica_ports=(_free_port(), _free_port()),
        certificate=tmp_path / "fullchain.pem",
        private_key=tmp_path / "privkey.pem",
        access_log=tmp_path / "onceonly.access.log",
    )
    hub_url = f"https://127.0.0.1:{placement.listen_port}"
    _configure(monkeypatch, tmp_path, hub_url=hub_url, database_url=topology_database)
    status, output = _operator(capsys, "migrate")
    assert status == 0, output
    status, output = _operator(capsys, "keys", "init")
    assert status == 0, output
    verifier_key = output.rsplit("verifier key for auditors: ", 1)[1].strip()

    with ExitStack() as stack:
        logs = {
            name: stack.enter_context((tmp_path / f"{name}.log").open("ab"))
            for name in ("replica-a", "replica-b", *OWNERS, "nginx")
        }
        scraper = (tmp_path / "hub" / "keys" / "metrics-token").read_text().strip()
        replicas = (
            Replica("a", placement.replica_ports[0], logs["replica-a"], scraper),
            Replica("b", placement.replica_ports[1], logs["replica-b"], scraper),
        )
        for replica in replicas:
            replica.start()
            stack.callback(replica.stop)
        adapters: list[subprocess.Popen[bytes]] = []
        for owner in owners:
            adapter = _start_adapter(owner, tmp_path, hub_url=hub_url, log=logs[owner.department])
            adapters.append(adapter)
            stack.callback(_stop, adapter)
        servers = "".join(owner.tls_proxy(placement) for owner in owners)
        config = write_config(tmp_path, placement, servers=servers)
        nginx = subprocess.Popen(
            nginx_command(binary, config, "-g", "daemon off;"),
            stdout=subprocess.DEVNULL,
            stderr=logs["nginx"],
        )
        stack.callback(_stop, nginx)

        def terminate_all() -> None:
            """SIGTERM to every process at once, first: their graceful shutdowns overlap
            instead of following one another (the _stop callbacks then only wait)."""
            for process in (nginx, *adapters, *(replica.process for replica in replicas)):
                if process is not None and process.poll() is None:
                    process.terminate()

        stack.callback(terminate_all)
        for replica in replicas:
            replica.wait_ready()
        for owner in owners:
            _wait_answers(f"{owner.url}/healthz", tls=tls, what=f"{owner.department}'s adapter")
        _wait_answers(f"{hub_url}/readyz", tls=tls, what="the hub through nginx")
        yield Topology(
            hub_url=hub_url,
            replicas=replicas,
            owners=owners,
            tls=tls,
            admin_token=(tmp_path / "hub" / "keys" / "admin-token").read_text().strip(),
            verifier_key=verifier_key,
            directory=tmp_path,
        )


def _start_adapter(
    owner: OwnerAdapter, directory: Path, *, hub_url: str, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    """The adapter, its store loaded with the catalogue's example records."""
    config = owner.config(directory, hub_url=hub_url)
    with RecordStore(load_config(config).store_path) as store:
        for subject, record in sample_records()[owner.item].items():
            store.put(owner.item, subject, record, announce=False)
    return subprocess.Popen(
        _onceonly("adapter", "serve", "--config", str(config)),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )


def _wait_answers(url: str, *, tls: ssl.SSLContext, what: str) -> None:
    def answers() -> bool:
        try:
            return httpx.get(url, verify=tls, timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(_probing(answers), within=STARTUP, what=what)


# --- the operations and the checks ------------------------------------------------------


def _set_up_world(topology: Topology, key: ECKey) -> None:
    """The owners with their adapters and items, the consumer's client and its grants
    (the starter catalogue's documents, only the two items the stream asks for)."""
    with topology.admin() as admin:
        admin.put_department(WELFARE, name=WELFARE)
        admin.put_client(CONSUMER, department=WELFARE, jwks=public_jwks(key))
        for owner in topology.owners:
            admin.put_department(owner.department, name=owner.department, adapter_url=owner.url)
            admin.put_item(load_item(owner.item))
            admin.create_grant(
                consumer=WELFARE, item=owner.item, purpose=PURPOSE, legal_basis="topology test"
            )


def _more_answered(stream: Stream, count: int) -> Callable[[], bool]:
    mark = stream.answered()
    return lambda: stream.answered() >= mark + count


def _kill_one(topology: Topology, stream: Stream) -> None:
    stream.enter("kill -9")
    victim = topology.replicas[0]
    victim.kill()
    wait_until(
        _more_answered(stream, ANSWERED_PER_PHASE),
        within=STARTUP,
        what="exchanges through the surviving replica",
    )
    victim.start()
    victim.wait_ready()
    victim.wait_in_rotation()


def _roll(topology: Topology, stream: Stream, *, phase: str, migrate: Callable[[], None]) -> None:
    """For each replica: the new version's migrations, while the old one still serves;
    SIGTERM, wait until it is gone, start it, wait until it is ready and nginx passes it
    requests again."""
    stream.enter(phase)
    for replica in topology.replicas:
        migrate()
        began = time.monotonic()
        # uvicorn drains, stops the application, then ends by the signal it caught.
        status = replica.terminate()
        assert status in (0, -signal.SIGTERM), f"replica {replica.name} exited {status}"
        gone = time.monotonic()
        replica.start()
        replica.wait_ready()
        ready = time.monotonic()
        replica.wait_in_rotation()
        stream.notes.append(
            f"{phase}, replica {replica.name}: gone in {gone - began:.1f} s, ready in"
            f" {ready - gone:.1f} s, in rotation {time.monotonic() - ready:.1f} s later"
        )


def _summary(stream: Stream) -> str:
    """Per phase: seconds, exchanges, first tries that failed and why, failed requests."""
    lines = []
    ends = [*list(stream.began.values())[1:], time.monotonic()]
    for (phase, began), ended in zip(stream.began.items(), ends, strict=True):
        exchanges = [exchange for exchange in stream.exchanges if exchange.phase == phase]
        retried = Counter(e.first_failure for e in exchanges if e.first_failure is not None)
        failed = Counter(
            f"{sent.method} {sent.path} {sent.outcome}"
            for sent in stream.sent
            if sent.phase == phase and sent.failed
        )
        lines.append(
            f"{phase} ({ended - began:.1f} s): {len(exchanges)} exchanges,"
            f" {stream.answered(phase)} answered; first tries failed: {dict(retried) or 0};"
            f" requests failed: {dict(failed) or 0}"
        )
    return "\n".join([*lines, *stream.notes])


def _stored_queries(topology: Topology) -> dict[int, tuple[str, str]]:
    """Audit index -> (leaf hash, request id) of every record query in the log."""
    stored: dict[int, tuple[str, str]] = {}
    with topology.admin() as admin:
        cursor = None
        while True:
            page = admin.audit_entries(action="record.query", limit=1000, cursor=cursor)
            for row in page["entries"]:
                stored[row["index"]] = (row["leaf_hash"], row["entry"].get("request_id", ""))
            cursor = page["next_cursor"]
            if cursor is None:
                return stored


def test_replicas_behind_nginx_lose_no_exchange_to_a_kill_or_a_rolling_upgrade(
    topology: Topology, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def migrate() -> None:
        status, output = _operator(capsys, "migrate")
        assert status == 0, output

    key = ECKey.generate_key("P-256", auto_kid=True)
    _set_up_world(topology, key)
    stream = Stream(topology.hub_url, key, topology.tls)
    stream.start()
    try:
        wait_until(
            _probing(lambda: all(replica.answered() >= 3 for replica in topology.replicas)),
            within=STARTUP,
            what="both replicas to answer exchanges",
        )
        _kill_one(topology, stream)
        _roll(topology, stream, phase="rolling upgrade", migrate=migrate)
        stream.enter("after")
        wait_until(_more_answered(stream, 3), within=STARTUP, what="exchanges after the upgrade")
    finally:
        stream.stop()
    summary = _summary(stream)

    # (1) kill -9: one client retry saves every exchange.
    assert all(exchange.answer is not None for exchange in stream.exchanges), summary
    assert stream.answered("kill -9") >= ANSWERED_PER_PHASE, summary
    # (2): not one request fails, not even one that the SDK retried by itself.
    assert not [s for s in stream.sent if s.phase == "rolling upgrade" and s.failed], summary
    assert stream.answered("rolling upgrade") >= ANSWERED_PER_PHASE, summary

    # Nothing acknowledged is lost: every 200 has its audit entry.
    stored = _stored_queries(topology)
    for exchange in stream.exchanges:
        assert exchange.answer is not None
        receipt = exchange.answer.receipt
        assert stored.get(receipt.index) == (receipt.leaf_hash, exchange.answer.request_id), (
            f"the audit entry {receipt.index} of an answered exchange is missing or differs"
        )
    # ... and the whole log verifies against the key that `keys init` printed.
    monkeypatch.setenv("ONCEONLY_TOKEN", topology.admin_token)  # break-glass reads as auditor
    state = str(topology.directory / "auditor.json")
    verify = ("audit", "verify", "--hub", topology.hub_url, "--key", topology.verifier_key)
    status, output = _operator(capsys, *verify, "--full", "--state", state)
    assert status == 0, output

    # An auditor's search by person puts the personal code in the query string: nginx's
    # log keeps the path only.
    subjects = [subject for _, item in OWNERS.values() for subject in sample_records()[item]]
    with topology.admin() as admin:
        assert admin.audit_entries(subject=subjects[0])["entries"]
    logged = topology.access_log.read_text()
    assert '"GET /v1/audit/entries HTTP/1.1" 200' in logged
    assert not [subject for subject in subjects if subject in logged], "a personal code is logged"
    print(summary)  # pytest -rP shows it
