"""Reconcile's comparison, as tables: what each side knows of a request, against the
hub's entry (onceonly.adapters._reconcile.compare is pure)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest

from onceonly.adapters._reconcile import TIME_TOLERANCE, Difference, compare
from onceonly.adapters._store import ReceiptRow, ServedEntry, TrailKey

ITEM, CONSUMER, OWNER = "person.residential-address", "social-welfare", "civil-registry"
PSEUDONYM = "a1" * 32
WHEN = "2026-11-28T10:00:00.000Z"


def _found(**change: Any) -> dict[str, Any]:
    """The hub's answer for one entry, with its leaf and a leaf hash that matches it."""
    entry = {
        "v": 2,
        "action": "record.query",
        "outcome": "ok",
        "request_id": "r1",
        "item": ITEM,
        "purpose": "benefit-eligibility",
        "department": CONSUMER,
        "subject": PSEUDONYM,
        "time": WHEN,
        **change,
    }
    leaf = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    leaf_hash = base64.b64encode(hashlib.sha256(b"\x00" + leaf).digest()).decode()
    return {"index": 7, "leaf_hash": leaf_hash, "leaf": base64.b64encode(leaf).decode(),
            "entry": entry}  # fmt: skip


def _served(**change: Any) -> ServedEntry:
    values: dict[str, Any] = {
        "request_id": "r1",
        "time": "2026-11-28T09:59:59.990Z",
        "item": ITEM,
        "consumer": CONSUMER,
        "purpose": "benefit-eligibility",
        "subject_sha256": "h",
        "outcome": "ok",
        "reason": None,
        "subject_pseudonym": PSEUDONYM,
        **change,
    }
    return ServedEntry(**values)


def _receipt(found: dict[str, Any], **change: Any) -> ReceiptRow:
    values: dict[str, Any] = {
        "request_id": "r1",
        "item": ITEM,
        "purpose": "benefit-eligibility",
        "subject_sha256": "h",
        "index": found["index"],
        "leaf_hash": found["leaf_hash"],
        "time": "2026-11-28T10:00:00.020Z",
        **change,
    }
    return ReceiptRow(**values)


def _owner_side(found: dict[str, Any], served: ServedEntry) -> list[tuple[str, str | None]]:
    differences = compare(entries=[found], served=[served], receipts=[], owned_items={ITEM})
    return [(d.kind, d.member) for d in differences]


def _consumer_side(found: dict[str, Any], receipt: ReceiptRow) -> list[tuple[str, str | None]]:
    differences = compare(
        entries=[found], served=[], receipts=[receipt], owned_items=set(), department=CONSUMER
    )
    return [(d.kind, d.member) for d in differences]


@pytest.mark.parametrize(
    ("served", "expected"),
    [
        (_served(), []),
        (_served(purpose="tax-assessment"), [("entry-differs", "purpose")]),
        (_served(item="person.identity"), [("entry-differs", "item")]),
        (_served(consumer="tax"), [("entry-differs", "department")]),
        (_served(subject_pseudonym="b2" * 32), [("entry-differs", "subject")]),
        (_served(subject_pseudonym=None), []),  # a trail from before pseudonyms: not compared
        (_served(time="2026-11-28T10:00:59.000Z"), []),  # within the tolerance
        (_served(time="2026-11-28T10:01:00.001Z"), [("entry-differs", "time")]),
        (_served(time="2026-11-28T08:59:59.000Z"), [("entry-differs", "time")]),
        (_served(time="2026-11-28T11:00:00.000+01:00"), []),  # the same instant
        (_served(time="2026-11-28T10:00:00"), [("entry-differs", "time")]),  # no offset
    ],
)
def test_the_owner_compares_each_member_it_knows(
    served: ServedEntry, expected: list[tuple[str, str | None]]
) -> None:
    assert _owner_side(_found(), served) == expected


def test_an_entry_that_does_not_hash_to_its_leaf_hash_is_reported_by_the_owner() -> None:
    found = {**_found(), "leaf_hash": _found(purpose="x")["leaf_hash"]}
    assert _owner_side(found, _served()) == [("entry-differs", "leaf")]


def test_an_entry_changed_after_its_receipt_is_reported_by_the_consumer() -> None:
    receipt = _receipt(_found())
    changed = _found(purpose="tax-assessment")
    changed["leaf_hash"] = receipt.leaf_hash  # the hub still states the old leaf hash
    assert _consumer_side(changed, receipt) == [
        ("receipt-mismatch", None),
        ("entry-differs", "purpose"),
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, []),
        ({"item": "person.identity"}, [("entry-differs", "item")]),
        ({"department": "tax"}, [("entry-differs", "department")]),
        ({"time": "2026-11-28T12:00:00.000Z"}, [("entry-differs", "time")]),
        ({"subject": "b2" * 32}, []),  # the consumer keeps no pseudonym to compare
    ],
)
def test_the_consumer_compares_each_member_it_knows(
    change: dict[str, str], expected: list[tuple[str, str | None]]
) -> None:
    found = _found(**change)
    assert _consumer_side(found, _receipt(found)) == expected


def test_the_tolerance_is_a_minute_and_can_be_chosen() -> None:
    assert timedelta(seconds=60) == TIME_TOLERANCE
    late = _served(time="2026-11-28T10:00:05.000Z")
    strict = compare(
        entries=[_found()],
        served=[late],
        receipts=[],
        owned_items={ITEM},
        tolerance=timedelta(seconds=1),
    )
    assert [(d.kind, d.member) for d in strict] == [("entry-differs", "time")]
    assert "more than 1 s apart" in strict[0].line()
    assert strict[0].line().startswith("entry-differs: request r1: time: entry 7 says")


def test_a_keyed_trail_is_compared_with_the_entry_keyed_the_same_way() -> None:
    """The owner's store keeps the hub's pseudonym keyed (decision 0064): reconcile
    keys the entry's ``subject`` under the same key, and still tells another subject
    apart, without naming either."""
    key = TrailKey(bytes(range(32)))
    keyed = _served(subject_pseudonym=key.pseudonym(PSEUDONYM))
    other = _served(subject_pseudonym=key.pseudonym("b2" * 32))

    def owner_side(served: ServedEntry) -> list[Difference]:
        return compare(
            entries=[_found()],
            served=[served],
            receipts=[],
            owned_items={ITEM},
            key_pseudonym=key.pseudonym,
        )

    assert owner_side(keyed) == []
    (differs,) = owner_side(other)
    assert (differs.kind, differs.member) == ("entry-differs", "subject")
    assert PSEUDONYM not in differs.line()
    assert "b2" * 32 not in differs.line()
    # without the key, the keyed trail names another subject than every entry
    assert _owner_side(_found(), keyed) == [("entry-differs", "subject")]
