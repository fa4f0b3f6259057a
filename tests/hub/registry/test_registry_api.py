"""The registry over HTTP: the public catalogue, and the administrator's writes with
every refusal a steward or an attacker can provoke (OWASP API1/API5/API8).

One hub per database serves the whole module; each test that writes uses its own
item, client or department ids, so the tests stay independent.
"""

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import ECKey, KeySet, OctKey, OKPKey, RSAKey

from onceonly.adapters import public_jwks

from tests.hub_testing import (
    CATALOGUE,
    DATABASES,
    RunningHub,
    audit_entry_for,
    catalogue_hub,
    load_item,
    problem_type,
)

ADDRESS = "person.residential-address"
OWNER = "civil-registry"
CONSUMER = "social-welfare"
Json = dict[str, Any]


@pytest.fixture(scope="module", params=DATABASES)
def hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningHub]:
    with catalogue_hub(request, tmp_path_factory) as running:
        yield running


def catalogue_documents() -> list[Json]:
    return [json.loads(path.read_text()) for path in sorted((CATALOGUE / "items").glob("*.json"))]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin_headers(hub: RunningHub) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.keys.admin_token}"}


def put(hub: RunningHub, path: str, body: Any, *, headers: dict[str, str] | None = None) -> Any:
    return httpx.put(
        f"{hub.url}/v1/admin/{path}",
        json=body,
        headers=admin_headers(hub) if headers is None else headers,
    )


def new_item(**changes: Any) -> Json:
    """A fresh item document (a copy of the address item under a new id)."""
    document = copy.deepcopy(load_item(ADDRESS))
    document["id"] = f"test.{unique('item')}"
    document.update(changes)
    return document


def with_schema(**changes: Any) -> Json:
    document = new_item()
    document["schema"].update(changes)
    document["examples"] = []
    return document


def put_item(hub: RunningHub, document: Json) -> httpx.Response:
    response: httpx.Response = put(hub, f"items/{document['id']}", document)
    return response


def client_body(jwks: Json, department: str = CONSUMER) -> Json:
    return {"department": department, "jwks": jwks}


def assert_refused(
    hub: RunningHub, response: httpx.Response, *, status: int, problem: str, action: str
) -> None:
    assert response.status_code == status, response.text
    assert problem_type(response) == problem
    entry = audit_entry_for(hub, response, action=action)
    assert (entry["outcome"], entry["reason"]) == ("refused", problem)


# --- public catalogue -------------------------------------------------------------------


def test_lists_every_catalogue_item_without_credentials(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.url}/v1/items")
    assert response.status_code == 200
    listed = {item["id"]: item for item in response.json()["items"]}
    assert set(listed) >= {d["id"] for d in catalogue_documents()}
    assert all(isinstance(item["personal_fields"], list) for item in listed.values())


def test_describes_an_item_with_its_personal_fields(hub: RunningHub) -> None:
    document = load_item(ADDRESS)
    response = httpx.get(f"{hub.url}/v1/items/{ADDRESS}")
    assert response.status_code == 200
    item = response.json()
    assert (item["id"], item["title"], item["owner"]) == (ADDRESS, document["title"], OWNER)
    assert (item["sharing_class"], item["classification"]) == ("conditional", "personal")
    assert item["legal_basis"] == document["legal_basis"]
    assert (item["lifecycle"], item["latest_version"]) == ("active", 1)
    expected = sorted(
        name for name, prop in document["schema"]["properties"].items() if prop.get("x-personal")
    )
    assert item["personal_fields"] == expected
    assert "country" not in item["personal_fields"]


def test_serves_the_schema_of_a_version(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.url}/v1/items/{ADDRESS}/versions/1")
    assert response.status_code == 200
    assert response.json() == {
        "item": ADDRESS,
        "version": 1,
        "schema": load_item(ADDRESS)["schema"],
    }


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("person.favourite-colour", "unknown-item"),
        ("person.favourite-colour/versions/1", "unknown-item"),
        (f"{ADDRESS}/versions/2", "unknown-version"),
    ],
)
def test_unknown_item_or_version_is_404(hub: RunningHub, path: str, problem: str) -> None:
    response = httpx.get(f"{hub.url}/v1/items/{path}")
    assert response.status_code == 404
    assert problem_type(response) == problem


