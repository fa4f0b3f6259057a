"""How long the web console's pages take, at the demo's size (issue 13: every page under
100 ms on this machine).

Method: a hub as its own process (uvicorn, as ``bench/exchange.py`` starts it), on
SQLite (or a throw-away PostgreSQL database); the demo's story played against it
(``onceonly.hub.cli.demo.play``: the starter catalogue, three departments and their
adapters, five people, requests approved, exchanges, a refusal, a move, a revocation),
then two requests left waiting and ``--fetches`` more record fetches, so the log holds
about as many entries as the demo leaves and a few dozen more. The bench signs in as
each role through the sign-in form (a citizen's sign-in is sealed with the hub's key,
as the citizens' OpenID Connect callback seals it), then times each page: ``--warmup``
unmeasured GETs, then ``--requests`` sequential GETs (one client, one connection, no
other load from the bench), from send to the body read. The search results page is a
POST, as a browser sends it. Reported: median, p95 (nearest rank) and max in ms, and
whether the median and p95 are under 100 ms. Pages that are audited (the auditors'
entry, search and dashboard, the citizen's page) add an audit entry per request, so the
log grows while they are timed.

Run: ``python bench/console_pages.py [--requests 50] [--database postgres]``.
"""

import argparse
import io
import platform
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from onceonly.hub.citizen.service import CitizenSession
from onceonly.hub.cli import demo
from onceonly.hub.cli.admin_client import AdminClient
from onceonly.hub.keys import HubKeys

from _processes import (
    free_port,
    fresh_postgres_database,
    hub_command,
    hub_environment,
    running,
)
from _profile import recording, summarize

GOAL_MS = 100.0
RESULTS = Path(__file__).resolve().parent / "results"
PASSWORD = "a long bench password, not secret"
ITEM, INCOME = demo.ADDRESS, demo.INCOME
_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass
class Page:
    role: str
    name: str
    path: str
    form: dict[str, str] | None = None  # a POST with this form (and the page's CSRF token)


@dataclass
class World:
    subject: str
    waiting: str
    grant: str
    entry: int


def _pages(world: World) -> list[Page]:
    steward = [
        ("catalogue", "/catalogue"),
        ("catalogue search", "/catalogue?q=address&owner=civil-registry"),
        ("item", f"/catalogue/{ITEM}"),
        ("ask for access", f"/catalogue/{INCOME}/request"),
        ("inbox", "/inbox"),
        ("request (approve per field)", f"/requests/{world.waiting}"),
        ("outbox", "/outbox"),
        ("grants", "/grants"),
        ("grant", f"/grants/{world.grant}"),
        ("register", "/register"),
        ("new version", f"/catalogue/{ITEM}/versions/new"),
        ("lifecycle", f"/catalogue/{ITEM}/lifecycle"),
        ("account", "/account"),
    ]
    auditor = [
        ("audit search", "/audit"),
        ("audit entry (proof verified)", f"/audit/entries/{world.entry}"),
        ("checkpoints", "/checkpoints"),
        ("efficiency", "/efficiency"),
    ]
    administrator = [
        ("departments", "/admin/departments"),
        ("department", f"/admin/departments/{demo.CIVIL}"),
        ("clients", "/admin/clients"),
        ("client", f"/admin/clients/{demo.WELFARE}-adapter"),
        ("people", "/admin/people"),
        ("person", "/admin/people/cecilia"),
        ("dead letters", "/admin/dead-letters"),
        ("signing keys", "/admin/signing-keys"),
    ]
    pages = [Page("signed out", "sign-in", "/sign-in")]
    pages += [Page("steward", name, path) for name, path in steward]
    pages += [Page("auditor", name, path) for name, path in auditor]
    pages.insert(
        len(pages) - 2,
        Page("auditor", "audit results", "/audit", form={"subject": world.subject}),
    )
    pages += [Page("administrator", name, path) for name, path in administrator]
    pages.append(Page("citizen", "who used my data", "/citizen"))
    return pages


