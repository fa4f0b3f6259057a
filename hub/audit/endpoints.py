"""Audit routes. The Merkle proofs and checkpoints join these in the audit issue."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from hub.audit import service
from hub.audit.dependencies import CurrentAudit, audited
from hub.audit.schemas import EntryOut, EntryPage
from hub.auth.dependencies import AdminDep
from hub.db import SessionDep
from hub.keys import KeysDep

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("/entries/{index}", response_model=EntryOut)
async def get_entry(index: Annotated[int, Path(ge=0, le=2**62)], session: SessionDep) -> EntryOut:
    return await service.entry_at(session, index)


@router.get("/entries", response_model=EntryPage, dependencies=[Depends(audited("audit.query"))])
async def find_entries(
    session: SessionDep,
    _admin: AdminDep,
    scope: CurrentAudit,
    keys: KeysDep,
    subject: str | None = Query(default=None, max_length=256),
    department: str | None = Query(default=None, max_length=64),
    item: str | None = Query(default=None, max_length=128),
    action: str | None = Query(default=None, max_length=64),
    outcome: str | None = Query(default=None, max_length=16),
    cursor: str | None = Query(default=None, max_length=20, pattern=r"^[0-9]+$"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> EntryPage:
    return await service.find(
        session,
        scope=scope,
        keys=keys,
        query=service.EntryQuery(
            subject=subject, department=department, item=item, action=action, outcome=outcome
        ),
        cursor=int(cursor) if cursor else None,
        limit=limit,
    )
