"""Test support for the adapters suite: a hub double that speaks docs/protocol.md over
real HTTP, and a runner for any ASGI app on loopback.

(A module with a unique name rather than conftest content, so tests can import it.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import rfc8785
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from onceonly.hub.cli.servers import PromptServer

ITEM = "person.residential-address"
OWNER = "civil-registry"
CONSUMER = "social-welfare"
CLIENT_ID = "social-welfare-adapter"
PURPOSE = "benefit-eligibility"
SUBJECT = "38001085718"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "street": {"type": "string"},
        "city": {"type": "string"},
        "postal_code": {"type": "string", "pattern": "^[0-9]{5}$"},
        "floor": {"type": ["integer", "null"]},
        "verified": {"type": "boolean"},
        "moved_in": {"type": "string", "format": "date"},
        "geo": {
            "type": "object",
            "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
            "additionalProperties": False,
        },
    },
    "required": ["street", "city"],
    "additionalProperties": False,
}
RECORD = {"street": "Pikk 1", "city": "Tallinn", "postal_code": "10123"}


def sha256_b64url(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def problem(status: int, slug: str, detail: str = "refused", **extra: str) -> JSONResponse:
    body = {"type": f"urn:onceonly:problem:{slug}", "title": slug, "status": status}
    body.update(detail=detail, **extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        ws="none",
        http="h11",
        lifespan="on",
        timeout_graceful_shutdown=1,  # a deliberately slow handler must not hold the test
    )
    server = PromptServer(config)  # stops at once when told (hub.cli.servers)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # a busy CI machine starts servers slowly
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        thread.join(timeout=5)


@dataclass
class HubDouble:
    """The parts of a hub that adapters talk to, with knobs for tests."""

    keys: list[ECKey] = field(default_factory=lambda: [ECKey.generate_key("P-256", auto_kid=True)])
    url: str = ""
    clients: dict[str, ECKey] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=lambda: {SUBJECT: dict(RECORD)})
    token_lifetime: int = 300
    issued: dict[str, str] = field(default_factory=dict)
    scripted: list[tuple[int, str]] = field(default_factory=list)
    commit_to_other: bool = False  # a receipt whose commitment is not to the record sent
    token_requests: int = 0
    token_type: str = "Bearer"
    queries: list[str] = field(default_factory=list)
    proofs: list[str | None] = field(default_factory=list)  # the DPoP header of each request
    seen_jti: set[str] = field(default_factory=set)

    def reset(self) -> None:
        """Forget everything but the URL, so one server can serve a whole session."""
        url, self.__dict__ = self.url, HubDouble().__dict__
        self.url = url

    def revoke_tokens(self) -> None:
        self.issued.clear()

    def request_token(
        self, subject: str = SUBJECT, *, key: ECKey | None = None, **claims: Any
    ) -> str:
        """A request token as the hub would send it to the owner's adapter."""
        now = int(time.time())
        values: dict[str, Any] = {
            "iss": self.url,
            "aud": OWNER,
            "sub": CONSUMER,
            "item": ITEM,
            "purpose": PURPOSE,
            "version": 1,
            "subject_sha256": sha256_b64url(subject),
            "request_id": uuid.uuid4().hex,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 60,
        }
        values.update(claims)
        signer = key or self.keys[0]
        header = {"alg": "ES256", "kid": signer.kid, "typ": "onceonly-req+jwt"}
        return jwt.encode(header, values, signer)

    def app(self) -> FastAPI:
        app = FastAPI()
        self._add_registry(app)
        self._add_oauth(app)
        self._add_query(app)
        return app

    def _add_registry(self, app: FastAPI) -> None:
        @app.get("/.well-known/oauth-authorization-server")
        def metadata() -> dict[str, Any]:
            return {"issuer": self.url, "token_endpoint": f"{self.url}/oauth/token"}

        @app.get("/.well-known/jwks.json")
        def jwks() -> dict[str, Any]:
            return {"keys": [key.as_dict(private=False) for key in self.keys]}

        @app.get("/v1/items/{item}")
        def item_entry(item: str) -> JSONResponse:
            if item != ITEM:
                return problem(404, "unknown-item")
            return JSONResponse({"id": ITEM, "owner": OWNER, "latest_version": 1})

        @app.get("/v1/items/{item}/versions/{version}")
        def version_entry(item: str, version: int) -> JSONResponse:
            if item != ITEM or version != 1:
                return problem(404, "unknown-item")
            return JSONResponse({"item": item, "version": version, "schema": SCHEMA})

    def _add_oauth(self, app: FastAPI) -> None:
        @app.post("/oauth/token")
        async def token(request: Request) -> JSONResponse:
            self.token_requests += 1
            self.proofs.append(request.headers.get("dpop"))
            form = {
                name: values[0]
                for name, values in parse_qs((await request.body()).decode()).items()
            }
            client_id = self._authenticated_client(form)
            if client_id is None:
                return problem(401, "invalid-client", error="invalid_client")
            access_token = uuid.uuid4().hex
            self.issued[access_token] = client_id
            body = {
                "access_token": access_token,
                "token_type": self.token_type,
                "expires_in": self.token_lifetime,
            }
            return JSONResponse(body)

    def _authenticated_client(self, form: dict[str, str]) -> str | None:
        if form.get("grant_type") != "client_credentials":
            return None
        try:
            unverified = json.loads(
                base64.urlsafe_b64decode(form["client_assertion"].split(".")[1] + "==")
            )
            client_key = self.clients[unverified["iss"]]
            claims = jwt.decode(form["client_assertion"], client_key, algorithms=["ES256"]).claims
        except (KeyError, ValueError, JoseError):
            return None
        fresh = claims["jti"] not in self.seen_jti and claims["exp"] - time.time() <= 120
        self.seen_jti.add(claims["jti"])
        if claims["sub"] != claims["iss"] or claims["aud"] != self.url or not fresh:
            return None
        return str(claims["iss"])

    def _add_query(self, app: FastAPI) -> None:
        @app.post("/v1/items/{item}/records/query")
        async def query(item: str, request: Request) -> JSONResponse:
            authorization = request.headers.get("authorization", "")
            scheme, _, presented = authorization.partition(" ")
            self.queries.append(scheme)
            self.proofs.append(request.headers.get("dpop"))
            if scheme != self.token_type or presented not in self.issued:
                return problem(401, "invalid-token")
            if self.scripted:
                status, slug = self.scripted.pop(0)
                return problem(status, slug)
            body = await request.json()
            record = self.records.get(body["subject"]) if item == ITEM else None
            if record is None:
                return problem(404, "record-not-found")
            receipt = {
                "index": len(self.queries),
                "leaf_hash": "q1WQ0b6bN3n9G8tm4B0uS2yK8m1G9hQm2JYk7wS2P0c=",
                **commitment_of(record if not self.commit_to_other else {"other": 1}),
            }
            answer = {"item": item, "version": 1, "record": record, "receipt": receipt}
            return JSONResponse(answer, headers={"X-Request-Id": "hub-" + uuid.uuid4().hex[:8]})