@contextmanager
def hub_with_the_demo(
    database: str, postgres_url: str, fetches: int
) -> Iterator[tuple[str, Path, World]]:
    """A hub process with the demo's world; its URL, data directory and what was made."""
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="console-bench-")))
        database_url = None
        if database == "postgres":
            url = stack.enter_context(fresh_postgres_database(postgres_url))
            database_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        port = free_port()
        env = hub_environment(port=port, data_dir=root / "hub", database_url=database_url)
        env.update(
            {  # the citizens' page needs a provider configured; it is never called here
                "ONCEONLY_CITIZEN_OIDC_ISSUER": "http://127.0.0.1:9",
                "ONCEONLY_CITIZEN_OIDC_CLIENT_ID": "onceonly-hub",
                "ONCEONLY_CITIZEN_OIDC_CLIENT_SECRET": secrets.token_urlsafe(16),
                "ONCEONLY_CHECKPOINT_INTERVAL": "1",
            }
        )
        (root / "hub").mkdir()
        hub = stack.enter_context(running("hub", hub_command(port), port=port, env=env))
        keys_dir = root / "hub" / "keys"
        token = (keys_dir / "admin-token").read_text().strip()
        departments = {
            name: demo.start_department(stack, department=name, hub_url=hub.url, root=root)
            for name in demo.DEPARTMENT_ITEMS
        }
        told = io.StringIO()
        story = demo.Story(told)
        demo.play(story, hub_url=hub.url, admin_token=token, departments=departments)
        if story.failures:
            raise SystemExit(f"the demo's story failed:\n{told.getvalue()}")
        world = _more_of_a_week(hub.url, token, departments[demo.WELFARE], fetches)
        yield hub.pid, hub.url, keys_dir, world


def _more_of_a_week(url: str, token: str, welfare: demo.Department, fetches: int) -> World:
    """Known passwords, two waiting requests, more fetches; what the pages will show."""
    with AdminClient(url, token) as admin:
        for username, (name, role, department) in demo.PEOPLE.items():
            roles = [{"role": role, "department": department}] if department else [{"role": role}]
            body = {"display_name": name, "password": PASSWORD, "roles": roles}
            admin.call("PUT", f"/v1/admin/people/{username}", body)
        made = []
        for consumer, item, fields in [
            (demo.WELFARE, demo.IDENTITY, ["given_name", "family_name", "date_of_birth"]),
            (demo.CIVIL, INCOME, ["year", "total_income_cents"]),
        ]:
            body = {
                "consumer": consumer,
                "item": item,
                "purpose": demo.PURPOSE,
                "purpose_text": "Deciding subsistence benefit applications",
                "legal_basis": "Social Welfare Act §37(2)",
                "fields": fields,
            }
            made.append(admin.call("POST", "/v1/access-requests", body))
        grant = next(
            g
            for g in admin.call("GET", "/v1/grants")["grants"]
            if g["item"] == ITEM and g["consumer"] == demo.WELFARE
        )
        earners = list(demo.sample_records()[INCOME])
        with demo._client(url, welfare) as client:
            for n in range(fetches):
                client.fetch(INCOME, earners[n % len(earners)], purpose=demo.PURPOSE)
        subject = next(iter(demo.sample_records()[ITEM]))
        found = admin.audit_entries(subject=subject)["entries"]
        first = min(e["index"] for e in found if e["entry"]["action"] == "record.query")
    print(f"the demo's world: {_log_size(url)} audit entries", file=sys.stderr)
    return World(subject=subject, waiting=made[0]["id"], grant=grant["id"], entry=first)


def _log_size(url: str) -> int:
    """The size of the log at its latest signed checkpoint (a second behind at most)."""
    time.sleep(1.5)
    return int(httpx.get(f"{url}/v1/audit/checkpoint").text.splitlines()[1])


