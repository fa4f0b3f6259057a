"""``onceonly demo``: the whole story on loopback, narrated, checked at every step.

A hub and three departments (civil registry, tax, social welfare) run as real HTTP
services in this process. The story: the catalogue is registered, people get their
accounts and sign in, departments connect, owners publish their records once, social
welfare's steward asks for what the law allows and the owners' stewards approve it
(the civil registry with fewer fields than asked), social welfare fetches, is
refused what it has no grant for, follows a citizen's move, loses its access when
the civil registry revokes it, and an auditor reads the citizen's trail and checks
a receipt against the log.

The demo's own hub is configured by the demo alone (:class:`DemoSettings`): the
operator's ``ONCEONLY_*`` variables, meant for a real hub, are not read; only
``onceonly demo --hub URL``, which plays against a running hub, takes its break-glass
token from ``ONCEONLY_ADMIN_TOKEN``.
"""

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx
from joserfc.jwk import ECKey
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from onceonly.adapters import (
    AccessDenied,
    AdapterConfig,
    DeliveredEvent,
    HubClient,
    RecordStore,
    StoreItem,
    create_provider_app,
    load_or_create_key,
    public_jwks,
)
from onceonly.hub.app import create_app
from onceonly.hub.audit import leaves
from onceonly.hub.cli.admin_client import AdminClient, AdminError
from onceonly.hub.cli.common import catalogue_dir
from onceonly.hub.cli.servers import loopback_socket, serve_in_thread, url_of
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit import base64url, logs
from onceonly.hub.people import credentials

CIVIL, TAX, WELFARE = "civil-registry", "tax", "social-welfare"
IDENTITY, ADDRESS, INCOME = (
    "person.identity",
    "person.residential-address",
    "tax.annual-income-statement",
)
PURPOSE = "benefit-eligibility"
DEMO_HUB_URL_FILE = "url"  # in the demo hub's data directory: the URL it serves at
DEPARTMENT_ITEMS = {CIVIL: [IDENTITY, ADDRESS], TAX: [INCOME], WELFARE: []}
# Social welfare names the address fields it needs (personal fields are granted only
# when named); the civil registry approves them without the date of registration.
ADDRESS_ASKED = ["city", "country", "municipality", "postal_code", "registered_since", "street"]
ADDRESS_APPROVED = ["city", "country", "municipality", "postal_code", "street"]
INCOME_ASKED = ["status", "total_income_cents", "year"]
# username -> (display name, role, department)
PEOPLE = {
    "ada": ("Ada Administrator", "administrator", None),
    "cecilia": ("Cecilia, civil registry data steward", "steward", CIVIL),
    "tiina": ("Tiina, tax board data steward", "steward", TAX),
    "walter": ("Walter, social welfare data steward", "steward", WELFARE),
    "aurora": ("Aurora, auditor", "auditor", None),
}


@dataclass
class Department:
    id: str
    url: str
    key: ECKey
    store_path: Path
    events: list[DeliveredEvent] = field(default_factory=list)  # delivered by the hub

    @property
    def client_id(self) -> str:
        return f"{self.id}-adapter"


@dataclass
class Story:
    """Prints each step and remembers whether every one of them succeeded."""

    out: TextIO
    failures: list[str] = field(default_factory=list)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.out.write(f"\n==> {title}\n")
        try:
            yield
        except Exception as error:  # the demo reports every failure and goes on
            self.failures.append(title)
            self.out.write(f"    FAILED: {type(error).__name__}: {error}\n")

    def say(self, text: str) -> None:
        self.out.write(f"    {text}\n")

    def needs_what_came_before(self) -> None:
        """Stop the story when a step failed whose result the next steps use."""
        if self.failures:
            raise StoryStopped(self.failures[-1])


class StoryStopped(Exception):
    """A step failed that later steps depend on; the demo ends there."""


def _examples(item_id: str) -> list[dict[str, Any]]:
    document = json.loads((catalogue_dir() / "items" / f"{item_id}.json").read_text())
    return list(document["examples"])


def sample_records() -> dict[str, dict[str, dict[str, Any]]]:
    """item -> subject -> record, from the catalogue's own examples."""
    people = _examples(IDENTITY)
    addresses = _examples(ADDRESS)
    return {
        IDENTITY: {p["personal_code"]: p for p in people},
        ADDRESS: {p["personal_code"]: a for p, a in zip(people, addresses, strict=False)},
        INCOME: {s["personal_code"]: s for s in _examples(INCOME)},
    }


