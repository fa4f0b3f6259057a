"""The roll-up sums of audit entries: what the report adds, entry by entry. Pure."""

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from onceonly.hub.reports import periods

ACTION = "record.query"
_ITEM_MAX, _DEPARTMENT_MAX, _SUBJECT_MAX, _SHORT_MAX = 128, 64, 64, 64

ExchangeKey = tuple[str, str, str, str, str, str, bool]  # period, item, consumer, purpose,
# outcome, reason, reached


@dataclass
class Tally:
    """Sums over some entries, by roll-up key."""

    exchanges: Counter[ExchangeKey] = field(default_factory=Counter)
    owner_times: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    records: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def __bool__(self) -> bool:
        return bool(self.exchanges or self.owner_times or self.records)

    def add(self, other: "Tally") -> None:
        """Add ``other``'s sums to these."""
        self.exchanges.update(other.exchanges)
        self.owner_times.update(other.owner_times)
        self.records.update(other.records)


def _text(entry: dict[str, Any], name: str, limit: int) -> str:
    """A member as a key: ``""`` when missing, not text, or longer than its column."""
    value = entry.get(name)
    return value if isinstance(value, str) and len(value) <= limit else ""


def tally(leaves: Iterable[bytes]) -> Tally:
    """The roll-up sums of the record-query entries among ``leaves`` (the exact leaf
    bytes); other actions and leaves that are not entries are passed over."""
    sums = Tally()
    for leaf in leaves:
        try:  # a leaf is UTF-8 (RFC 8785): json.loads would first guess its encoding
            entry = json.loads(leaf.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            continue
        if not isinstance(entry, dict) or entry.get("action") != ACTION:
            continue
        time = entry.get("time")
        if not isinstance(time, str) or len(time) < 7:
            continue
        item = _text(entry, "item", _ITEM_MAX)
        outcome = _text(entry, "outcome", 16)
        owner_ms = entry.get("owner_ms")
        reached = bool(entry.get("owner"))
        subject = _text(entry, "subject", _SUBJECT_MAX)
        rest = (
            _text(entry, "department", _DEPARTMENT_MAX),
            _text(entry, "purpose", _SHORT_MAX),
            outcome,
            _text(entry, "reason", _SHORT_MAX),
            reached,
        )
        timed = owner_ms if reached and isinstance(owner_ms, int) and owner_ms >= 0 else None
        counted = outcome == "ok" and subject
        for period in periods.keys_of(time):
            sums.exchanges[(period, item, *rest)] += 1
            if timed is not None:
                sums.owner_times[(period, item, timed)] += 1
            if counted:
                sums.records[(period, item, subject)] += 1
    return sums
