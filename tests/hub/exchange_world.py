"""A small exchange world for hub tests: a hub, the civil registry's adapter with
records, and the social-welfare department as a consumer with its own key."""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from onceonly.adapters import (
    AdapterConfig,
    DPoPKey,
    HubClient,
    RecordStore,
    StoreItem,
    create_provider_app,
    public_jwks,
)

from tests.hub_testing import CATALOGUE, RunningHub, module_database, running_hub, serve

OWNER = "civil-registry"
CONSUMER = "social-welfare"
CONSUMER_CLIENT = "social-welfare-adapter"
ADDRESS = "person.residential-address"
IDENTITY = "person.identity"
PURPOSE = "benefit-eligibility"
SUBJECT = "38001085718"
ADDRESS_RECORD = {
    "street": "Pikk 1",
    "city": "Tallinn",
    "postal_code": "10123",
    "country": "ND",
    "municipality": "Tallinn",
    "registered_since": "2019-05-01",
}


@dataclass
class World:
    hub: RunningHub
    consumer_key: ECKey
    owner_store: RecordStore
    owner_store_path: Path
    owner_url: str

    def client(self, **kwargs: object) -> HubClient:
        return HubClient(
            self.hub.url, client_id=CONSUMER_CLIENT, key=self.consumer_key, retries=0, **kwargs
        )  # type: ignore[arg-type]


@contextmanager
def exchange_world(
    *, database_url: str, tmp_path: Path, catalogued: bool = False, **settings: object
) -> Iterator[World]:
    """The world on ``database_url``, a migrated database: the starter catalogue is
    imported into it, unless it holds it already (``catalogued``: a copy of a catalogued
    template, ``module_database(..., catalogued=True)``)."""
    with running_hub(database_url=database_url, data_dir=tmp_path / "hub", **settings) as hub:
        admin = hub.admin()
        if not catalogued:
            admin.import_catalogue(CATALOGUE)
        consumer_key = ECKey.generate_key("P-256", auto_kid=True)
        admin.put_client(CONSUMER_CLIENT, department=CONSUMER, jwks=public_jwks(consumer_key))
        with owners_adapter(hub, tmp_path) as owner:
            admin.create_grant(
                consumer=CONSUMER,
                item=ADDRESS,
                purpose=PURPOSE,
                legal_basis="Social Welfare Act §12",
            )
            yield World(hub=hub, consumer_key=consumer_key, **owner)
        admin.close()


@contextmanager
def owners_adapter(hub: RunningHub, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The owner's adapter serving a store with the address record, its department
    pointed at it: the owner's members of a World (``owner_store``, ``owner_store_path``,
    ``owner_url``)."""
    config = AdapterConfig(
        department=OWNER,
        hub_url=hub.url,
        data_dir=tmp_path / "owner",
        items={ADDRESS: StoreItem(), IDENTITY: StoreItem()},
    )
    with RecordStore(config.store_path) as store:
        store.put(ADDRESS, SUBJECT, ADDRESS_RECORD)
    with serve(create_provider_app(config)) as owner_url, hub.admin() as admin:
        admin.put_department(OWNER, name="Civil Registry Office", adapter_url=owner_url)
        with RecordStore(config.store_path) as owner_store:
            yield {
                "owner_store": owner_store,
                "owner_store_path": config.store_path,
                "owner_url": owner_url,
            }


@contextmanager
def module_exchange_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, **settings: object
) -> Iterator[World]:
    """The exchange world built once for a module, on the module's database (for a
    module-scoped fixture parametrized by DATABASES). Its tests find their own audit
    entries by request id (``audit_entry_for``), use grants and clients of their own,
    and put back what they change; a test that must change the world for good takes a
    fresh ``exchange_world`` instead."""
    database_url = module_database(request, tmp_path_factory, catalogued=True)
    tmp_path = tmp_path_factory.mktemp("world")
    with exchange_world(
        database_url=database_url, tmp_path=tmp_path, catalogued=True, **settings
    ) as built:
        yield built


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_form(world: World, client_id: str, key: ECKey, **form: str) -> dict[str, str]:
    """Form parameters authenticating ``client_id`` with private_key_jwt (RFC 7523)."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": world.hub.settings.issuer,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    signed = jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": signed, **form}


def access_token(
    world: World,
    dpop: DPoPKey,
    *,
    client_id: str = CONSUMER_CLIENT,
    key: ECKey | None = None,
    scope: str | None = None,
) -> str:
    """A DPoP-bound access token for ``client_id`` (the consumer's client by default),
    bound to ``dpop``, requested as docs/protocol.md §2 says, with raw HTTP."""
    form = client_form(world, client_id, key or world.consumer_key, grant_type="client_credentials")
    if scope is not None:
        form["scope"] = scope
    url = f"{world.hub.url}/oauth/token"
    response = httpx.post(url, data=form, headers={"DPoP": dpop.proof("POST", url)})
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    return str(response.json()["access_token"])
