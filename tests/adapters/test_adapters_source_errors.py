"""A department's own source may word its errors as it likes, and quote the subject:
the adapter tells only their type, in its answer and in its log (docs/adapters.md,
"Python"). A Python source raising ``InvalidSourceRecord(f"... {subject} ...")`` put
the subject in the 502's detail, which the hub receives, and in an ERROR log line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from onceonly.adapters import (
    CallableSource,
    InvalidSourceRecord,
    SourceUnavailable,
    create_provider_app,
    load_config,
)

from tests.adapters.adapter_testing import (
    CONSUMER,
    ITEM,
    PURPOSE,
    SUBJECT,
    HubDouble,
    serve,
    write_config,
)


def invalid(item: str, subject: str) -> dict[str, Any]:
    raise InvalidSourceRecord(f"the death record of {subject} has no date")


async def unavailable(item: str, subject: str) -> dict[str, Any]:
    raise SourceUnavailable(f"register locked while {subject!r} is edited")


class OwnSource:
    """A department's own RecordSource."""

    async def fetch(self, item: str, subject: str) -> dict[str, Any] | None:
        raise InvalidSourceRecord(f"two people share code {subject}")


SOURCES = {
    "callable, 502": (CallableSource(invalid), 502, "source-invalid-record", "InvalidSourceRecord"),
    "async callable, 503": (
        CallableSource(unavailable),
        503,
        "source-unavailable",
        "SourceUnavailable",
    ),
    "own RecordSource, 502": (OwnSource(), 502, "source-invalid-record", "InvalidSourceRecord"),
}


@pytest.mark.parametrize("case", SOURCES.values(), ids=SOURCES.keys())
def test_a_source_error_quoting_the_subject_tells_only_its_type(
    tmp_path: Path, hub: HubDouble, caplog: pytest.LogCaptureFixture, case: Any
) -> None:
    source, status, slug, kind = case
    config = load_config(write_config(tmp_path, hub_url=hub.url))
    body = {"subject": SUBJECT, "purpose": PURPOSE, "consumer": CONSUMER, "version": 1}
    headers = {"Authorization": f"Bearer {hub.request_token()}"}
    with (
        caplog.at_level(logging.INFO),
        serve(create_provider_app(config, sources={ITEM: source})) as url,
    ):
        answer = httpx.post(f"{url}/v1/items/{ITEM}/records/query", json=body, headers=headers)

    assert answer.status_code == status, answer.text
    problem = answer.json()
    assert problem["type"] == f"urn:onceonly:problem:{slug}"
    assert problem["detail"] == f"the record source raised {kind} (its message is withheld)"
    assert SUBJECT not in answer.text
    logged = [record.getMessage() for record in caplog.records]
    assert f"source for {ITEM} failed: the record source raised {kind}" in " ".join(logged)
    assert not [line for line in logged if SUBJECT in line]
