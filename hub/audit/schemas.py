"""Audit API bodies (DESIGN.md, "Audit log": a contract)."""

from typing import Any

from pydantic import BaseModel


class EntryOut(BaseModel):
    index: int
    leaf: str
    leaf_hash: str
    entry: dict[str, Any]


class EntryPage(BaseModel):
    entries: list[EntryOut]
    next_cursor: str | None
