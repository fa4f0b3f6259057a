"""RFC 3339 times as the audit log writes them: UTC, milliseconds, four-digit years."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from onceonly.hub.kit.clock import rfc3339_ms


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC), "2026-01-02T03:04:05.678Z"),
        (datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "2026-12-31T23:59:59.999Z"),
        (datetime(1, 1, 1, 0, 0, 0, 500, tzinfo=UTC), "0001-01-01T00:00:00.000Z"),
        (
            datetime(2026, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-02-28T23:30:00.000Z",
        ),
    ],
)
def test_a_time_is_written_in_utc_to_the_millisecond(moment: datetime, text: str) -> None:
    assert rfc3339_ms(moment) == text
