"""A scripted month with known numbers, played on a real hub over loopback (SQLite and
PostgreSQL), and every figure of the efficiency report, its export and the command
line checked against them (issue 14).

The month: social welfare reads addresses (fast owner: the civil registry) and tax
debt statuses (slow owner: the tax board, 300 ms a record); a second consumer (the
business registry) reads addresses and is refused tax statuses it has no grant for; one
address is missing; the civil registry's adapter is down for five queries. Access
requests to the civil registry: five decided on time, one late, five pending of which
four are overdue. The report's threshold is 5.
"""

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AccessDenied,
    AdapterConfig,
    HubClient,
    NotFound,
    OnceonlyError,
    PythonItem,
    create_provider_app,
    public_jwks,
)
from onceonly.hub.cli import main
from onceonly.hub.db import make_sync_engine
from onceonly.hub.kit.clock import ManualClock

from tests.hub.access_world import PASSWORD
from tests.hub.exchange_world import ADDRESS, CONSUMER, OWNER, World, exchange_world
from tests.hub_testing import DATABASES, RunningHub, running_hub, serve

pytestmark = pytest.mark.wire

SLOW_OWNER = "tax"
DEBT = "tax.debt-status"
SECOND = "business-registry"
SECOND_CLIENT = "business-registry-adapter"
PURPOSE = "benefit-eligibility"
SLOW_SECONDS = 0.3
MINUTES = {ADDRESS: 20.0}  # the debt status takes the default, 15
THRESHOLD = 5


def slow_debt_status(item: str, subject: str) -> dict[str, Any]:
    """The tax board's source: a debt status, after SLOW_SECONDS."""
    time.sleep(SLOW_SECONDS)
    return {
        "subject_type": "person",
        "subject_id": subject,
        "as_of": "2026-11-01T00:00:00Z",
        "has_debt": False,
        "debt_cents": 0,
    }


def subject(n: int) -> str:
    return f"3800108{n:04d}"


@dataclass
class Month:
    world: World
    database_url: str
    auditor: dict[str, str]
    period: str
    metrics_before: str
    metrics_after: str
    # A second hub on the same database whose clock reads the 2nd of the next month:
    # the open-data export is made only for a month that has ended.
    later: RunningHub
    later_auditor: dict[str, str]


def _people(world: World) -> dict[str, str]:
    with world.hub.admin() as admin:
        return _sign_in_people(world, admin)


def _sign_in_people(world: World, admin: Any) -> dict[str, str]:
    tokens = {}
    for username, roles in {
        "rita.registry": [{"role": "steward", "department": OWNER}],
        "sam.welfare": [{"role": "steward", "department": CONSUMER}],
        "alma.auditor": [{"role": "auditor"}],
        "adam.admin": [{"role": "administrator"}],
    }.items():
        admin.call("PUT", f"/v1/admin/people/{username}", {"password": PASSWORD, "roles": roles})
        answer = httpx.post(
            f"{world.hub.url}/v1/people/sign-in",
            json={"username": username, "password": PASSWORD},
        )
        answer.raise_for_status()
        tokens[username] = answer.json()["token"]
    return tokens


def _fetch(client: HubClient, item: str, who: str) -> str:
    try:
        client.fetch(item, who, purpose=PURPOSE)
    except AccessDenied:
        return "refused"
    except NotFound:
        return "not-found"
    except OnceonlyError:
        return "failed"
    return "ok"


def _fetch_at_once(world: World, item: str, subjects: list[str]) -> list[str]:
    """The consumer's fetches of ``item`` for ``subjects``, each in a thread and with a
    client of its own; their outcomes in the order of ``subjects``."""

    def fetch(who: str) -> str:
        with world.client() as client:
            return _fetch(client, item, who)

    with ThreadPoolExecutor(len(subjects)) as pool:
        return list(pool.map(fetch, subjects))


def _play_exchanges(world: World, tmp_path: Path) -> None:
    with world.hub.admin() as admin:
        _play_exchanges_as(world, admin, tmp_path)


