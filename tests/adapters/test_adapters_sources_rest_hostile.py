"""The REST source against a legacy system on loopback that answers badly.

Its ``timeout`` is a deadline for the whole answer, not per read: the system sends
its headers at once, then one byte every tenth of the timeout, so each read is quick
and httpx's timeout alone never fires. An answer nested 100,000 levels deep is an
invalid record, not a RecursionError.
"""

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse

from onceonly.adapters import InvalidSourceRecord, RestSource, SourceUnavailable

from tests.adapters.adapter_testing import serve

pytestmark = pytest.mark.anyio

TIMEOUT = 0.3  # the source's deadline for the whole answer
TRICKLE = 6.0  # seconds the system takes to finish its (valid) answer
STEP = TIMEOUT / 10  # between its bytes: no single read comes near the timeout


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