@pytest.mark.parametrize(
    "path",
    [
        "Person.Identity",
        "person",
        "person.identity;drop",
        "person.identity%00",
        "person." + "x" * 200,
        f"{ADDRESS}/versions/0",
        f"{ADDRESS}/versions/abc",
        f"{ADDRESS}/versions/99999999999999999999",
    ],
)
def test_invalid_path_parameter_is_a_400_problem(hub: RunningHub, path: str) -> None:
    response = httpx.get(f"{hub.url}/v1/items/{path}")
    assert response.status_code == 400
    assert problem_type(response) == "invalid-request"


# --- administrator authentication --------------------------------------------------------


ADMIN_ROUTES = [
    ("GET", f"departments/{OWNER}", None, None),
    ("PUT", f"departments/{OWNER}", {"name": "Taken over"}, "registry.department.put"),
    ("PUT", "clients/intruder", {"department": OWNER, "jwks": {"keys": []}}, "registry.client.put"),
    ("PUT", f"items/{ADDRESS}", load_item(ADDRESS), "registry.item.put"),
]


@pytest.mark.parametrize(("method", "path", "body", "action"), ADMIN_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-the-admin-token", "Bearer ", "Basic YWRtaW46YWRtaW4="],
    ids=["none", "wrong-token", "empty-bearer", "basic"],
)
def test_admin_routes_need_a_sign_in(
    hub: RunningHub,
    method: str,
    path: str,
    body: Json | None,
    action: str | None,
    authorization: str | None,
) -> None:
    headers = {"Authorization": authorization.strip()} if authorization else {}
    response = httpx.request(method, f"{hub.url}/v1/admin/{path}", json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert problem_type(response) == "not-signed-in"
    assert response.headers["www-authenticate"].startswith("Bearer")
    if action is not None:
        entry = audit_entry_for(hub, response, action=action)
        assert (entry["outcome"], entry["reason"]) == ("refused", "not-signed-in")


def test_admin_token_is_checked_before_the_body_is_read(hub: RunningHub) -> None:
    response = httpx.put(
        f"{hub.url}/v1/admin/departments/{OWNER}",
        content=b'{"name": "a", "name": "b"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 401
    assert problem_type(response) == "not-signed-in"


# --- items: schemas the registry refuses --------------------------------------------------


REFUSED_SCHEMAS: dict[str, tuple[Json, str]] = {
    "draft-07": ({"$schema": "http://json-schema.org/draft-07/schema#"}, "/$schema"),
    "no-$schema": ({"$schema": None}, "/$schema"),
    "remote-$ref": (
        {"properties": {"street": {"$ref": "https://evil.example/x.json"}}},
        "/properties/street/$ref",
    ),
    "file-$ref": (
        {"properties": {"street": {"$ref": "file:///etc/passwd"}}},
        "/properties/street/$ref",
    ),
    "relative-$ref": (
        {"properties": {"street": {"$ref": "other.json#/x"}}},
        "/properties/street/$ref",
    ),
    "root-$id": ({"$id": "https://evil.example/schema.json"}, "/"),
    "nested-$id": (
        {"properties": {"street": {"type": "string", "$id": "https://evil.example/s"}}},
        "/properties/street",
    ),
    "$ref-in-$defs": (
        {"$defs": {"a": {"$ref": "https://evil.example/x.json"}}},
        "/$defs/a/$ref",
    ),
    "metaschema-type-12": ({"properties": {"street": {"type": 12}}}, "/properties/street/type"),
    "root-type-12": ({"type": 12}, "/type"),
    "root-array": ({"type": "array"}, "/type"),
    "x-personal-not-boolean": (
        {"properties": {"street": {"type": "string", "x-personal": "yes"}}},
        "/properties/street/x-personal",
    ),
}


@pytest.mark.parametrize(
    ("changes", "pointer"), REFUSED_SCHEMAS.values(), ids=REFUSED_SCHEMAS.keys()
)
def test_refused_schema_is_422_with_its_json_pointer(
    hub: RunningHub, changes: Json, pointer: str
) -> None:
    document = with_schema(**changes)
    document["schema"] = {k: v for k, v in document["schema"].items() if v is not None}
    response = put_item(hub, document)
    assert_refused(hub, response, status=422, problem="invalid-schema", action="registry.item.put")
    assert response.json()["detail"].startswith(pointer + ":"), response.json()["detail"]
    assert httpx.get(f"{hub.url}/v1/items/{document['id']}").status_code == 404


@pytest.mark.parametrize("schema", [["not", "an", "object"], True, "https://evil.example/x.json"])
def test_schema_that_is_not_a_json_object_is_400(hub: RunningHub, schema: Any) -> None:
    response = put_item(hub, new_item(schema=schema))
    assert_refused(hub, response, status=400, problem="invalid-request", action="registry.item.put")
    assert response.json()["detail"].startswith("schema:")


def test_example_that_violates_the_schema_is_refused(hub: RunningHub) -> None:
    document = new_item()
    document["examples"] = [document["examples"][0], {"street": 42, "city": "Valmera"}]
    response = put_item(hub, document)
    assert_refused(hub, response, status=422, problem="invalid-schema", action="registry.item.put")
    assert response.json()["detail"].startswith("/examples/1")
    assert "42" not in response.json()["detail"]  # refusals never echo the data


@pytest.mark.parametrize("where", ["schema", "example"])
def test_a_lone_surrogate_in_a_schema_or_example_is_422(hub: RunningHub, where: str) -> None:
    """helper-147: a property name or example value spelled ``"\\ud800"`` (valid JSON,
    not text) passed the schema's checks and then failed its fingerprint: a 500."""
    document = new_item()
    if where == "schema":
        document["schema"]["properties"]["KEY"] = {"type": "string"}
    else:
        document["examples"] = [{**document["examples"][0], "street": "KEY"}]
    body = json.dumps(document).replace('"KEY"', '"\\ud800"')
    response = httpx.put(
        f"{hub.url}/v1/admin/items/{document['id']}",
        content=body.encode(),
        headers={**admin_headers(hub), "Content-Type": "application/json"},
    )
    assert_refused(hub, response, status=422, problem="invalid-schema", action="registry.item.put")
    pointer = "/" if where == "schema" else "/examples/0"
    assert response.json()["detail"].startswith(f"{pointer}: holds a lone surrogate")


def test_local_refs_are_accepted(hub: RunningHub) -> None:
    document = with_schema(
        **{
            "$defs": {"code": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "properties": {"postal_code": {"$ref": "#/$defs/code", "x-personal": True}},
            "required": ["postal_code"],
        }
    )
    response = put_item(hub, document)
    assert response.status_code == 200, response.text
    assert response.json()["personal_fields"] == ["postal_code"]


# --- items: ownership and versions ----------------------------------------------------------


def test_registering_an_item_is_audited_and_published(hub: RunningHub) -> None:
    document = new_item()
    response = put_item(hub, document)
    assert response.status_code == 200, response.text
    assert response.json()["latest_version"] == 1
    entry = audit_entry_for(hub, response, action="registry.item.put")
    assert (entry["outcome"], entry["item"], entry["version"]) == ("ok", document["id"], 1)
    assert (entry["client"], entry["department"]) == ("administrator", OWNER)
    served = httpx.get(f"{hub.url}/v1/items/{document['id']}/versions/1").json()
    assert served["schema"] == document["schema"]


def test_re_registering_the_same_document_is_idempotent(hub: RunningHub) -> None:
    document = new_item()
    first = put_item(hub, document)
    again = put_item(hub, document)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again.json()["latest_version"] == 1
    second_version = httpx.get(f"{hub.url}/v1/items/{document['id']}/versions/2")
    assert problem_type(second_version) == "unknown-version"


def test_metadata_changes_keep_the_version(hub: RunningHub) -> None:
    document = new_item()
    put_item(hub, document)
    response = put_item(hub, {**document, "title": "Renamed"})
    assert response.status_code == 200
    assert (response.json()["title"], response.json()["latest_version"]) == ("Renamed", 1)


def test_changing_the_schema_of_an_item_is_a_conflict(hub: RunningHub) -> None:
    document = new_item()
    put_item(hub, document)
    changed = copy.deepcopy(document)
    changed["schema"]["properties"]["street"]["maxLength"] = 100
    response = put_item(hub, changed)
    assert_refused(
        hub, response, status=409, problem="registry-conflict", action="registry.item.put"
    )
    served = httpx.get(f"{hub.url}/v1/items/{document['id']}/versions/1").json()
    assert served["schema"] == document["schema"]


def test_another_owner_cannot_take_over_an_item(hub: RunningHub) -> None:
    response = put_item(hub, {**load_item(ADDRESS), "owner": "tax"})
    assert_refused(
        hub, response, status=409, problem="registry-conflict", action="registry.item.put"
    )
    assert httpx.get(f"{hub.url}/v1/items/{ADDRESS}").json()["owner"] == OWNER


def test_document_id_must_match_the_url(hub: RunningHub) -> None:
    document = new_item()
    response = put(hub, f"items/{ADDRESS}", document)
    assert response.status_code == 409
    assert problem_type(response) == "registry-conflict"


def test_item_of_an_unknown_owner_is_404(hub: RunningHub) -> None:
    response = put_item(hub, new_item(owner="ministry-of-magic"))
    assert_refused(
        hub, response, status=404, problem="unknown-department", action="registry.item.put"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"sharing_class": "sometimes"},
        {"unexpected": True},
        {"legal_basis": {"text": ""}},
        {"owner": "Not A Department"},
    ],
    ids=["sharing-class", "extra-member", "empty-legal-basis", "owner-pattern"],
)
def test_invalid_item_document_is_400(hub: RunningHub, changes: Json) -> None:
    response = put_item(hub, new_item(**changes))
    assert_refused(hub, response, status=400, problem="invalid-request", action="registry.item.put")


# --- clients and their keys ------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def ec_jwks() -> Json:
    return public_jwks(ECKey.generate_key("P-256", auto_kid=True))


def rsa_jwk(bits: int) -> Json:
    """An RSA public JWK built from the numbers (joserfc would warn about a weak one)."""
    public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    numbers = public.public_numbers()
    return {
        "kty": "RSA",
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
        "e": b64url(numbers.e.to_bytes(3, "big")),
    }


def put_client(hub: RunningHub, client_id: str, body: Json) -> httpx.Response:
    response: httpx.Response = put(hub, f"clients/{client_id}", body)
    return response


REFUSED_JWKS: dict[str, Json] = {
    "private-member-d": {"keys": [ECKey.generate_key("P-256").as_dict(private=True)]},
    "rsa-1024": {"keys": [rsa_jwk(1024)]},
    "rsa-exponent-3": {"keys": [{**RSAKey.generate_key(2048).as_dict(private=False), "e": "Aw"}]},
    "hs-oct-key": {"keys": [OctKey.generate_key(256).as_dict(private=True)]},
    "oct-without-k": {"keys": [{"kty": "oct", "alg": "HS256"}]},
    "ec-p384": {"keys": [ECKey.generate_key("P-384").as_dict(private=False)]},
    "ec-point-not-on-curve": {
        "keys": [
            {"kty": "EC", "crv": "P-256", "x": b64url(b"\x01" * 32), "y": b64url(b"\x02" * 32)}
        ]
    },
    "no-keys": {"keys": []},
    "too-many-keys": {"keys": [ec_jwks()["keys"][0] for _ in range(6)]},
    "bare-jwk": ECKey.generate_key("P-256").as_dict(private=False),
    "key-not-an-object": {"keys": ["not-a-key"]},
    "duplicate-kid": {
        "keys": [{**ec_jwks()["keys"][0], "kid": "same"}, {**ec_jwks()["keys"][0], "kid": "same"}]
    },
}


@pytest.mark.parametrize("jwks", REFUSED_JWKS.values(), ids=REFUSED_JWKS.keys())
def test_refused_client_keys_are_422(hub: RunningHub, jwks: Json) -> None:
    client_id = unique("client")
    response = put_client(hub, client_id, client_body(jwks))
    assert_refused(hub, response, status=422, problem="invalid-jwks", action="registry.client.put")
    keys = jwks.get("keys")
    secrets = [k[m] for k in keys or [] if isinstance(k, dict) for m in ("d", "k") if m in k]
    assert not any(secret in response.text for secret in secrets)  # never echoed


@pytest.mark.parametrize(
    "jwk",
    [
        ECKey.generate_key("P-256").as_dict(private=False),
        OKPKey.generate_key("Ed25519").as_dict(private=False),
        RSAKey.generate_key(2048).as_dict(private=False),
    ],
    ids=["ec-p256", "okp-ed25519", "rsa-2048"],
)
def test_accepted_client_keys_get_thumbprint_kids(hub: RunningHub, jwk: Json) -> None:
    client_id = unique("client")
    response = put_client(hub, client_id, client_body({"keys": [jwk]}))
    assert response.status_code == 200, response.text
    expected_kid = KeySet.import_key_set({"keys": [jwk]}).keys[0].thumbprint()
    assert response.json() == {
        "client_id": client_id,
        "department": CONSUMER,
        "status": "active",
        "kids": [expected_kid],
    }
    entry = audit_entry_for(hub, response, action="registry.client.put")
    assert (entry["outcome"], entry["client"], entry["department"]) == (
        "ok",
        "administrator",
        CONSUMER,
    )
    assert entry["target"] == client_id


def test_a_client_rotates_its_keys_by_putting_new_ones(hub: RunningHub) -> None:
    client_id = unique("client")
    put_client(hub, client_id, client_body(ec_jwks()))
    rotated = ec_jwks()
    response = put_client(hub, client_id, client_body(rotated))
    assert response.status_code == 200
    assert response.json()["kids"] == [rotated["keys"][0]["kid"]]


def test_moving_a_client_to_another_department_is_a_conflict(hub: RunningHub) -> None:
    client_id = unique("client")
    put_client(hub, client_id, client_body(ec_jwks()))
    response = put_client(hub, client_id, client_body(ec_jwks(), department="tax"))
    assert_refused(
        hub, response, status=409, problem="registry-conflict", action="registry.client.put"
    )


def test_client_of_an_unknown_department_is_404(hub: RunningHub) -> None:
    body = client_body(ec_jwks(), department="ministry-of-magic")
    response = put_client(hub, unique("client"), body)
    assert_refused(
        hub, response, status=404, problem="unknown-department", action="registry.client.put"
    )


# --- departments ------------------------------------------------------------------------------


def test_registering_a_department_is_audited(hub: RunningHub) -> None:
    department = unique("dept")
    body = {"name": "Statistics Office", "adapter_url": "https://stat.example/adapter"}
    response = put(hub, f"departments/{department}", body)
    assert response.status_code == 200, response.text
    assert response.json()["adapter_url"] == body["adapter_url"]
    entry = audit_entry_for(hub, response, action="registry.department.put")
    assert (entry["outcome"], entry["department"]) == ("ok", department)
    read = httpx.get(f"{hub.url}/v1/admin/departments/{department}", headers=admin_headers(hub))
    assert read.json()["name"] == "Statistics Office"


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "X", "adapter_url": "javascript:alert(1)"},
        {"name": "X", "adapter_url": "file:///etc/passwd"},
        {"name": "X", "extra": 1},
    ],
    ids=["empty-name", "javascript-url", "file-url", "extra-member"],
)
def test_invalid_department_is_400(hub: RunningHub, body: Json) -> None:
    response = put(hub, f"departments/{unique('dept')}", body)
    assert_refused(
        hub, response, status=400, problem="invalid-request", action="registry.department.put"
    )