def commitment_of(record: dict[str, Any]) -> dict[str, str]:
    """The receipt's commitment as docs/protocol.md states it: HMAC-SHA-256 under a fresh
    key of the record's RFC 8785 canonical JSON, both base64url."""
    key = os.urandom(32)
    mac = hmac.new(key, rfc8785.dumps(record), hashlib.sha256).digest()
    return {"commitment": "hmac-sha256:" + _b64url(mac), "commitment_key": _b64url(key)}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def write_config(directory: Path, *, hub_url: str, items: tuple[str, ...] = (ITEM,)) -> Path:
    path = directory / "adapter.toml"
    lines = [
        f'department = "{OWNER}"',
        f'hub_url = "{hub_url}"',
        'listen = "127.0.0.1:0"',
        'data_dir = "var/adapter"',
        f'client_id = "{CLIENT_ID}"',
    ]
    lines += [f'[items."{item}"]\nsource = "store"' for item in items]
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def adapter_process(config: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``onceonly adapter serve --config CONFIG ARGS`` in a process of its own, on a
    free port (the file's ``listen`` is rewritten), once it answers ``/healthz``; yield
    its base URL and the process (its stderr a pipe), stopped with SIGINT at the end."""
    port = free_port()
    text = config.read_text()
    config.write_text(text.replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'))
    command = [sys.executable, "-m", "onceonly.hub", "adapter", "serve", "--config", str(config)]
    server = subprocess.Popen(
        [*command, *args],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                said = server.stderr.read().decode() if server.stderr else ""
                raise RuntimeError(f"the adapter stopped: {said}")
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the adapter did not answer in 30 s")
            time.sleep(0.1)
        yield url, server
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        finally:
            if server.poll() is None:
                server.kill()
            if server.stderr:
                server.stderr.close()
