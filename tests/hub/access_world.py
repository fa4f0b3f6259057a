"""Test support for access requests: the exchange world of ``exchange_world`` (a hub,
the civil registry's adapter with records, social welfare as a consumer) and the
people who steward, audit and administer it, each signed in once.

(A module with a unique name, not conftest content, so tests can import it.)
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from onceonly.hub.db import make_sync_engine

from tests.hub.exchange_world import CONSUMER, OWNER, World, exchange_world

PASSWORD = "a long and quiet passphrase 7"
OTHER = "tax"
# person.identity: every field is personal, so a request names the fields it needs
IDENTITY_FIELDS = [
    "citizenship",
    "date_of_birth",
    "family_name",
    "given_name",
    "personal_code",
    "sex",
]

# username → roles (one kind of role per person; a steward may steward several)
PEOPLE: dict[str, list[dict[str, str]]] = {
    "rita.registry": [{"role": "steward", "department": OWNER}],
    "oskar.registry": [{"role": "steward", "department": OWNER}],
    "sam.welfare": [{"role": "steward", "department": CONSUMER}],
    "bo.both": [
        {"role": "steward", "department": OWNER},
        {"role": "steward", "department": CONSUMER},
    ],
    "tina.tax": [{"role": "steward", "department": OTHER}],
    "alma.auditor": [{"role": "auditor"}],
    "adam.admin": [{"role": "administrator"}],
}


@dataclass
class Person:
    """One signed-in person (or the break-glass token) talking to the hub over HTTP."""

    hub_url: str
    token: str | None

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.request(
            method,
            self.hub_url + path,
            json=body,
            headers=headers,
            params={k: v for k, v in params.items() if v is not None},
            timeout=30,
        )

    def request(self, **overrides: Any) -> httpx.Response:
        """File an access request (social welfare asks the civil registry by default).
        Unless ``fields`` is given, it names every field of the item's latest version
        (the civil registry's items are all personal: naming none asks for nothing)."""
        if "item" in overrides and "fields" not in overrides:
            overrides["fields"] = self.every_field(overrides["item"])
        body = {
            "consumer": CONSUMER,
            "item": "person.identity",
            "purpose": "benefit-eligibility",
            "purpose_text": "checking the applicant's identity for a benefit",
            "legal_basis": "Social Welfare Act §12",
            "fields": IDENTITY_FIELDS,
            "valid_until": None,
            **overrides,
        }
        return self.call("POST", "/v1/access-requests", body)

    def every_field(self, item: str) -> list[str]:
        response = self.call("GET", f"/v1/items/{item}/versions")
        if response.status_code != 200:  # an unknown item: let the request be refused
            return ["personal_code"]
        return list(response.json()["versions"][-1]["fields"])

    def act(self, request_id: str, verb: str, body: Any = None) -> httpx.Response:
        return self.call("POST", f"/v1/access-requests/{request_id}/{verb}", body)


@dataclass
class AccessWorld:
    world: World
    database_url: str
    people: dict[str, Person]

    @property
    def url(self) -> str:
        return self.world.hub.url

    def break_glass(self) -> Person:
        return Person(self.url, self.world.hub.keys.admin_token)

    def anonymous(self) -> Person:
        return Person(self.url, None)

    def pending(self, **overrides: Any) -> str:
        """A new pending request's id (by the consumer's steward)."""
        response = self.people["sam.welfare"].request(**overrides)
        assert response.status_code == 201, response.text
        assert response.json()["status"] == "pending"
        return str(response.json()["id"])

    def set_answer_due(self, request_id: str, moment: datetime) -> None:
        """Move a request's deadline (as if it had been made long ago)."""
        engine = make_sync_engine(self.database_url)
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE access_requests SET answer_due = :due WHERE id = :id"),
                {"due": moment, "id": request_id},
            )
        engine.dispose()


def sign_in(hub_url: str, username: str) -> str:
    response = httpx.post(
        f"{hub_url}/v1/people/sign-in",
        json={"username": username, "password": PASSWORD},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


@contextmanager
def access_world(*, database_url: str, tmp_path: Path, **settings: object) -> Iterator[AccessWorld]:
    with exchange_world(database_url=database_url, tmp_path=tmp_path, **settings) as world:
        emergency = Person(world.hub.url, world.hub.keys.admin_token)
        for username, roles in PEOPLE.items():
            body = {"password": PASSWORD, "roles": roles}
            response = emergency.call("PUT", f"/v1/admin/people/{username}", body)
            assert response.status_code == 200, response.text
        people = {name: Person(world.hub.url, sign_in(world.hub.url, name)) for name in PEOPLE}
        yield AccessWorld(world=world, database_url=database_url, people=people)
