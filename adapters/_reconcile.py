"""Two-sided evidence: compare the adapter's own trail with the hub's audit log.

An owner's adapter records every request it served; a consumer keeps the hub's
receipt of every record it fetched (a `HubClient` with a ``trail``). The hub's log
must agree with both: every record the hub logged as delivered from this
department's items was served here, every record served here was logged by the
hub, and every receipt names an entry whose leaf hash matches. Any difference is
reported; none is "fixed", since each is evidence for someone to look at.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ._client import HubClient
from ._store import ReceiptRow, ServedEntry

__all__ = ["Difference", "reconcile"]


@dataclass(frozen=True)
class Difference:
    """One disagreement between this adapter's trail and the hub's log."""

    kind: str
    request_id: str
    detail: str

    def line(self) -> str:
        return f"{self.kind}: request {self.request_id}: {self.detail}"


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
) -> list[Difference]:
    """The differences between the hub's entries and this adapter's records. Pure."""
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
    differences.extend(_receipt_differences(receipts, logged))
    return differences


def _receipt_differences(
    receipts: Iterable[ReceiptRow], logged: dict[Any, dict[str, Any]]
) -> Iterator[Difference]:
    for receipt in receipts:
        found = logged.get(receipt.request_id)
        if found is None:
            yield Difference("receipt-not-logged", receipt.request_id, "no entry for this receipt")
        elif (found["index"], found["leaf_hash"]) != (receipt.index, receipt.leaf_hash):
            yield Difference(
                "receipt-mismatch",
                receipt.request_id,
                f"receipt says entry {receipt.index}, the log has {found['index']}"
                " or another leaf hash",
            )
        elif receipt.commitment and found["entry"].get("commitment") != receipt.commitment:
            yield Difference(
                "receipt-mismatch",
                receipt.request_id,
                f"entry {receipt.index} commits to another record than the one delivered here",
            )


def reconcile(
    *,
    hub: HubClient,
    served: Iterable[ServedEntry],
    receipts: Iterable[ReceiptRow],
    owned_items: set[str],
) -> list[Difference]:
    """Fetch the hub's side and compare it with this adapter's."""
    return compare(
        entries=list(hub_entries(hub)), served=served, receipts=receipts, owned_items=owned_items
    )
