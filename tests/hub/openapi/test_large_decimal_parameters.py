"""An integer in a query or a path written in its one spelling but too large is refused
as too large, naming the bound, whatever its number of digits (``kit.strict``): a value
of 21 digits or more was told it was not written in decimal digits. A value of 60,000
digits is refused as fast as any other, never parsed."""

import time

import httpx
import pytest

from onceonly.hub.audit.endpoints import MAX_SIZE

from tests.hub_testing import RunningHub, problem_type

INCLUSION = "/v1/audit/proof/inclusion"


@pytest.mark.parametrize("digits", [17, 20, 21, 64, 65, 4300, 4301, 60_000])
def test_a_decimal_too_large_is_refused_against_its_bound(hub: RunningHub, digits: int) -> None:
    started = time.perf_counter()
    response = httpx.get(f"{hub.url}{INCLUSION}", params={"index": 0, "tree_size": "9" * digits})
    assert time.perf_counter() - started < 1.0
    assert response.status_code == 400, response.text
    assert problem_type(response) == "invalid-request"
    detail = response.text
    assert f"less than or equal to {MAX_SIZE}" in detail
    assert "decimal digits" not in detail


@pytest.mark.parametrize("value", ["0" + "9" * 30, "9" * 30 + "x", "+" + "9" * 30])
def test_a_long_value_in_another_spelling_is_still_not_decimal_digits(
    hub: RunningHub, value: str
) -> None:
    response = httpx.get(f"{hub.url}{INCLUSION}", params={"index": 0, "tree_size": value})
    assert response.status_code == 400, response.text
    assert "without leading zeros" in response.text