def _play_exchanges_as(world: World, admin: Any, tmp_path: Path) -> None:
    # The address records: subjects 1..6 at the civil registry (the world has SUBJECT too).
    for n in range(1, 7):
        world.owner_store.put(
            ADDRESS,
            subject(n),
            {
                "street": f"Pikk {n}",
                "city": "Tallinn",
                "postal_code": "10123",
                "country": "ND",
                "municipality": "Tallinn",
                "registered_since": "2019-05-01",
            },
        )
    # The tax board's slow adapter.
    config = AdapterConfig(
        department=SLOW_OWNER,
        hub_url=world.hub.url,
        data_dir=tmp_path / "tax",
        items={DEBT: PythonItem(source="python", callable=f"{__name__}:slow_debt_status")},
    )
    second_key = ECKey.generate_key("P-256", auto_kid=True)
    admin.put_client(SECOND_CLIENT, department=SECOND, jwks=public_jwks(second_key))
    admin.create_grant(consumer=CONSUMER, item=DEBT, purpose=PURPOSE, legal_basis="test")
    admin.create_grant(consumer=SECOND, item=ADDRESS, purpose=PURPOSE, legal_basis="test")
    with serve(create_provider_app(config)) as tax_url:
        admin.put_department(SLOW_OWNER, name="Tax and Customs Board", adapter_url=tax_url)
        welfare = world.client()
        business = HubClient(world.hub.url, client_id=SECOND_CLIENT, key=second_key, retries=0)
        outcomes = []
        # welfare reads addresses: 1x3, 2x2, 3, 4, 5 (8 exchanges, 5 records)
        for n in (1, 1, 1, 2, 2, 3, 4, 5):
            outcomes.append(_fetch(welfare, ADDRESS, subject(n)))
        # the business registry reads addresses 1x2 and 6x2 (4 exchanges, 1 new record)
        for n in (1, 1, 6, 6):
            outcomes.append(_fetch(business, ADDRESS, subject(n)))
        # welfare reads debt statuses: 1x2, 2, 3, 4, 5 (6 exchanges, 5 records, slow),
        # at once (a client each), so that the owner's 300 ms are waited for once, not six
        # times: each exchange still takes them, and the figures do not depend on order
        outcomes.extend(_fetch_at_once(world, DEBT, [subject(n) for n in (1, 1, 2, 3, 4, 5)]))
        # the business registry has no grant for debt statuses: 5 refusals
        for n in range(1, 6):
            outcomes.append(_fetch(business, DEBT, subject(n)))
        # one address the civil registry does not have: refused (record-not-found)
        outcomes.append(_fetch(welfare, ADDRESS, subject(99)))
        assert outcomes == ["ok"] * 18 + ["refused"] * 5 + ["not-found"], outcomes
        # the civil registry's adapter is down for five queries
        owner = admin.call("GET", f"/v1/admin/departments/{OWNER}")
        admin.put_department(OWNER, name=owner["name"], adapter_url="http://127.0.0.1:9/")
        down = [_fetch(welfare, ADDRESS, subject(1)) for _ in range(5)]
        assert down == ["failed"] * 5
        admin.put_department(OWNER, name=owner["name"], adapter_url=world.owner_url)
        welfare.close()
        business.close()


