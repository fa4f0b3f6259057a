"""Two-sided evidence: compare the adapter's own trail with the hub's audit log.

An owner's adapter records every request it served; a consumer keeps the hub's
receipt of every record it fetched (a `HubClient` with a ``trail``). The hub's log
must agree with both: every record the hub logged as delivered from this
department's items was served here, every record served here was logged by the
hub, every receipt names an entry whose leaf hash matches, and every entry says
what this department itself knows of the request: its item, purpose, consumer,
subject (as the pseudonym the hub's request token named, which the trail keeps keyed:
the entry's is keyed the same way to compare them) and time. The leaf hash
alone is not trusted: an entry's content is hashed again here. Any difference is
reported; none is "fixed", since each is evidence for someone to look at.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ._client import HubClient
from ._store import ReceiptRow, ServedEntry

__all__ = ["TIME_TOLERANCE", "Difference", "reconcile"]

# How far apart the entry's time and this trail's may be. Both are taken within one
# exchange: the adapter notes its time as it answers, the hub as it writes the entry
# after the answer (at most its owner_timeout later); the consumer notes its receipt
# as the answer arrives. The protocol lets clocks differ by 10 s (request tokens);
# a minute covers both with room, and still shows an entry moved in time.
TIME_TOLERANCE = timedelta(seconds=60)


@dataclass(frozen=True)
class Difference:
    """One disagreement between this adapter's trail and the hub's log; ``member``
    names the entry's member that differs (``entry-differs``)."""

    kind: str
    request_id: str
    detail: str
    member: str | None = None

    def line(self) -> str:
        member = f"{self.member}: " if self.member else ""
        return f"{self.kind}: request {self.request_id}: {member}{self.detail}"


def hub_entries(hub: HubClient) -> Iterator[dict[str, Any]]:
    """Every entry of the hub's log about this department's record queries, paged."""
    cursor: str | None = None
    while True:
        page = hub.department_entries(cursor=cursor)
        yield from page.get("entries", [])
        cursor = page.get("next_cursor")
        if not cursor:
            return


def compare(
    *,
    entries: Iterable[dict[str, Any]],
    served: Iterable[ServedEntry],
    receipts: Iterable[ReceiptRow],
    owned_items: set[str],
    department: str | None = None,
    tolerance: timedelta = TIME_TOLERANCE,
    key_pseudonym: Callable[[str], str] | None = None,
) -> list[Difference]:
    """The differences between the hub's entries and this adapter's records; each
    receipt's entry must name ``department`` (this adapter's) as the one that asked.
    ``key_pseudonym`` makes of an entry's ``subject`` what ``served`` keeps of it
    (the store's `TrailKey.pseudonym`); None: ``served`` keeps pseudonyms as they are.
    Pure."""
    logged = {e["entry"].get("request_id"): e for e in entries}
    served_ok = {s.request_id: s for s in served if s.outcome == "ok" and s.request_id}
    differences = [
        Difference(
            "logged-not-served", rid, f"the hub logged {e['entry'].get('item')} as delivered"
        )
        for rid, e in logged.items()
        if e["entry"].get("item") in owned_items
        and e["entry"].get("outcome") == "ok"
        and rid not in served_ok
    ]
    for rid, entry in served_ok.items():
        found = logged.get(rid)
        if found is None or found["entry"].get("outcome") != "ok":
            outcome = "no entry" if found is None else f"outcome {found['entry'].get('outcome')}"
            differences.append(
                Difference(
                    "served-not-logged", rid, f"served {entry.item} here; the hub has {outcome}"
                )
            )
        else:
            differences.extend(
                _served_differences(entry, found, tolerance=tolerance, key=key_pseudonym)
            )
    differences.extend(
        _receipt_differences(receipts, logged, department=department, tolerance=tolerance)
    )
    return differences


def _served_differences(
    served: ServedEntry,
    found: dict[str, Any],
    *,
    tolerance: timedelta,
    key: Callable[[str], str] | None,
) -> Iterator[Difference]:
    """What the owner's trail knows of a request it served, against the hub's entry
    (its ``subject`` made by ``key`` what the trail keeps of a pseudonym)."""
    rid = served.request_id or ""
    if _content_hash(found) not in (None, found["leaf_hash"]):
        yield _differs(rid, "leaf", f"entry {found['index']} does not hash to its leaf hash")
    subject = found["entry"].get("subject")
    if key is not None and isinstance(subject, str):
        found = {**found, "entry": {**found["entry"], "subject": key(subject)}}
    known = {
        "item": served.item,
        "purpose": served.purpose,
        "department": served.consumer,  # who asked: the department the entry names
        "subject": served.subject_pseudonym,  # trails from before it keep None
    }
    yield from _entry_differences(rid, found, known=known, time=served.time, tolerance=tolerance)


