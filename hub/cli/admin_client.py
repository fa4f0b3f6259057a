"""A small HTTP client for the administrator's API, used by the CLI and the demo.

Every answer of the hub is read as JSON it did not write (onceonly.hub.kit.jsonbody):
a refusal is an RFC 9457 problem, turned into :class:`AdminError` by
:func:`problem_of`, the one reader of problems in the command line.
"""

import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from onceonly.hub.cli.common import segment
from onceonly.hub.kit.untrusted_json import UnsafeJson, load_json

# The deepest JSON any hub takes (onceonly.hub.config: max_json_depth is at most 256). The hub
# applies its own limit; this one keeps a hostile file (or answer) from crashing the client.
MAX_FILE_DEPTH = 256


class AdminError(RuntimeError):
    """The hub refused an administrative request; the message is its problem detail."""

    def __init__(self, status: int, problem: dict[str, Any], *, not_a_hub: bool = False) -> None:
        self.status = status
        self.problem = problem
        self.not_a_hub = not_a_hub  # the answer is no problem document: no hub gave it
        said = [str(problem[key]) for key in ("title", "detail") if problem.get(key)]
        super().__init__(": ".join([f"HTTP {status}", *said]))

    @classmethod
    def from_response(cls, response: httpx.Response) -> "AdminError":
        problem = problem_of(response)
        return cls(response.status_code, problem, not_a_hub=_not_a_problem(response))


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem (RFC 9457 §3) in a refusal; an answer that is not a JSON object
    (a proxy's HTML page, say) becomes ``{"detail": <its first characters>}``."""
    try:
        problem = load_json(response.content, max_depth=MAX_FILE_DEPTH)
    except UnsafeJson:
        problem = None
    if isinstance(problem, dict):
        return problem
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return {"detail": f"an answer of {len(response.content)} bytes of {kind}"}


def _not_a_problem(response: httpx.Response) -> bool:
    """Whether a refusal is something other than the hub's problem document (RFC 9457):
    a web server's page, a proxy's error, another service at that address."""
    kind = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    return kind != "application/problem+json"


def answer_of(response: httpx.Response) -> Any:
    """The JSON of a successful answer (``{}`` for 204); AdminError for a refusal."""
    if response.status_code >= 400:
        raise AdminError.from_response(response)
    if response.status_code == 204:
        return {}
    try:
        return load_json(response.content, max_depth=MAX_FILE_DEPTH)
    except UnsafeJson as error:
        raise AdminError(
            response.status_code, {"title": "not JSON", "detail": f"the hub's answer is {error}"}
        ) from None


class AdminClient:
    """Administrative calls over HTTP with the administrator's bearer token.

    Example::

        with AdminClient("http://127.0.0.1:8000", token) as admin:
            admin.put_department("tax", name="Tax Board", adapter_url="https://...")
    """

    def __init__(
        self,
        hub_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: whom to trust and what certificate to present (default: the usual
        certificate authorities, no client certificate)."""
        self._http = httpx.Client(
            base_url=hub_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
            verify=tls if tls is not None else True,
        )

    def __enter__(self) -> "AdminClient":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """Any route of the hub's API with this client's token (``params`` that are None
        are left out); problems raise AdminError."""
        return self._call(method, path, body, **params)

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self._http.request(
            method, path, json=body, params={k: v for k, v in params.items() if v is not None}
        )
        return answer_of(response)

    def put_department(
        self,
        department_id: str,
        *,
        name: str,
        description: str = "",
        adapter_url: str | None = None,
    ) -> dict[str, Any]:
        body = {"name": name, "description": description, "adapter_url": adapter_url}
        return dict(self._call("PUT", f"/v1/admin/departments/{segment(department_id)}", body))

    def put_client(
        self, client_id: str, *, department: str, jwks: dict[str, Any]
    ) -> dict[str, Any]:
        body = {"department": department, "jwks": jwks}
        return dict(self._call("PUT", f"/v1/admin/clients/{segment(client_id)}", body))

    def disable_client(self, client_id: str) -> dict[str, Any]:
        """Its access tokens end at once and it gets no new one (docs/protocol.md, 2.8)."""
        return dict(self._call("POST", f"/v1/admin/clients/{segment(client_id)}/disable"))

    def put_item(self, document: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("PUT", f"/v1/admin/items/{segment(document['id'])}", document))

    def add_version(self, item_id: str, document: dict[str, Any]) -> dict[str, Any]:
        """Register the next schema version (``{"schema": ..., "examples": [...]}``)."""
        return dict(self._call("POST", f"/v1/admin/items/{segment(item_id)}/versions", document))

    def deprecate_item(self, item_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/admin/items/{segment(item_id)}/deprecate"))

    def retire_item(self, item_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/admin/items/{segment(item_id)}/retire"))

    def list_items(self, **criteria: str | None) -> list[dict[str, Any]]:
        """The catalogue, filtered by q, owner, tag, classification, sharing_class, lifecycle."""
        return list(self._call("GET", "/v1/items", **criteria)["items"])

    def describe_item(self, item_id: str) -> dict[str, Any]:
        """The item with its versions."""
        item = dict(self._call("GET", f"/v1/items/{segment(item_id)}"))
        item["versions"] = self._call("GET", f"/v1/items/{segment(item_id)}/versions")["versions"]
        return item

    def create_grant(
        self,
        *,
        consumer: str,
        item: str,
        purpose: str,
        legal_basis: str,
        fields: list[str] | None = None,
        valid_until: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "consumer": consumer,
            "item": item,
            "purpose": purpose,
            "legal_basis": legal_basis,
        }
        if fields is not None:
            body["fields"] = fields
        if valid_until is not None:
            body["valid_until"] = valid_until
        return dict(self._call("POST", "/v1/admin/grants", body))

    def revoke_grant(self, grant_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/admin/grants/{segment(grant_id)}/revoke"))

    def list_grants(self, *, consumer: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/admin/grants", consumer=consumer)["grants"])

    def dead_letters(self) -> list[dict[str, Any]]:
        """Event deliveries that failed every retry."""
        return list(self._call("GET", "/v1/admin/events/deliveries", status="dead")["deliveries"])

    def replay_delivery(self, delivery_id: str) -> None:
        self._call("POST", f"/v1/admin/events/deliveries/{segment(delivery_id)}/replay")

    def audit_entries(self, **filters: Any) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/audit/entries", **filters))

    @contextmanager
    def download(self, path: str, **params: Any) -> Iterator[Iterator[bytes]]:
        """The body of a GET as it arrives (an audit export); a refusal raises AdminError
        before any of it is given."""
        query = {k: v for k, v in params.items() if v is not None}
        with self._http.stream("GET", path, params=query) as response:
            if response.status_code >= 400:
                response.read()
                raise AdminError.from_response(response)
            yield response.iter_bytes()

    def import_catalogue(
        self, directory: Path, *, on_item: Callable[[str], None] | None = None
    ) -> list[str]:
        """Register the departments and items of a catalogue directory (schemas/);
        ``on_item`` is told each item's id once it and its versions are registered."""
        departments = read_json_file(directory / "departments.json")["departments"]
        # One listing, not a read per department: a read of a department that does not
        # exist yet would be refused (404), and every refusal is an audit entry.
        existing = {d["id"] for d in self._call("GET", "/v1/admin/departments")["departments"]}
        for department in departments:
            if department["id"] not in existing:  # never reset a live department's adapter
                self.put_department(
                    department["id"],
                    name=department["name"],
                    description=department.get("description", ""),
                )
        imported = []
        for path in sorted((directory / "items").glob("*.json")):
            document = read_json_file(path)
            self.put_item(document)
            for version in _later_versions(directory, document["id"]):
                self.add_version(document["id"], read_json_file(version))
            imported.append(document["id"])
            if on_item is not None:
                on_item(document["id"])
        return imported


MAX_FILE_BYTES = 16 * 1024 * 1024
"""The largest JSON file the command line reads: the largest body any hub accepts
(``max_body_bytes``' bound in onceonly.hub.config), so what is larger is refused before
it fills memory (``/dev/zero`` took 2.8 GB)."""


def read_json_file(path: Path) -> Any:
    """A JSON file given to the command line, parsed as the hub parses what it did not
    write (onceonly.hub.kit.jsonbody). Raise OSError when it cannot be read, and UnsafeJson (a
    ValueError that names the file) when it is larger than :data:`MAX_FILE_BYTES`, not
    JSON, or too deeply nested."""
    with path.open("rb") as file:
        raw = file.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise UnsafeJson(
            f"{path} is larger than {MAX_FILE_BYTES} bytes, more than a hub accepts in a body"
        )
    try:
        return load_json(raw, max_depth=MAX_FILE_DEPTH)
    except UnsafeJson as error:
        raise UnsafeJson(f"{path} is {error}") from None


def _later_versions(directory: Path, item_id: str) -> list[Path]:
    """``versions/<item>.v<N>.json`` (N = 2, 3, ...) in version order."""
    numbered = []
    for path in (directory / "versions").glob(f"{item_id}.v*.json"):
        number = path.name.removeprefix(f"{item_id}.v").removesuffix(".json")
        if number.isdigit():
            numbered.append((int(number), path))
    return [path for _, path in sorted(numbered)]