def start_department(stack: ExitStack, *, department: str, hub_url: str, root: Path) -> Department:
    config = AdapterConfig(
        department=department,
        hub_url=hub_url,
        data_dir=root / department,
        client_id=f"{department}-adapter",  # so that its store's changes are announced
        items={item: StoreItem() for item in DEPARTMENT_ITEMS[department]},
    )
    key = load_or_create_key(config.key_path)
    events: list[DeliveredEvent] = []
    app = create_provider_app(config, on_event=events.append)
    url = stack.enter_context(serve_in_thread(app))
    return Department(id=department, url=url, key=key, store_path=config.store_path, events=events)


def play(
    story: Story, *, hub_url: str, admin_token: str, departments: dict[str, Department]
) -> None:
    with AdminClient(hub_url, admin_token) as break_glass:
        _register(story, break_glass)
        signed_in = _people(story, break_glass, hub_url)
    story.needs_what_came_before()
    with ExitStack() as stack:
        people = {
            name: stack.enter_context(AdminClient(hub_url, token))
            for name, token in signed_in.items()
        }
        _connect(story, people["ada"], departments)
        _publish(story, departments)
        grant = _request_access(story, people)
        subject, receipt = _fetch(story, hub_url, departments[WELFARE])
        story.needs_what_came_before()
        _refuse(story, hub_url, departments)
        _move(story, hub_url, departments, subject=subject)
        _reuse(story, hub_url, departments[WELFARE])
        _revoke(
            story, hub_url, people["cecilia"], departments[WELFARE], grant=grant, subject=subject
        )
        _audit(story, people["aurora"], hub_url, subject=subject, receipt=receipt)
        _report(story, people["aurora"])


def _register(story: Story, admin: AdminClient) -> None:
    with story.step("Setting up: the operator loads the catalogue with the break-glass token"):
        items = admin.import_catalogue(catalogue_dir())
        story.say(f"{len(items)} data items registered, among them {IDENTITY}, {ADDRESS}, {INCOME}")


def _people(story: Story, break_glass: AdminClient, hub_url: str) -> dict[str, str]:
    """Accounts: the first administrator by break-glass, the others by that administrator;
    each person signs in (argon2id password) and acts with their own short-lived token."""
    tokens: dict[str, str] = {}
    with story.step("People get accounts and sign in: roles kept apart"):
        for username, (name, role, department) in PEOPLE.items():
            password = secrets.token_urlsafe(18)  # a one-off demo password, never shown
            roles = [{"role": role, "department": department}] if department else [{"role": role}]
            body = {"display_name": name, "password": password, "roles": roles}
            if username == "ada":
                break_glass.call("PUT", f"/v1/admin/people/{username}", body)
            else:
                with AdminClient(hub_url, tokens["ada"]) as ada:
                    ada.call("PUT", f"/v1/admin/people/{username}", body)
            with AdminClient(hub_url, "") as anonymous:
                session = anonymous.call(
                    "POST", "/v1/people/sign-in", {"username": username, "password": password}
                )
            tokens[username] = session["token"]
            what = f"{role} of {department}" if department else role
            made_by = "the break-glass token" if username == "ada" else "ada"
            story.say(f"{username:8} {what:26} account made by {made_by}; signed in")
    return tokens


def _connect(story: Story, admin: AdminClient, departments: dict[str, Department]) -> None:
    with story.step("The administrator connects the departments' adapters and client keys"):
        names = {
            CIVIL: "Civil Registry Office",
            TAX: "Tax and Customs Board",
            WELFARE: "Social Welfare Board",
        }
        for department in departments.values():
            admin.put_department(
                department.id, name=names[department.id], adapter_url=department.url
            )
            admin.put_client(
                department.client_id, department=department.id, jwks=public_jwks(department.key)
            )
            story.say(f"{department.id:15} adapter {department.url}  client {department.client_id}")


def _publish(story: Story, departments: dict[str, Department]) -> None:
    with story.step("Owners publish their records once, into their own adapters"):
        owners = {IDENTITY: CIVIL, ADDRESS: CIVIL, INCOME: TAX}
        for item, records in sample_records().items():
            with RecordStore(departments[owners[item]].store_path) as store:
                for subject, record in records.items():
                    store.put(item, subject, record, announce=False)  # the initial load
            story.say(f"{owners[item]:15} {item}: {len(records)} records, kept in the owner's zone")


