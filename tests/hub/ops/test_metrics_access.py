"""Who may read /metrics, and what it tells them (decision 0063), over HTTP on loopback,
on SQLite and PostgreSQL.

The series say which department queried which owner's item for which purpose, how
often: /metrics asks for the bearer token in keys/metrics-token unless the operator
opens it (``metrics_public``). And whoever reads it learns no more than the token
endpoint tells: a forged assertion naming a registered client, a disabled one and a
made-up one move the same series (the audit log keeps which it was).
"""

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey
from prometheus_client.parser import text_string_to_metric_families

from onceonly.adapters import public_jwks
from onceonly.hub import backup
from onceonly.hub.keys import METRICS_TOKEN_FILE, HubKeys, key_file_names

from tests.hub_testing import (
    DATABASES,
    RunningHub,
    audit_entry_for,
    module_database,
    problem_type,
    running_hub,
)

DEPARTMENT = "social-welfare"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
Series = tuple[str, frozenset[tuple[str, str]]]


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with running_hub(
        database_url=module_database(request, tmp_path_factory, catalogued=True),
        data_dir=tmp_path_factory.mktemp("hub"),
        require_dpop=False,  # the refusals here come before any proof
    ) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scrape(hub: RunningHub) -> dict[Series, float]:
    """Every sample of ``/metrics``, read with the hub's metrics token."""
    response = httpx.get(f"{hub.url}/metrics", headers=bearer(hub.keys.metrics_token))
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def moved(
    before: dict[Series, float], after: dict[Series, float], name: str
) -> dict[Series, float]:
    """The series of ``name`` that changed, and by how much."""
    return {
        series: value - before.get(series, 0.0)
        for series, value in after.items()
        if series[0] == name and value != before.get(series, 0.0)
    }


# --- the credential -----------------------------------------------------------------------


def test_metrics_are_refused_without_the_metrics_token(hub: RunningHub) -> None:
    for headers in (
        {},
        bearer("not-the-token"),
        bearer(hub.keys.admin_token),  # the break-glass token is another credential
        {"Authorization": f"Basic {hub.keys.metrics_token}"},
    ):
        answer = httpx.get(f"{hub.url}/metrics", headers=headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert problem_type(answer) == "invalid-token"
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith('Bearer realm="onceonly"')
        assert "onceonly_" not in answer.text
    answer = httpx.get(f"{hub.url}/metrics", headers=bearer(hub.keys.metrics_token))
    assert answer.status_code == 200
    assert "onceonly_http_requests_total" in answer.text


def test_an_operator_may_open_metrics_to_whoever_reaches_the_port(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    with running_hub(database_url=url, data_dir=tmp_path, metrics_public=True) as open_hub:
        answer = httpx.get(f"{open_hub.url}/metrics")
        assert answer.status_code == 200
        assert "onceonly_http_requests_total" in answer.text


def test_the_metrics_token_is_a_key_file_that_backups_carry(hub: RunningHub) -> None:
    assert METRICS_TOKEN_FILE in key_file_names(hub.settings.keys_dir)
    path = hub.settings.keys_dir / METRICS_TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == hub.keys.metrics_token
    assert len(hub.keys.metrics_token) >= 40  # 32 random bytes, URL-safe


def test_a_backup_from_before_the_metrics_token_is_restored_and_the_token_made_anew(
    tmp_path: Path,
) -> None:
    data = tmp_path / "old"
    url = f"sqlite:///{data / 'hub.db'}"
    with running_hub(database_url=url, data_dir=data):
        pass
    taken = tmp_path / "backup"
    backup.backup(url, data / "keys", taken)
    (taken / "keys" / METRICS_TOKEN_FILE).unlink()  # as a backup of an earlier version

    restored = tmp_path / "new"
    backup.restore(taken, f"sqlite:///{restored / 'hub.db'}", restored / "keys")
    assert not (restored / "keys" / METRICS_TOKEN_FILE).exists()
    keys = HubKeys.load(restored / "keys", create=True)  # what `onceonly keys init` does
    assert (restored / "keys" / METRICS_TOKEN_FILE).read_text().strip() == keys.metrics_token


# --- what a reader learns -------------------------------------------------------------------


@dataclass
class Client:
    client_id: str
    key: ECKey


def registered(hub: RunningHub, *, disabled: bool = False) -> Client:
    client = Client(f"metrics-{uuid.uuid4().hex[:8]}", ECKey.generate_key("P-256", auto_kid=True))
    with hub.admin() as admin:
        admin.put_client(client.client_id, department=DEPARTMENT, jwks=public_jwks(client.key))
        if disabled:
            admin.disable_client(client.client_id)
    return client


def forged(hub: RunningHub, client_id: str, endpoint: str = "/oauth/token") -> httpx.Response:
    """A request naming ``client_id``, its assertion signed by a key nobody registered."""
    forger = ECKey.generate_key("P-256", auto_kid=True)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": hub.settings.issuer,
        "exp": int(time.time()) + 60,
        "jti": uuid.uuid4().hex,
    }
    form = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": jwt.encode({"alg": "ES256", "kid": forger.kid}, claims, forger),
    }
    if endpoint == "/oauth/token":
        form["grant_type"] = "client_credentials"
    else:
        form["token"] = "not-a-token"
    return httpx.post(f"{hub.url}{endpoint}", data=form)


@pytest.mark.parametrize("endpoint", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_forged_assertions_move_the_same_series_whatever_client_they_name(
    hub: RunningHub, endpoint: str
) -> None:
    action = {"/oauth/token": "token.issue"}.get(endpoint, "token." + endpoint.split("/")[-1])
    named = {
        "client-signature-invalid": registered(hub).client_id,
        "client-disabled": registered(hub, disabled=True).client_id,
        "client-unknown": f"made-up-{uuid.uuid4().hex[:8]}",
    }
    movements = []
    for reason, client_id in named.items():
        before = scrape(hub)
        answer = forged(hub, client_id, endpoint)
        after = scrape(hub)
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_client"
        # the audit log keeps the precise reason, for those who may read it
        assert audit_entry_for(hub, answer, action=action)["reason"] == reason
        movements.append(moved(before, after, "onceonly_refusals_total"))
    labels = {"action": action, "reason": "client-not-authenticated", "item": "-", "consumer": "-"}
    expected = {("onceonly_refusals_total", frozenset(labels.items())): 1.0}
    assert movements == [expected, expected, expected]


def test_no_refusal_at_the_oauth_endpoints_names_a_department(hub: RunningHub) -> None:
    forged(hub, registered(hub).client_id)
    for (name, labels), _ in scrape(hub).items():
        found = dict(labels)
        if name == "onceonly_refusals_total" and found["action"].startswith("token."):
            assert found["consumer"] == "-", found
            assert found["reason"] not in {"client-unknown", "client-disabled"}, found
            assert found["reason"] != "client-signature-invalid", found