def test_unknown_department_read_is_404(hub: RunningHub) -> None:
    response = httpx.get(f"{hub.url}/v1/admin/departments/no-such-dept", headers=admin_headers(hub))
    assert response.status_code == 404
    assert problem_type(response) == "unknown-department"


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("departments/dup-keys-dept", "registry.department.put"),
        ("clients/dup-keys-client", "registry.client.put"),
        ("items/test.dup-keys", "registry.item.put"),
    ],
)
def test_duplicate_json_keys_in_admin_bodies_are_400(
    hub: RunningHub, path: str, action: str
) -> None:
    response = httpx.put(
        f"{hub.url}/v1/admin/{path}",
        content=b'{"name": "A", "department": "tax", "name": "B"}',
        headers={**admin_headers(hub), "Content-Type": "application/json"},
    )
    assert_refused(hub, response, status=400, problem="invalid-request", action=action)
    assert "duplicate key" in response.json()["detail"]


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", None, "application/jsonx"]
)
def test_admin_body_must_be_json(hub: RunningHub, content_type: str | None) -> None:
    """RFC 9110 §15.5.16: a body in a media type the operation does not read is 415
    (it was 400 invalid-request: helper-141), and it is not read."""
    headers = admin_headers(hub)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = httpx.put(
        f"{hub.url}/v1/admin/departments/{unique('dept')}",
        content=b'{"name": "A"}',
        headers=headers,
    )
    assert response.status_code == 415, response.text
    assert problem_type(response) == "unsupported-media-type"
    assert response.json()["title"] == "Unsupported media type"


def test_catalogue_import_of_a_missing_directory_names_the_path_not_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from onceonly.hub.cli import main

    monkeypatch.setenv("ONCEONLY_TOKEN", "any")
    missing = tmp_path / "schemas"
    status = main(["catalogue", "import", str(missing), "--hub", "http://127.0.0.1:9"])
    error = capsys.readouterr().err
    assert status == 1
    assert f"cannot read {missing / 'departments.json'}" in error
    assert "cannot reach the hub" not in error