def _request_access(story: Story, people: dict[str, AdminClient]) -> str:
    """Social welfare asks; the owners' stewards answer. The address grant's id."""
    walter, cecilia, tiina = people["walter"], people["cecilia"], people["tiina"]
    asks = {
        ADDRESS: ("Social Welfare Act §37(2)", ADDRESS_ASKED),
        INCOME: ("Social Welfare Act §37(4)", INCOME_ASKED),
    }
    with story.step(f"Social welfare's steward asks for access, for one purpose: '{PURPOSE}'"):
        requested = {}
        for item, (law, fields) in asks.items():
            body = {
                "consumer": WELFARE,
                "item": item,
                "purpose": PURPOSE,
                "purpose_text": "Deciding subsistence benefit applications",
                "legal_basis": law,
                "fields": fields,
                "valid_until": _years_from_now(2),
            }
            request = walter.call("POST", "/v1/access-requests", body)
            requested[item] = request["id"]
            story.say(
                f"walter asks for {item} ({', '.join(fields)});"
                f" {request['owner']} must answer by {request['answer_due'][:10]}"
            )
    with story.step("The owners' stewards answer: the civil registry approves fewer fields"):
        inbox = cecilia.call("GET", "/v1/access-requests", box="inbox", status="pending")
        waiting = [r for r in inbox["requests"] if r["id"] == requested[ADDRESS]]
        if not waiting:
            raise AssertionError("the request is not in the civil registry's inbox")
        story.say(
            f"cecilia's inbox: {ADDRESS} from {WELFARE}, personal fields:"
            f" {', '.join(waiting[0]['personal_fields'])}"
        )
        approved = cecilia.call(
            "POST",
            f"/v1/access-requests/{requested[ADDRESS]}/approve",
            {
                "fields": ADDRESS_APPROVED,
                "valid_until": _years_from_now(1),
                "reason": "the date of registration is not needed to decide a benefit",
            },
        )
        story.say(f"cecilia approves {ADDRESS} without registered_since, for one year (not two)")
        tiina.call("POST", f"/v1/access-requests/{requested[INCOME]}/approve", {})
        story.say(f"tiina approves {INCOME} as asked: {', '.join(INCOME_ASKED)}")
        try:
            walter.call("POST", f"/v1/access-requests/{requested[ADDRESS]}/approve", {})
        except AdminError as refused:
            reason = str(refused.problem.get("type", "")).rsplit(":", 1)[-1]
            story.say(f"walter cannot approve his own department's request: {reason}")
        else:
            raise AssertionError("a steward approved a request for another department's item")
    story.needs_what_came_before()
    return str(approved["grant_id"])


def _years_from_now(years: int) -> str:
    return (datetime.now(UTC) + timedelta(days=365 * years)).isoformat()


def _client(hub_url: str, department: Department) -> HubClient:
    return HubClient(hub_url, client_id=department.client_id, key=department.key, retries=1)


def _fetch(story: Story, hub_url: str, welfare: Department) -> tuple[str, dict[str, Any]]:
    subject = next(iter(sample_records()[ADDRESS]))
    receipt: dict[str, Any] = {}
    with (
        story.step(f"Social welfare asks for a citizen's address (subject {subject[:3]}…)"),
        _client(hub_url, welfare) as client,
    ):
        address = client.fetch(ADDRESS, subject, purpose=PURPOSE)
        if sorted(address.record) != ADDRESS_APPROVED:
            raise AssertionError(
                f"fields outside the grant were delivered: {sorted(address.record)}"
            )
        story.say(f"record:  {json.dumps(address.record, ensure_ascii=False)}")
        story.say(
            f"receipt: audit entry #{address.receipt.index}, leaf hash {address.receipt.leaf_hash}"
        )
        receipt = {
            "index": address.receipt.index,
            "leaf_hash": address.receipt.leaf_hash,
            "commitment_key": address.receipt.commitment_key,
            "record": address.record,
        }
        income = client.fetch(INCOME, subject, purpose=PURPOSE)
        if sorted(income.record) != INCOME_ASKED:
            raise AssertionError(
                f"fields outside the grant were delivered: {sorted(income.record)}"
            )
        story.say(f"income, minimized to the grant: {json.dumps(income.record)}")
    return subject, receipt