def _signed_in(url: str, username: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    token = _CSRF.search(client.get("/sign-in").text)
    assert token is not None
    form = {"csrf_token": token.group(1), "username": username, "password": PASSWORD}
    answer = client.post("/sign-in", data={**form, "code": "", "next": "/catalogue"})
    if answer.status_code != 303:
        raise SystemExit(f"{username} could not sign in: {answer.status_code}")
    return client


def _citizen(url: str, keys_dir: Path, subject: str) -> httpx.Client:
    keys = HubKeys.load(keys_dir, create=False)
    sealed = CitizenSession(pseudonym=keys.pseudonym(subject), expires=int(time.time()) + 900)
    client = httpx.Client(base_url=url, timeout=30)
    client.cookies.set("onceonly-citizen", sealed.seal(keys))
    return client


def _once(client: httpx.Client, page: Page) -> float:
    if page.form is None:
        started = time.perf_counter()
        answer = client.get(page.path)
    else:
        token = _CSRF.search(client.get(page.path).text)  # the form (not timed)
        assert token is not None
        started = time.perf_counter()
        answer = client.post(page.path, data={"csrf_token": token.group(1), **page.form})
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"{page.path}: {answer.status_code} {answer.text[:300]}")
    return elapsed


def _profile(pid: int, client: httpx.Client, page: Page, seconds: float = 5.0) -> None:
    """Sample the hub (py-spy, the thread holding the GIL) while it answers ``page``."""
    output = RESULTS / f"console-{page.name.split()[0]}-{time.strftime('%Y%m%dT%H%M%S')}.txt"
    RESULTS.mkdir(exist_ok=True)
    with recording(pid, output=output, seconds=seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _once(client, page)
    summary = summarize(output)
    print(f"profile of {page.name!r}: {summary.samples} samples, {output}", file=sys.stderr)
    for title, rows in [
        ("project functions (inclusive)", summary.project_inclusive),
        ("calls into", summary.callees),
    ]:
        print(f"  {title}:", file=sys.stderr)
        for name, count in rows:
            print(f"    {100 * count / max(1, summary.samples):5.1f} %  {name}", file=sys.stderr)


def nearest_rank(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(fraction * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50, help="measured GETs per page")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured GETs per page")
    parser.add_argument("--fetches", type=int, default=10, help="record fetches after the story")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--profile", metavar="PAGE", help="py-spy the hub on this page (5 s)")
    args = parser.parse_args()
    with hub_with_the_demo(args.database, args.postgres_url, args.fetches) as made:
        pid, url, keys, world = made
        clients: dict[str, httpx.Client] = {
            "signed out": httpx.Client(base_url=url, timeout=30),
            "steward": _signed_in(url, "cecilia"),
            "auditor": _signed_in(url, "aurora"),
            "administrator": _signed_in(url, "ada"),
            "citizen": _citizen(url, keys, world.subject),
        }
        rows: list[dict[str, Any]] = []
        for page in _pages(world):
            client = clients[page.role]
            for _ in range(args.warmup):
                _once(client, page)
            times = [_once(client, page) * 1e3 for _ in range(args.requests)]
            rows.append(
                {
                    "role": page.role,
                    "page": page.name,
                    "median": statistics.median(times),
                    "p95": nearest_rank(times, 0.95),
                    "max": max(times),
                }
            )
            if page.name == args.profile:
                _profile(pid, client, page)
        size = _log_size(url)
        for client in clients.values():
            client.close()
    print(
        f"console pages, ms, {args.requests} sequential requests each after {args.warmup}"
        f" unmeasured; {args.database}; {platform.node()} ({platform.machine()},"
        f" Python {platform.python_version()}); log after the run: {size} entries"
    )
    print(f"{'role':14}{'page':30}{'median':>8}{'p95':>8}{'max':>8}  under {GOAL_MS:g} ms")
    for row in rows:
        verdict = (
            "yes" if row["p95"] < GOAL_MS else ("median only" if row["median"] < GOAL_MS else "NO")
        )
        print(
            f"{row['role']:14}{row['page']:30}{row['median']:8.1f}{row['p95']:8.1f}"
            f"{row['max']:8.1f}  {verdict}"
        )


if __name__ == "__main__":
    main()