def _play_requests(world: World, database_url: str, sam: str, rita: str, start: datetime) -> None:
    """Eleven access requests to the civil registry through the API, then their times
    set to the script (a month cannot be waited for)."""

    def call(token: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
        answer = httpx.request(
            method, world.hub.url + path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code in (200, 201), answer.text
        return dict(answer.json())

    purposes = [
        "benefit-eligibility",
        "housing-benefit",
        "pension-calculation",
        "child-benefit",
        "tax-assessment",
        "tax-audit",
        "debt-collection",
        "population-register-update",
    ]
    items = ["person.identity", "person.family-relations", "person.death"]
    pairs = [(item, purpose) for item in items for purpose in purposes][:11]
    times = []
    for number, (item, purpose) in enumerate(pairs):
        created = call(
            sam,
            "POST",
            "/v1/access-requests",
            {
                "consumer": CONSUMER,
                "item": item,
                "purpose": purpose,
                "purpose_text": "a scripted month",
                "legal_basis": "test",
                "fields": "all",
            },
        )
        requested = start + timedelta(hours=number)
        due = requested + timedelta(days=14)
        if number < 5:  # on time: decided after 10, 20, 30, 40 and 50 hours
            call(rita, "POST", f"/v1/access-requests/{created['id']}/approve", {})
            decided: datetime | None = requested + timedelta(hours=10 * (number + 1))
        elif number == 5:  # late: refused a day after its deadline
            call(
                rita,
                "POST",
                f"/v1/access-requests/{created['id']}/refuse",
                {"reason": "not needed for this purpose"},
            )
            decided = due + timedelta(days=1)
        else:  # pending: four overdue, one not yet
            decided = None
            due = datetime.now(UTC) + (timedelta(days=3) if number == 10 else -timedelta(days=1))
        times.append((created["id"], requested, due, decided))
    engine = make_sync_engine(database_url)
    with engine.begin() as conn:
        for request_id, requested, due, decided in times:
            conn.execute(
                sa.text(
                    "UPDATE access_requests SET requested_at = :requested, answer_due = :due,"
                    " decided_at = :decided WHERE id = :id"
                ),
                {"requested": requested, "due": due, "decided": decided, "id": request_id},
            )
    engine.dispose()


def _scrape(world: World) -> str:
    return world.hub.metrics().text


@pytest.fixture(scope="module", params=DATABASES)
def month(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Month]:
    from tests.hub_testing import module_database

    database_url = module_database(request, tmp_path_factory)
    tmp_path = tmp_path_factory.mktemp("month")
    with exchange_world(
        database_url=database_url,
        tmp_path=tmp_path,
        report_minutes_saved=MINUTES,
        report_threshold=THRESHOLD,
    ) as world:
        now = datetime.now(UTC)
        if now.day > 27 or (now.day == 1 and now.hour < 1):
            pytest.skip("too close to a month's end: the script's times must share one month")
        tokens = _people(world)
        before = _scrape(world)
        _play_exchanges(world, tmp_path)
        month_start = now.replace(day=1, hour=9, minute=0, second=0, microsecond=0)
        _play_requests(
            world, database_url, tokens["sam.welfare"], tokens["rita.registry"], month_start
        )
        after = _scrape(world)
        next_month = (month_start + timedelta(days=32)).replace(day=2, hour=0, minute=30)
        with running_hub(
            database_url=database_url,
            data_dir=world.hub.settings.data_dir,
            clock=ManualClock(next_month),
            report_minutes_saved=MINUTES,
            report_threshold=THRESHOLD,
        ) as later:
            answer = httpx.post(
                f"{later.url}/v1/people/sign-in",
                json={"username": "alma.auditor", "password": PASSWORD},
            )
            answer.raise_for_status()
            yield Month(
                world=world,
                database_url=database_url,
                auditor={"Authorization": f"Bearer {tokens['alma.auditor']}"},
                period=f"{now.year:04d}-{now.month:02d}",
                metrics_before=before,
                metrics_after=after,
                later=later,
                later_auditor={"Authorization": f"Bearer {answer.json()['token']}"},
            )


def _report(month: Month, **params: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{month.world.hub.url}/v1/reports/efficiency",
        params={"period": month.period, **params},
        headers=month.auditor,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_every_figure_of_the_month(month: Month) -> None:
    """The script's numbers, and what disclosure control withholds of them (threshold
    5; docs/efficiency.md): a small count, what would give it away, and what is worked
    out from either."""
    report = _report(month)
    assert report["threshold"] == THRESHOLD
    assert report["log_entries"] == report["log_size"]  # it counts every committed entry
    items = {row["item"]: row for row in report["items"]}
    address, debt = items[ADDRESS], items[DEBT]
    # addresses: 12 served, 1 not found (withheld), 5 failed; 6 records; 2 consumers
    assert address["exchanges"] == 12
    assert address["refused"] is None
    assert address["failed"] == 5
    assert address["records"] == 6
    assert address["exchanges_per_record"] == 2.0
    assert address["consumers"] == 2
    assert address["minutes_saved"] == 12 * 20.0
    assert address["error_rate"] is None  # it would give the one refusal away
    assert address["owner_availability"] == round(13 / 18, 4)  # 18 reached it, 5 failed
    assert address["owner_p50_ms"] < SLOW_SECONDS * 1000
    assert address["owner_p95_ms"] is None  # 18 calls: fewer than 20
    assert set(address["suppressed"]) == {"refused", "error_rate", "owner_p95_ms"}
    # debt statuses: 6 served (slow), 5 refused (withheld: with the addresses' one, 6 in
    # all, the total would pin both), 5 records
    assert debt["exchanges"] == 6
    assert debt["refused"] is None
    assert debt["records"] == 5
    assert debt["exchanges_per_record"] == 1.2
    assert debt["minutes_saved"] == 6 * 15.0
    assert debt["owner_p50_ms"] >= SLOW_SECONDS * 1000
    assert debt["owner_availability"] == 1.0
    assert debt["consumers"] == 1
    # an item nobody read is listed with zeros
    assert items["vehicle.registration"]["exchanges"] == 0
    assert items["vehicle.registration"]["suppressed"] == []
    # the total: the six refusals are withheld (their parts would be worked out)
    total = report["total"]
    assert (total["exchanges"], total["refused"], total["failed"]) == (18, None, 5)
    assert total["records"] == 11
    assert total["minutes_saved"] == 12 * 20.0 + 6 * 15.0
    assert total["consumers"] == 2
    assert total["requests_decided"] == 6
    assert total["requests_on_time"] is None  # one late: decided - on time would tell
    # the owners: the civil registry's decisions
    owners = {row["department"]: row for row in report["owners"]}
    registry = owners[OWNER]
    assert registry["exchanges"] == 12
    assert registry["requests_decided"] == 6
    assert registry["requests_on_time"] is None
    assert registry["on_time_share"] is None
    assert registry["decision_median_hours"] == 35.0  # 10, 20, 30, 40, 50 h; 15 days
    assert registry["requests_pending"] == 5
    assert registry["requests_overdue"] is None  # four
    assert owners[SLOW_OWNER]["exchanges"] == 6
    # the consumers: the business registry's 4 exchanges are withheld, and so welfare's
    # 14 (18 - 14 would give them away), and with them how many items each was served
    consumers = {row["department"]: row for row in report["consumers"]}
    assert consumers[SECOND]["exchanges"] is None
    assert consumers[CONSUMER]["exchanges"] is None
    assert consumers[CONSUMER]["items"] is None
    assert consumers[CONSUMER]["failed"] == 5
    # welfare's one refusal is withheld, and so the business registry's five (6 in all)
    assert consumers[CONSUMER]["refused"] is None
    assert consumers[SECOND]["refused"] is None
    assert consumers[SECOND]["failed"] == 0


def _published_counts(report: dict[str, Any]) -> Iterator[tuple[str, int]]:
    counts = (
        "exchanges",
        "refused",
        "failed",
        "records",
        "requests_decided",
        "requests_on_time",
        "requests_pending",
        "requests_overdue",
    )
    rows = [report["total"], *report["items"], *report["owners"], *report["consumers"]]
    for row in rows:
        for name in counts:
            if isinstance(row.get(name), int):
                yield name, row[name]


def test_no_published_figure_counts_fewer_than_the_threshold(month: Month) -> None:
    report = _report(month)
    small = [(name, n) for name, n in _published_counts(report) if 0 < n < THRESHOLD]
    assert small == []
    # and the script did make small counts: they were withheld, not absent
    withheld = [
        row for row in report["items"] + report["owners"] + report["consumers"] if row["suppressed"]
    ]
    assert len(withheld) >= 3


def _export(month: Month) -> httpx.Response:
    return httpx.get(
        f"{month.later.url}/v1/reports/efficiency/export",
        params={"period": month.period},
        headers=month.later_auditor,
    )


def test_the_export_is_made_only_for_a_month_that_has_ended(month: Month) -> None:
    url = f"{month.world.hub.url}/v1/reports/efficiency/export"
    for period in (month.period, month.period[:4], f"{month.period[:4]}-Q4"):
        answer = httpx.get(url, params={"period": period}, headers=month.auditor)
        assert answer.status_code == 400, (period, answer.text)
        assert "a month that has ended" in answer.json()["detail"]
    # without a period: last month, which has ended (and had none of the script)
    last = httpx.get(url, headers=month.auditor)
    assert last.status_code == 200, last.text
    total = next(iter(csv.DictReader(io.StringIO(last.text))))
    assert total["scope"] == "total"
    assert total["exchanges"] == "0"
    assert total["period"] < month.period


def test_the_export_has_the_report_figures(month: Month) -> None:
    answer = _export(month)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    by_id = {(row["scope"], row["id"]): row for row in rows}
    address = by_id[("item", ADDRESS)]
    assert address["exchanges"] == "12"
    assert address["refused"] == ""
    assert "refused" in address["suppressed"].split()
    assert by_id[("total", "")]["minutes_saved"] == "330.0"
    assert by_id[("item", ADDRESS)]["exchanges_per_record"] == "2.00"  # fixed places
    assert by_id[("item", ADDRESS)]["owner_availability"] == f"{13 / 18:.4f}"
    assert by_id[("owner", OWNER)]["requests_decided"] == "6"
    for row in rows:  # nothing published counts 1 to 4
        for name in (
            "exchanges",
            "refused",
            "failed",
            "records",
            "requests_decided",
            "requests_on_time",
            "requests_pending",
            "requests_overdue",
        ):
            assert row[name] == "" or not 0 < int(row[name]) < THRESHOLD, (row, name)


def test_the_command_line_shows_the_same_report(
    month: Month, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The real entry point once (``python -m onceonly.hub``, a process of its own), then
    the same command's other forms called in this process (``main``): each process of
    its own cost a second of imports."""
    env = {"ONCEONLY_TOKEN": month.auditor["Authorization"].split()[1]}
    base = [
        sys.executable,
        "-m",
        "onceonly.hub",
        "report",
        "efficiency",
        "--hub",
        month.world.hub.url,
        "--period",
        month.period,
    ]
    shown = subprocess.run(
        [*base, "-o", "json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["total"] == _report(month)["total"] | {
        "decision_median_hours": json.loads(shown.stdout)["total"]["decision_median_hours"]
    }

    def command(token: str, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("ONCEONLY_TOKEN", token)
            patch.setenv("ONCEONLY_SESSION_FILE", str(tmp_path / "session"))
            status = main(["report", "efficiency", *args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    arguments = ["--hub", month.world.hub.url, "--period", month.period]
    status, table, err = command(env["ONCEONLY_TOKEN"], *arguments, "-o", "table")
    assert status == 0, err
    assert ADDRESS in table
    assert "330" in table
    assert "withheld" in table
    later = month.later_auditor["Authorization"].split()[1]
    status, exported, err = command(
        later, "--hub", month.later.url, "--period", month.period, "-o", "csv"
    )
    assert status == 0, err
    assert list(csv.DictReader(io.StringIO(exported))) == list(
        csv.DictReader(io.StringIO(_export(month).text))
    )
    status, _, refused = command(env["ONCEONLY_TOKEN"], *arguments, "-o", "csv")
    assert status == 1
    assert "a month that has ended" in refused


def test_the_report_is_for_auditors_and_administrators(month: Month) -> None:
    url = f"{month.world.hub.url}/v1/reports/efficiency"
    assert httpx.get(url).status_code == 401
    for period in ("2026-13", "\uff12\uff10\uff12\uff16", "2" * 17, "2026-q4"):
        bad = httpx.get(url, params={"period": period}, headers=month.auditor)
        assert bad.status_code == 400, period
        assert bad.json()["type"].endswith("invalid-request")


def test_the_metrics_count_the_month(month: Month) -> None:
    def total(text: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        found = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "onceonly_exchanges_total" and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    found += sample.value
        return found

    def delta(**labels: str) -> float:
        return total(month.metrics_after, **labels) - total(month.metrics_before, **labels)

    assert delta(item=ADDRESS, outcome="ok") == 12
    assert delta(item=DEBT, outcome="ok") == 6
    assert delta(item=DEBT, outcome="refused") == 5
    assert delta(item=ADDRESS, outcome="failed") == 5
    assert delta(consumer=SECOND, outcome="ok") == 4