def _refuse(story: Story, hub_url: str, departments: dict[str, Department]) -> None:
    subject = next(iter(sample_records()[IDENTITY]))
    attempts = [
        (
            departments[WELFARE],
            IDENTITY,
            PURPOSE,
            "social welfare asks for identity data it holds no grant for",
        ),
        (
            departments[TAX],
            ADDRESS,
            "marketing",
            "tax asks for an address for a purpose nobody granted",
        ),
    ]
    with story.step("Refusals: no grant, no data (and the refusal is audited)"):
        for department, item, purpose, what in attempts:
            with _client(hub_url, department) as client:
                try:
                    client.fetch(item, subject, purpose=purpose)
                except AccessDenied as refused:
                    story.say(f"{what}: refused ({refused.problem_type})")
                else:
                    raise AssertionError(f"{what}: the hub answered with data")


NEW_ADDRESS = {
    "street": "Vabaduse 5-12",
    "city": "Valmera",
    "postal_code": "10146",
    "country": "ND",
    "municipality": "Valmera city",
    "registered_since": "2026-11-27",
}


def _move(story: Story, hub_url: str, departments: dict[str, Department], *, subject: str) -> None:
    welfare, civil = departments[WELFARE], departments[CIVIL]
    with story.step("The citizen moves: the civil registry's change reaches social welfare"):
        with _client(hub_url, welfare) as client:
            client.subscribe(ADDRESS)
            story.say(f"{WELFARE} subscribes to changes of {ADDRESS} (it holds a grant)")
            seen = len(welfare.events)
            with RecordStore(civil.store_path) as store:
                store.put(ADDRESS, subject, NEW_ADDRESS)
            story.say(f"{CIVIL} records the new address once, in its own store")
            deadline = time.monotonic() + 20
            while len(welfare.events) == seen:
                if time.monotonic() > deadline:
                    raise AssertionError("the change event did not arrive within 20 s")
                time.sleep(0.05)
            event = welfare.events[-1]
            story.say(f"{WELFARE}'s adapter got a signed event: {event.item} {event.kind}")
            fresh = client.fetch(event.item, event.subject, purpose=PURPOSE)
            if fresh.record != {k: v for k, v in NEW_ADDRESS.items() if k in ADDRESS_APPROVED}:
                raise AssertionError("the fetched record is not the new address")
            story.say(f"and fetches it again under its grant: {fresh.record['street']}, ...")


def _reuse(story: Story, hub_url: str, welfare: Department) -> None:
    """More of an ordinary week: the same facts read again as cases move on."""
    subjects = list(sample_records()[ADDRESS])
    asked = [subjects[i % len(subjects)] for i in (0, 1, 2, 0, 1, 0)]
    with (
        story.step("A week of casework: social welfare checks applicants' addresses again"),
        _client(hub_url, welfare) as client,
    ):
        for subject in asked:
            client.fetch(ADDRESS, subject, purpose=PURPOSE)
        earners = list(sample_records()[INCOME])
        for subject in earners * 3:
            client.fetch(INCOME, subject, purpose=PURPOSE)
        story.say(
            f"{len(asked)} more fetches of {len(set(asked))} citizens' addresses and"
            f" {3 * len(earners)} of {len(earners)} income statements: none of these people"
            " was asked to bring a certificate"
        )


def _report(story: Story, auditor: AdminClient) -> None:
    with story.step("The auditor reads this month's once-only efficiency report"):
        report = auditor.call("GET", "/v1/reports/efficiency")

        def shown(row: dict[str, Any], name: str) -> str:
            value = row.get(name)
            return "withheld" if name in row["suppressed"] else "-" if value is None else str(value)

        total = report["total"]
        story.say(
            f"{report['period']}: exchanges {shown(total, 'exchanges')},"
            f" refused {shown(total, 'refused')}, failed {shown(total, 'failed')};"
            f" citizen minutes saved, about {shown(total, 'minutes_saved')}"
            f" (log entries 0-{report['log_entries'] - 1})"
        )
        for row in report["items"]:
            if row["exchanges"] == 0 and not row["suppressed"]:
                continue
            story.say(
                f"{row['item']:28} exchanges {shown(row, 'exchanges'):>8}"
                f"  records {shown(row, 'records'):>8}"
                f"  per record {shown(row, 'exchanges_per_record'):>8}"
                f"  owner median {shown(row, 'owner_p50_ms'):>8} ms"
            )
        story.say(
            f"counts below {report['threshold']}, and what would give them away, are"
            " withheld: no figure singles out a person"
        )
        address = next(row for row in report["items"] if row["item"] == ADDRESS)
        if not isinstance(address["exchanges"], int) or address["exchanges"] < 5:
            raise AssertionError(f"the report does not count the demo's exchanges: {address}")


