"""Where the hub POSTs an event: a path joined under the subscriber's adapter URL,
never a URL made by pasting strings (decision 0060). An adapter URL with a query or
a fragment would swallow the path (``…/internal/admin?op=x#`` + ``/v1/events`` is a
POST to ``/internal/admin``), so registering one is refused, and one stored before
the rule is never called. A production hub also refuses adapters on its own machine
or link (loopback, link-local: cloud metadata), not those on private networks.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request

from onceonly.hub.kit.base_urls import (
    base_url_problem,
    call_problem,
    join_path,
    local_host_problem,
)

from tests.hub.events.test_events import (  # its worlds are in conftest.py
    CONSUMER,
    WorldMaker,
    _point,
    the_delivery,
)
from tests.hub.registry.test_registry_adapter_urls import put_department, stored_url
from tests.hub_testing import RunningHub, audit_entry_for, problem_type, running_hub, serve
from tests.hub_testing import wait_until as wait

BASE = "https://adapter.social-welfare.example:8443"


@pytest.mark.parametrize(
    ("base", "url"),
    [
        (BASE, f"{BASE}/v1/events"),
        (f"{BASE}/", f"{BASE}/v1/events"),
        (f"{BASE}/adapter", f"{BASE}/adapter/v1/events"),  # RFC 3986 §5.2 would drop it
        (f"{BASE}/adapter/", f"{BASE}/adapter/v1/events"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/events"),
        ("http://127.0.0.1:65535/", "http://127.0.0.1:65535/v1/events"),
        ("http://127.0.0.1:/", "http://127.0.0.1:/v1/events"),  # empty: the scheme's port
        ("http://[::1]:8080", "http://[::1]:8080/v1/events"),
    ],
)
def test_the_events_path_is_joined_under_the_adapters_own_path(base: str, url: str) -> None:
    assert join_path(base, "/v1/events") == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:20893/internal/admin?op=x#",  # the reviewer's
        f"{BASE}/adapter?",  # even empty: urlsplit cannot tell it from none
        f"{BASE}/adapter#",
        f"{BASE}/?a=b",
        "https://user:secret@adapter.social-welfare.example",
        "https:///adapter",
        "ftp://adapter.social-welfare.example",
        # none httpx can call (InvalidURL, no HTTPError): refused, not met at each call
        "http://127.0.0.1:abc/",
        "http://[::1]:x/",
        "http://127.0.0.1:+80/",
        "http://127.0.0.1:0/",
        "http://127.0.0.1:70000/",
        f"{BASE}/a\x01b",
        f"{BASE}/adapter\n",  # urlsplit drops line breaks and tabs without a word
        f"{BASE}/ad\tapter",
        f"{BASE}/ad apter",
        "http://adapter\x7f.example/",
    ],
)
def test_a_url_with_anything_after_its_path_is_no_base(url: str) -> None:
    assert base_url_problem(url) is not None
    with pytest.raises(ValueError, match="is not a base URL"):
        join_path(url, "/v1/events")


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("https://127.0.0.1:8443", True),
        ("https://127.1", True),  # what inet_aton, and so the resolver, reads as 127.0.0.1
        ("https://2130706433", True),
        ("https://0.0.0.0", True),  # reaches this machine
        ("https://[::1]:8443", True),
        ("https://[::ffff:127.0.0.1]", True),
        ("https://[::]", True),
        ("https://localhost:8443", True),
        ("https://LocalHost.", True),
        ("https://adapter.localhost", True),  # RFC 6761 §6.3
        ("https://169.254.169.254/latest", True),  # cloud metadata
        ("https://[fe80::1]", True),
        ("https://[::ffff:169.254.169.254]", True),
        ("https://10.20.30.40:8443", False),  # departments' private networks
        ("https://192.168.1.5", False),
        ("https://172.16.0.9", False),
        ("https://[fd00::5]", False),
        (BASE, False),  # a name is not resolved
    ],
)
def test_local_hosts_are_told_from_private_and_public_ones(url: str, local: bool) -> None:
    assert (local_host_problem(url) is not None) is local


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("https://127.0.0.2:8443", False),
        ("https://[::1]:8443", False),
        ("https://localhost:8443", False),
        ("https://0.0.0.0", True),  # no address to call: still refused
        ("https://169.254.169.254/latest", True),  # metadata: still refused
        ("https://[fe80::1]", True),
    ],
)
def test_adapters_on_loopback_allows_loopback_only(url: str, local: bool) -> None:
    """``adapters_on_loopback`` (a hub and its adapters on one host, as the deployment
    test runs them) lets loopback and localhost through, never link-local."""
    assert (local_host_problem(url, loopback_allowed=True) is not None) is local


OTHER_DOTS = [
    "https://127\u30020\u30020\u30021:8443",  # IDEOGRAPHIC FULL STOP
    "https://127\uff0e0\uff0e0\uff0e1:8443",  # FULLWIDTH FULL STOP
    "https://169\uff61254\uff61169\uff61254/",  # HALFWIDTH IDEOGRAPHIC FULL STOP
    "https://localhost\u3002:8443",
]


@pytest.mark.parametrize("url", OTHER_DOTS)
def test_a_host_written_with_other_dots_is_no_base(url: str) -> None:
    """HTTP clients read these dots as '.', so 127。0。0。1 was taken in production and
    called as 127.0.0.1 (a hostile review): a base URL is ASCII."""
    assert "ASCII" in (base_url_problem(url) or "")
    assert call_problem(url, production=False, loopback_allowed=False) is not None


@pytest.mark.parametrize(
    ("url", "production", "loopback_allowed", "refused"),
    [
        ("https://127.0.0.1:8443", True, False, True),  # stored before the rule
        ("https://127.0.0.1:8443", True, True, False),
        ("https://169.254.169.254/", True, True, True),
        ("http://127.0.0.1:8080", False, False, False),  # development calls loopback
        ("https://10.20.30.40:8443/adapter", True, False, False),
    ],
)
def test_a_url_is_judged_again_when_the_hub_would_call_it(
    url: str, production: bool, loopback_allowed: bool, refused: bool
) -> None:
    """The record query and the deliverer ask call_problem before each call, so a URL
    stored before registration refused it is never called."""
    problem = call_problem(url, production=production, loopback_allowed=loopback_allowed)
    assert (problem is not None) is refused


REFUSED = [
    "http://127.0.0.1:20893/internal/admin?op=x#",
    "http://adapter.social-welfare.example/adapter?",
    "http://adapter.social-welfare.example/#",
    "http://user:secret@adapter.social-welfare.example",
]


def test_registering_an_adapter_url_with_a_query_or_fragment_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    kept = "http://adapter.social-welfare.example:8080/adapter"
    with running_hub(database_url=database_url, data_dir=tmp_path) as hub:
        assert put_department(hub, "social-welfare", kept).status_code == 200
        for url in REFUSED:
            refused = put_department(hub, "social-welfare", url)
            assert refused.status_code == 400, refused.text
            assert problem_type(refused) == "invalid-request"
            assert "adapter_url" in refused.json()["detail"]
            entry = audit_entry_for(hub, refused, action="registry.department.put")
            assert entry["outcome"] == "refused"
        assert stored_url(hub, "social-welfare") == kept


@pytest.fixture
def adapter() -> Iterator[tuple[str, list[str]]]:
    """A subscriber's adapter that answers 200 to a POST anywhere: its URL, and the
    path and query of every POST it received."""
    received: list[str] = []
    app = FastAPI()

    @app.post("/{path:path}")
    async def anywhere(request: Request) -> dict[str, str]:
        received.append(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return {}

    with serve(app) as url:
        yield url, received


def test_an_event_goes_to_the_events_path_under_the_adapters_path(
    database_url: str,
    tmp_path: Path,
    event_world: WorldMaker,
    adapter: tuple[str, list[str]],
) -> None:
    url, received = adapter
    with event_world(database_url, tmp_path) as world:
        _point(world, f"{url}/adapter/")
        world.subscribe()
        world.publish()
        wait(lambda: received == ["/adapter/v1/events"], what="the event at its path")


def test_an_adapter_url_stored_before_the_rule_is_never_called(
    database_url: str,
    tmp_path: Path,
    event_world: WorldMaker,
    db: sa.Engine,
    adapter: tuple[str, list[str]],
) -> None:
    url, received = adapter
    with event_world(database_url, tmp_path) as world:
        with db.begin() as conn:  # as an older hub let it be registered
            conn.execute(
                sa.text("UPDATE departments SET adapter_url = :url WHERE id = :id"),
                {"url": f"{url}/internal/admin?op=x#", "id": CONSUMER},
            )
        world.subscribe()
        world.publish()
        wait(lambda: the_delivery(db)[1] > 0, what="a failed attempt")
        status, _, last_error = the_delivery(db)
        assert status in ("pending", "dead")
        assert last_error is not None
        assert "adapter_url is refused" in last_error
        assert received == []
        entries = world.entries("event.deliver")  # no call, so no "ok" entry
        assert [(e["outcome"], e["reason"]) for e in entries][:1] == [("failed", "delivery-failed")]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8443",
        "https://[::1]:8443",
        "https://localhost:8443",
        "https://169.254.169.254/latest",
        "https://[fe80::1]:8443",
        *OTHER_DOTS,
    ],
)
def test_production_refuses_an_adapter_on_its_own_machine_or_link(
    production_hub: RunningHub, url: str
) -> None:
    department = f"registry-{uuid.uuid4().hex[:8]}"
    refused = put_department(production_hub, department, url)
    assert refused.status_code == 400, refused.text
    assert problem_type(refused) == "invalid-request"
    assert "adapter_url" in refused.json()["detail"]
    private = "https://10.20.30.40:8443/adapter"  # a department's own network: taken
    assert put_department(production_hub, department, private).status_code == 200
    assert stored_url(production_hub, department) == private
