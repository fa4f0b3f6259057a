"""No subject changes the path the REST source asks its system for (docs/adapters.md,
"REST"): a legacy system on loopback keeps the raw path of every request it gets.

httpx removes dot segments from a URL (RFC 3986 §5.2.4), so a subject of ``..`` made
``/api/v2/persons/{subject}`` into ``GET /api/v2``, with the adapter's credentials; and
nginx in front of the system (``proxy_pass http://backend/api/;``) decodes ``%2F`` and
then resolves dot segments, so ``../admin``, sent as ``..%2Fadmin``, reached it as
``GET /api/v2/admin``. A subject made only of dots, or holding ``/``, ``\\`` or ``%``, is
not asked for (no record); every other subject arrives as the one segment after
``/persons/``, percent-encoded, and decodes back to itself.
"""

from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from starlette.types import Receive, Scope, Send

from onceonly.adapters import RestSource

from tests.adapters.adapter_testing import serve

pytestmark = pytest.mark.anyio

PREFIX = "/api/v2/persons/"
NOT_ASKED = [
    ".",
    "..",
    "...",
    "....",
    "../admin",
    "x/../../admin",
    "a/b",
    "..%2Fadmin",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "..%2f",
    "100%",
    "..\\",
    "..\\admin",
    "a\\b",
]
LOOK_LIKE_DOTS = [
    "..;",
    "\u2024\u2024",  # ONE DOT LEADER
    "\uff0e\uff0e",  # FULLWIDTH FULL STOP
    "\u3002",  # IDEOGRAPHIC FULL STOP
    "a..b",
    "?x=..",
    "#..",
    ".a",
    "a.",
]


class LegacySystem:
    """Answers every GET with a JSON object, keeping each request's raw path."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.paths.append(scope["raw_path"].decode("ascii"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b'{"code": "another endpoint"}'})


@pytest.fixture(scope="module")
def system() -> Iterator[tuple[LegacySystem, str]]:
    legacy = LegacySystem()
    with serve(legacy) as url:  # type: ignore[arg-type]
        yield legacy, url


@pytest.fixture
def legacy(system: tuple[LegacySystem, str]) -> tuple[LegacySystem, str]:
    system[0].paths.clear()
    return system


@pytest.mark.parametrize("subject", NOT_ASKED)
async def test_a_subject_that_could_change_the_path_is_no_record_and_not_asked_for(
    legacy: tuple[LegacySystem, str], subject: str
) -> None:
    system, url = legacy
    source = RestSource(f"{url}{PREFIX}{{subject}}", headers={"Authorization": "Bearer s"})
    try:
        assert await source.fetch("person.identity", subject) is None
    finally:
        await source.aclose()
    assert system.paths == []


@pytest.mark.parametrize("subject", LOOK_LIKE_DOTS)
async def test_every_other_subject_is_one_segment_under_the_path(
    legacy: tuple[LegacySystem, str], subject: str
) -> None:
    system, url = legacy
    source = RestSource(f"{url}{PREFIX}{{subject}}", retries=0)
    try:
        await source.fetch("person.identity", subject)
    finally:
        await source.aclose()
    (path,) = system.paths
    assert path.startswith(PREFIX)
    segment = path.removeprefix(PREFIX)
    assert not set("/?#") & set(segment)
    assert unquote(segment) == subject