def _revoke(
    story: Story,
    hub_url: str,
    cecilia: AdminClient,
    welfare: Department,
    *,
    grant: str,
    subject: str,
) -> None:
    with story.step("The civil registry revokes the grant: the very next request is refused"):
        with _client(hub_url, welfare) as client:
            client.fetch(ADDRESS, subject, purpose=PURPOSE)  # the token is fetched and cached
            cecilia.call(
                "POST", f"/v1/grants/{grant}/revoke", {"reason": "the benefit scheme ended"}
            )
            story.say(f"cecilia revokes grant {grant[:8]}… ({ADDRESS} for {WELFARE})")
            try:
                client.fetch(ADDRESS, subject, purpose=PURPOSE)
            except AccessDenied as refused:
                story.say(
                    f"social welfare asks again, same token: refused ({refused.problem_type})"
                )
            else:
                raise AssertionError("the hub answered under a revoked grant")


def _audit(
    story: Story, auditor: AdminClient, hub_url: str, *, subject: str, receipt: dict[str, Any]
) -> None:
    with story.step("The auditor reads the citizen's trail: who asked, what, why, and the outcome"):
        entries = auditor.audit_entries(subject=subject)["entries"]
        for row in entries:
            entry = row["entry"]
            story.say(
                f"#{row['index']:<3} {entry['time']}  {entry.get('department', '-'):15} "
                f"{entry['action']:13} {entry.get('item', '-'):28} {entry.get('purpose', '-'):20} "
                f"{entry['outcome']}{' (' + entry['reason'] + ')' if 'reason' in entry else ''}"
            )
        if not any(e["entry"]["outcome"] == "refused" for e in entries):
            raise AssertionError("the refused fetch is missing from the trail")
    with story.step("Anyone sees the log's shape, not its content: a leaf hash, no entry"):
        public = httpx.get(f"{hub_url}/v1/audit/entries/{receipt['index']}").json()
        if set(public) != {"index", "leaf_hash"}:
            raise AssertionError(f"the public sees entry content: {sorted(public)}")
        story.say(f"GET /v1/audit/entries/{receipt['index']} without a sign-in: {public}")
    with story.step("The receipt matches the log: SHA-256(0x00 ‖ leaf) recomputed here"):
        seen = auditor.call("GET", f"/v1/audit/entries/{receipt['index']}")
        leaf = base64.b64decode(seen["leaf"])
        recomputed = base64.b64encode(hashlib.sha256(b"\x00" + leaf).digest()).decode()
        if recomputed != receipt["leaf_hash"]:
            raise AssertionError("the leaf hash does not match the receipt")
        story.say(f"entry #{receipt['index']} leaf hash {recomputed} = receipt")
        key = base64url.decode(receipt["commitment_key"])
        if seen["entry"]["commitment"] != leaves.commitment(key, receipt["record"]):
            raise AssertionError("the entry's commitment does not open on the delivered record")
        story.say(
            "the entry commits to the delivered record; only social welfare's key opens it"
            f" ({seen['entry']['commitment'][:24]}…)"
        )


def _admin_token(hub_url: str, root: Path, *, own_hub: bool) -> str:
    """The break-glass token: the demo's own hub's; for a running hub (``--hub``),
    $ONCEONLY_ADMIN_TOKEN, else the token of the hub known to be at that URL: a kept
    demo's (its data directory names its URL) or the local hub's (its issuer). A token
    is never sent to a URL it is not known to belong to: a finished demo's, or the local
    hub's for another address, would be refused there, or handed to whoever answers."""
    demo_keys = root / "hub" / "keys"
    if own_hub:
        return (demo_keys / "admin-token").read_text().strip()
    named = os.environ.get("ONCEONLY_ADMIN_TOKEN")
    if named:
        return named
    wanted = hub_url.rstrip("/")
    kept_url = root / "hub" / DEMO_HUB_URL_FILE
    if kept_url.is_file() and kept_url.read_text().strip().rstrip("/") == wanted:
        return (demo_keys / "admin-token").read_text().strip()
    from onceonly.hub.cli.startup import load_settings

    local = load_settings()
    local_token = local.keys_dir / "admin-token"
    if local.issuer.rstrip("/") == wanted and local_token.is_file():
        return local_token.read_text().strip()
    raise SystemExit(
        f"no break-glass token is known to belong to {hub_url} (the local hub's issuer is"
        f" {local.issuer}): set ONCEONLY_ADMIN_TOKEN to that hub's keys/admin-token"
    )


