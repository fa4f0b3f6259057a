"""The clock the hub reads time from, and the one tests move (hub/kit/clock.py)."""

from datetime import UTC, datetime, timedelta

import pytest

from onceonly.hub.kit.clock import SYSTEM_CLOCK, ManualClock

START = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_manual_clock_stands_still_until_advanced() -> None:
    clock = ManualClock(START)
    assert clock.now() == START
    assert clock.time() == START.timestamp()
    assert clock.monotonic() == 0.0


def test_advancing_moves_wall_time_and_elapsed_time_together() -> None:
    clock = ManualClock(START)
    clock.advance(90.5)
    assert clock.now() == START + timedelta(seconds=90.5)
    assert clock.time() == START.timestamp() + 90.5
    assert clock.monotonic() == 90.5


def test_a_clock_refuses_to_go_back() -> None:
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)
    assert clock.now() == START


def test_a_manual_clock_reads_an_offset_start_in_utc() -> None:
    plus_two = START.astimezone(datetime.fromisoformat("2030-01-01T00:00:00+02:00").tzinfo)
    assert ManualClock(plus_two).now().tzinfo == UTC


def test_the_system_clock_reads_aware_utc_wall_time() -> None:
    before = datetime.now(UTC)
    now = SYSTEM_CLOCK.now()
    assert now.tzinfo == UTC
    assert before <= now <= datetime.now(UTC)
    assert abs(SYSTEM_CLOCK.time() - now.timestamp()) < 5
