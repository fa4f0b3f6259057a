"""The adapter's CPU per record query, in-process: µs of process CPU per answered query.

Method: a minimal hub (its metadata, JWKS and the item's schema) under uvicorn on a
loopback port in a thread; the provider app of ``onceonly.adapters`` (the store source,
one record) called directly as an ASGI app on uvloop, with no server and no socket in
between, by ``--concurrency`` tasks at once (as wrk's 16 connections keep 16 queries in
flight), each query with its own fresh request token (single use), all signed before
the clock starts. CPU is ``time.process_time()``: the event loop and the store's
worker threads (reads, served-log commits) together; the hub thread is idle meanwhile.
The answer must be ``200`` every time. What a real server adds (uvicorn's HTTP parsing,
the socket calls) is what ``bench/exchange.py --paths direct`` measures on top.

The number moves less with the machine's other work than a wrk run does, so it is
the one to compare two versions of the adapter with: run it alternately against the
working tree and a commit exported by ``bench/exchange.py --source REV``
(``PYTHONPATH=bench/results/source-<sha> python bench/adapter_query.py``).

Run: ``python bench/adapter_query.py [--queries 20000] [--concurrency 16] [--repeat 3]``.
"""

import argparse
import asyncio
import hashlib
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey
from onceonly.adapters import RecordStore, base64url, create_provider_app, load_config

ITEM = "person.residential-address"
OWNER = "civil-registry"
CONSUMER = "social-welfare"
PURPOSE = "benefit-eligibility"
SUBJECT = "38001085718"
RECORD = {"street": "Pikk 1", "city": "Tallinn", "postal_code": "10123"}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "street": {"type": "string"},
        "city": {"type": "string"},
        "postal_code": {"type": "string", "pattern": "^[0-9]{5}$"},
    },
    "required": ["street", "city"],
    "additionalProperties": False,
}


def hub_app(key: ECKey, url: list[str]) -> FastAPI:
    """What the adapter reads from the hub: its issuer, its keys, the item's schema."""
    app = FastAPI()

    @app.get("/.well-known/oauth-authorization-server")
    def metadata() -> dict[str, Any]:
        return {"issuer": url[0], "token_endpoint": f"{url[0]}/oauth/token"}

    @app.get("/.well-known/jwks.json")
    def jwks() -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False)]}

    @app.get("/v1/items/{item}")
    def item_entry(item: str) -> dict[str, Any]:
        return {"id": item, "owner": OWNER, "latest_version": 1}

    @app.get("/v1/items/{item}/versions/{version}")
    def version_entry(item: str, version: int) -> dict[str, Any]:
        return {"item": item, "version": version, "schema": SCHEMA}

    return app


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


def request_token(key: ECKey, issuer: str) -> bytes:
    """A request token as the hub signs it for the owner's adapter (docs/protocol.md §4)."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": OWNER,
        "sub": CONSUMER,
        "item": ITEM,
        "purpose": PURPOSE,
        "version": 1,
        "subject_sha256": base64url.encode(hashlib.sha256(SUBJECT.encode()).digest()),
        "request_id": uuid.uuid4().hex,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 110,
    }
    header = {"alg": "ES256", "kid": key.kid, "typ": "onceonly-req+jwt"}
    return jwt.encode(header, claims, key).encode("ascii")


def query_scope(token: bytes, body: bytes) -> dict[str, Any]:
    headers = [
        (b"host", b"adapter"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", b"Bearer " + token),
        (b"x-request-id", uuid.uuid4().hex.encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/v1/items/{ITEM}/records/query",
        "raw_path": f"/v1/items/{ITEM}/records/query".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 9101),
        "client": ("127.0.0.1", 50000),
    }


async def run_queries(
    app: Any, scopes: list[dict[str, Any]], *, body: bytes, concurrency: int
) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def query(scope: dict[str, Any]) -> None:
        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            raise SystemExit(f"the adapter answered {statuses}, not 200")

    async def client() -> None:
        while scopes:
            await query(scopes.pop())

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def measure(app: Any, tokens: list[bytes], options: argparse.Namespace) -> list[float]:
    body = json.dumps(
        {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
    ).encode()
    scopes = [query_scope(token, body) for token in tokens]
    async with app.router.lifespan_context(app):
        warmup = scopes[: options.warmup]  # the hub's keys and the schema fetched
        await run_queries(app, warmup, body=body, concurrency=options.concurrency)
        results = []
        batch = options.queries
        for repeat in range(options.repeat):
            start = options.warmup + repeat * batch
            started = time.process_time()
            part = scopes[start : start + batch]
            await run_queries(app, part, body=body, concurrency=options.concurrency)
            results.append((time.process_time() - started) * 1e6 / batch)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=20000, help="queries per repeat")
    parser.add_argument("--concurrency", type=int, default=16, help="queries in flight")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2000)
    options = parser.parse_args()
    key = ECKey.generate_key("P-256", auto_kid=True)
    url: list[str] = []
    with serving(hub_app(key, url)) as hub_url, tempfile.TemporaryDirectory() as directory:
        url.append(hub_url)
        config_path = Path(directory) / "adapter.toml"
        config_path.write_text(
            f'department = "{OWNER}"\nhub_url = "{hub_url}"\nlisten = "127.0.0.1:0"\n'
            f'data_dir = "{directory}/adapter"\n[items."{ITEM}"]\nsource = "store"\n'
        )
        config = load_config(config_path)
        with RecordStore(config.store_path) as store:
            store.put(ITEM, SUBJECT, RECORD, announce=False)
        count = options.warmup + options.queries * options.repeat
        tokens = [request_token(key, hub_url) for _ in range(count)]
        app = create_provider_app(config)
        results = uvloop.run(measure(app, tokens, options))
    print(
        f"adapter CPU per record query (µs, {options.queries} queries x {options.repeat},"
        f" {options.concurrency} in flight): " + ", ".join(f"{value:.1f}" for value in results)
    )


if __name__ == "__main__":
    main()