def _wait_for_signal() -> None:
    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def run(*, keep: bool, hub_url: str | None, root: Path, out: TextIO = sys.stdout) -> int:
    """Play the story; 0 when every step succeeded, 1 otherwise."""
    logs.configure(level="WARNING", as_json=False)
    story = Story(out)
    with ExitStack() as stack:
        own_hub = hub_url is None
        if hub_url is None:
            shutil.rmtree(root, ignore_errors=True)
            hub_url = _start_hub(stack, root)
            adapters_root = root
            out.write(f"Onceonly demo: a hub and three departments on loopback (data in {root})\n")
            out.write(
                "(its hub hashes the story's passwords at argon2id's lowest cost, for a demo"
                " only: production mode refuses it)\n"
            )
        else:
            adapters_root = root / f"replay-{time.time_ns()}"
            out.write(f"Onceonly demo against the hub at {hub_url}\n")
        admin_token = _admin_token(hub_url, root, own_hub=own_hub)
        departments = {
            d: start_department(stack, department=d, hub_url=hub_url, root=adapters_root)
            for d in DEPARTMENT_ITEMS
        }
        try:
            play(story, hub_url=hub_url, admin_token=admin_token, departments=departments)
        except StoryStopped as stopped:
            out.write(f"\nThe demo stops: the steps after '{stopped}' need what it did.\n")
        _summarize(story, out)
        if keep and not story.failures:
            if own_hub:
                _default_password_cost_from_now()
            out.write(f"hub: {hub_url}\n")
            for department in departments.values():
                out.write(f"{department.id}: {department.url}\n")
            out.flush()
            sys.stderr.write("Services keep running; press Ctrl-C to stop them.\n")
            _wait_for_signal()
    return 1 if story.failures else 0


def _default_password_cost_from_now() -> None:
    """The kept hub may be explored, and anyone with its admin token can add people:
    their passwords are hashed at the settings' default cost, production's floor
    (the hashing cost is the process's, and the demo's hub runs in this process)."""
    fields = Settings.model_fields
    credentials.configure_password_hashing(
        time_cost=fields["password_time_cost"].default,
        memory_kib=fields["password_memory_kib"].default,
    )


class DemoSettings(Settings):
    """The demo hub's settings: what the demo passes, and the defaults; never the
    environment's ``ONCEONLY_*`` variables nor ``$ONCEONLY_CONFIG``'s file. Those
    configure the operator's real hub: read here, its ``database_url`` would take the
    demo's story, its ``mode`` or ``keys_dir`` would stop or change the demo."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _start_hub(stack: ExitStack, root: Path) -> str:
    sock = loopback_socket()
    settings = DemoSettings(
        data_dir=root / "hub",
        issuer=url_of(sock),
        log_json=False,
        log_level="WARNING",
        # The people's passwords (one-off, random, never shown) at argon2id's lowest
        # cost: at production's, their accounts and sign-ins were ~3 s of CPU a run.
        # Production mode refuses this cost (Settings); decision 0034.
        password_time_cost=1,
        password_memory_kib=64,
    )
    keys = HubKeys.load(settings.keys_dir, create=True)
    url = stack.enter_context(serve_in_thread(create_app(settings, keys=keys), sock))
    (settings.data_dir / DEMO_HUB_URL_FILE).write_text(url + "\n")  # whose token it is
    return url


def _summarize(story: Story, out: TextIO) -> None:
    if story.failures:
        out.write(f"\nThe demo FAILED at: {'; '.join(story.failures)}\n")
    else:
        out.write(
            "\nEvery step succeeded: collected once, shared under a grant, refused without one,"
            " audited.\n"
        )
    out.flush()
