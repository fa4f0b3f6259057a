"""The store refuses a record whose served answer the hub would refuse as too large
(review 167): the adapter's limit is the hub's."""

import json

from onceonly.adapters._validation import MAX_SERVED_ANSWER_BYTES, answer_size_problem
from onceonly.hub.exchange.owner import MAX_ANSWER_BYTES

ITEM = "population.address"


def test_the_adapters_limit_is_the_hubs() -> None:
    assert MAX_SERVED_ANSWER_BYTES == MAX_ANSWER_BYTES


def served(record: dict[str, str], version: int) -> bytes:
    """The answer's bytes as the provider sends them (`_http.send_json`)."""
    answer = {"item": ITEM, "version": version, "record": record}
    text = json.dumps(answer, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def test_a_record_is_refused_when_its_answer_with_the_widest_version_is_over_the_limit() -> None:
    overhead = len(served({"street": ""}, 2**53 - 1))
    fits = {"street": "a" * (MAX_ANSWER_BYTES - overhead)}
    over = {"street": "a" * (MAX_ANSWER_BYTES - overhead + 1)}
    wide = {"street": "ä" * ((MAX_ANSWER_BYTES - overhead) // 2 + 1)}  # 2 bytes in UTF-8

    assert len(served(fits, 2**53 - 1)) == MAX_ANSWER_BYTES
    assert answer_size_problem(ITEM, fits) is None
    assert answer_size_problem(ITEM, over) == (
        f"(record): its answer would be {MAX_ANSWER_BYTES + 1} bytes; the hub refuses"
        f" answers over {MAX_ANSWER_BYTES}"
    )
    assert answer_size_problem(ITEM, wide) is not None