def _receipt_differences(
    receipts: Iterable[ReceiptRow],
    logged: dict[Any, dict[str, Any]],
    *,
    department: str | None,
    tolerance: timedelta,
) -> Iterator[Difference]:
    for receipt in receipts:
        found = logged.get(receipt.request_id)
        if found is None:
            yield Difference("receipt-not-logged", receipt.request_id, "no entry for this receipt")
            continue
        mismatch = _receipt_mismatch(receipt, found)
        if mismatch is not None:
            yield Difference("receipt-mismatch", receipt.request_id, mismatch)
        known = {"item": receipt.item, "purpose": receipt.purpose, "department": department}
        yield from _entry_differences(
            receipt.request_id, found, known=known, time=receipt.time, tolerance=tolerance
        )


def _receipt_mismatch(receipt: ReceiptRow, found: dict[str, Any]) -> str | None:
    """Why the entry is not the one the receipt names, if it is not."""
    if (found["index"], found["leaf_hash"]) != (receipt.index, receipt.leaf_hash):
        return (
            f"receipt says entry {receipt.index}, the log has {found['index']} or another leaf hash"
        )
    if receipt.commitment and found["entry"].get("commitment") != receipt.commitment:
        return f"entry {receipt.index} commits to another record than the one delivered here"
    if _content_hash(found) not in (None, receipt.leaf_hash):
        return f"entry {receipt.index} was changed: it no longer hashes to the receipt's leaf hash"
    return None


def _entry_differences(
    request_id: str,
    found: dict[str, Any],
    *,
    known: Mapping[str, str | None],
    time: str | None,
    tolerance: timedelta,
) -> Iterator[Difference]:
    """Each member the department knows (not None) that the entry says otherwise."""
    entry, index = found["entry"], found["index"]
    for member, mine in known.items():
        theirs = entry.get(member)
        if mine is None or theirs == mine:
            continue
        if member == "subject":  # pseudonyms: say that they differ, not what they are
            detail = f"entry {index} names another subject than the hub's request token did"
        else:
            detail = f"entry {index} says {theirs!r}, this adapter's trail {mine!r}"
        yield _differs(request_id, member, detail)
    if time is not None and not _close(entry.get("time"), time, tolerance):
        detail = (
            f"entry {index} says {entry.get('time')!r}, this adapter's trail {time!r}"
            f" (more than {tolerance.total_seconds():g} s apart)"
        )
        yield _differs(request_id, "time", detail)


def _differs(request_id: str, member: str, detail: str) -> Difference:
    return Difference("entry-differs", request_id, detail, member=member)


def _close(theirs: object, mine: str, tolerance: timedelta) -> bool:
    """Both are RFC 3339 times no more than ``tolerance`` apart."""
    try:
        apart = datetime.fromisoformat(str(theirs)) - datetime.fromisoformat(mine)
    except (TypeError, ValueError):  # a time without an offset cannot be compared
        return False
    return abs(apart) <= tolerance


def _content_hash(found: dict[str, Any]) -> str | None:
    """The RFC 6962 leaf hash (SHA-256 of 0x00 ‖ leaf) of the entry's leaf bytes, base64,
    as the hub writes leaf hashes; None when the answer holds no leaf."""
    leaf = found.get("leaf")
    if not isinstance(leaf, str):
        return None
    try:
        raw = base64.b64decode(leaf, validate=True)
    except (binascii.Error, ValueError):
        return "(not base64)"
    return base64.b64encode(hashlib.sha256(b"\x00" + raw).digest()).decode()


def reconcile(
    *,
    hub: HubClient,
    served: Iterable[ServedEntry],
    receipts: Iterable[ReceiptRow],
    owned_items: set[str],
    department: str | None = None,
    tolerance: timedelta = TIME_TOLERANCE,
    key_pseudonym: Callable[[str], str] | None = None,
) -> list[Difference]:
    """Fetch the hub's side and compare it with this adapter's (see `compare`: pass
    the store's ``trail_key.pseudonym`` as ``key_pseudonym`` with its ``served``)."""
    return compare(
        entries=list(hub_entries(hub)),
        served=served,
        receipts=receipts,
        owned_items=owned_items,
        department=department,
        tolerance=tolerance,
        key_pseudonym=key_pseudonym,
    )
