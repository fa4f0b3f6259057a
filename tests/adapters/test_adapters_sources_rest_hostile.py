"""The REST source against a legacy system on loopback that answers badly.

Its ``timeout`` is a deadline for the whole answer, not per read: the system sends
its headers at once, then one byte every tenth of the timeout, so each read is quick
and httpx's timeout alone never fires. An answer nested 100,000 levels deep is an
invalid record, not a RecursionError. An answer longer than ``max_answer_bytes`` (4 MiB
by default) is an invalid record, read no further; so is an answer with a content
coding, which the source asks not to be sent (``Accept-Encoding: identity``).
"""

import gzip
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from onceonly.adapters import InvalidSourceRecord, RecordStore, RestSource, SourceUnavailable
from onceonly.adapters._rest import MAX_ANSWER_BYTES, RestItem

from tests.adapters.adapter_testing import serve

pytestmark = pytest.mark.anyio

TIMEOUT = 0.3  # the source's deadline for the whole answer
TRICKLE = 6.0  # seconds the system takes to finish its (valid) answer
STEP = TIMEOUT / 10  # between its bytes: no single read comes near the timeout


_BOMB = gzip.compress(gzip.compress(b'{"street": "' + b"a" * 64 * 2**20 + b'"}', 9), 9)


def trickling() -> FastAPI:
    app = FastAPI()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(int(TRICKLE / STEP)):
            yield b" "
            await anyio.sleep(STEP)
        yield b'{"street": "Pikk 1"}'

    @app.get("/deep/{subject}")
    async def deep(subject: str) -> Response:
        return Response(b"[" * 100_000 + b"]" * 100_000, media_type="application/json")

    @app.get("/endless/{subject}")
    async def endless(subject: str) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"street": "'
            while True:
                yield b"a" * 65536
                await anyio.sleep(0)

        return StreamingResponse(chunks(), media_type="application/json")

    @app.get("/bomb/{subject}")
    async def bomb(subject: str) -> Response:
        # 64 MiB of text, some 600 bytes on the wire (review 167)
        encoding = {"Content-Encoding": "gzip, gzip"}
        return Response(_BOMB, media_type="application/json", headers=encoding)

    @app.get("/coded/{subject}")
    async def coded(subject: str) -> Response:
        record = gzip.compress(b'{"street": "Pikk 1"}')
        return Response(record, media_type="application/json", headers={"Content-Encoding": "gzip"})

    @app.get("/identity/{subject}")
    async def identity(subject: str, request: Request) -> Response:
        asked = json.dumps({"asked": request.headers.get("accept-encoding")})
        encoding = {"Content-Encoding": "identity"}
        return Response(asked, media_type="application/json", headers=encoding)

    @app.get("/record/{subject}")
    async def record(subject: str) -> dict[str, str]:
        return {"street": "a" * 2000, "city": "Tallinn"}

    @app.get("/{path:path}")
    async def anything(path: str) -> StreamingResponse:
        return StreamingResponse(body(), media_type="application/json")

    return app


@pytest.fixture(scope="module")
def system() -> Iterator[str]:
    with serve(trickling()) as url:
        yield url


@pytest.mark.parametrize(
    "call",
    [
        lambda source: source.fetch("x.y", "38001085718"),
        lambda source: source.probe("x.y"),
    ],
    ids=["fetch", "probe"],
)
async def test_a_system_trickling_its_answer_is_cut_off_at_the_timeout(
    system: str, call: Any
) -> None:
    source = RestSource(f"{system}/people/{{subject}}", timeout=TIMEOUT, retries=2)
    try:
        with anyio.fail_after(TIMEOUT + 1.5):  # the deadline, and a margin for a busy machine
            with pytest.raises(SourceUnavailable):
                await call(source)
    finally:
        await source.aclose()


async def test_an_answer_nested_100000_deep_is_an_invalid_record(system: str) -> None:
    source = RestSource(f"{system}/deep/{{subject}}")
    try:
        with pytest.raises(InvalidSourceRecord, match="nested too deeply"):
            await source.fetch("x.y", "38001085718")
    finally:
        await source.aclose()


async def test_an_answer_past_max_answer_bytes_is_an_invalid_record(system: str) -> None:
    """Before, the whole answer was read into memory (review 161: 150 MiB, read whole)."""
    source = RestSource(f"{system}/endless/{{subject}}", timeout=30)
    started = time.monotonic()
    try:
        with pytest.raises(InvalidSourceRecord, match=f"larger than {MAX_ANSWER_BYTES} bytes"):
            await source.fetch("x.y", "38001085718")
    finally:
        await source.aclose()
    assert time.monotonic() - started < 10  # stopped reading, not timed out


async def test_a_compressed_answer_is_refused_unread_with_memory_bounded(system: str) -> None:
    """httpx decoded each network chunk through every coding before the length was
    checked: ``gzip, gzip`` swelled some 600 bytes to 64 MiB in one call (review 167)."""
    source = RestSource(f"{system}/bomb/{{subject}}", max_answer_bytes=1024, retries=0)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidSourceRecord) as caught:
            await source.fetch("x.y", "38001085718")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        await source.aclose()
    assert peak < 4 * 2**20, f"a 1 KiB cap allocated {peak / 2**20:.0f} MiB"
    assert "Content-Encoding" in str(caught.value)
    assert (caught.value.status, caught.value.problem_type) == (502, "source-invalid-record")


async def test_the_source_asks_for_no_content_coding_and_refuses_one(system: str) -> None:
    coded = RestSource(f"{system}/coded/{{subject}}", retries=0)
    identity = RestSource(f"{system}/identity/{{subject}}", retries=0)
    try:
        with pytest.raises(InvalidSourceRecord, match="Content-Encoding"):
            await coded.fetch("x.y", "38001085718")
        assert await identity.fetch("x.y", "38001085718") == {"asked": "identity"}
    finally:
        await coded.aclose()
        await identity.aclose()


async def test_max_answer_bytes_is_the_items_setting(system: str, tmp_path: Path) -> None:
    def item(**limit: int) -> RestItem:
        return RestItem(source="rest", url=f"{system}/record/{{subject}}", **limit)

    assert item().max_answer_bytes == MAX_ANSWER_BYTES
    with RecordStore(tmp_path / "s.db") as store:
        small, large = item(max_answer_bytes=1024).open(store=store), item().open(store=store)
    try:
        with pytest.raises(InvalidSourceRecord) as caught:
            await small.fetch("x.y", "38001085718")
        assert (caught.value.status, caught.value.problem_type) == (502, "source-invalid-record")
        assert await large.fetch("x.y", "38001085718") == {"street": "a" * 2000, "city": "Tallinn"}
    finally:
        await small.aclose()
        await large.aclose()
