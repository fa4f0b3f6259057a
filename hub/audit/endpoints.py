"""Audit routes (DESIGN.md, "Audit log (contract)"): public in shape, private in content.

Checkpoints, their history, the verifier key, proofs and leaf hashes (one by one and
in ranges) are public: a monitor outside the hub needs nothing but the verifier key.
Entry content goes only to callers entitled to it (onceonly.hub.audit.readers; the matrix is in
docs/audit.md): auditors, and a department's clients for the entries that name it.
Every read of content, every query and every export is itself an audit entry.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from onceonly.hub.audit import checkpoints, service
from onceonly.hub.audit.dependencies import (
    AuditReaderDep,
    CurrentAudit,
    EntryFilterDep,
    ReadScope,
    audited,
)
from onceonly.hub.audit.exceptions import (
    AuditLogDamaged,
    EntryNotFound,
    InvalidTreeRequest,
    SubjectSearchesThrottled,
)
from onceonly.hub.audit.schemas import CheckpointPage, EntryOut, EntryPage, ProofOut
from onceonly.hub.auth.dependencies import CurrentCaller
from onceonly.hub.auth.exceptions import InsufficientScope
from onceonly.hub.auth.scopes import AUDIT_READ_SCOPE
from onceonly.hub.dependencies import (
    CheckpointerDep,
    HubDep,
    ReadSessionDep,
    ReadSessionsDep,
    SessionDep,
)
from onceonly.hub.kit.problems import Unavailable, problems
from onceonly.hub.kit.strict import DecimalDigits
from onceonly.hub.ops.openapi import MACHINE_SCHEME
from onceonly.hub.people.dependencies import AuditorDep
from onceonly.hub.registry import repository as registry

router = APIRouter(prefix="/v1/audit", tags=["audit"])
# Entry content is personal data (who, about whom, why): no cache keeps an answer that
# may hold it (RFC 9111 §5.2.2.5), the public shape included, which varies by caller.
NO_STORE = {"Cache-Control": "no-store"}


# Sizes and indexes stay within I-JSON's exact integers (RFC 7493 §2.2): they are
# written into audit entries (what was asked), and RFC 8785 takes no larger one.
MAX_SIZE = 2**53 - 1
# Query parameters are strict (onceonly.hub.kit.strict): decimal integers, RFC 3339 times.
Limit = Annotated[int, Query(ge=1, le=1000), DecimalDigits]
Size = Annotated[int, Query(ge=0, le=MAX_SIZE), DecimalDigits]
NOTE_TYPE = "text/plain; charset=utf-8"
# The index of the last entry of the previous page (``next_cursor``).
Cursor = Annotated[int | None, Query(ge=0, le=MAX_SIZE), DecimalDigits]


@router.get("/checkpoint", response_class=PlainTextResponse, responses=problems(Unavailable))
async def get_checkpoint(session: SessionDep, checkpointer: CheckpointerDep) -> PlainTextResponse:
    """The latest signed checkpoint (C2SP tlog-checkpoint in a C2SP signed note); 503
    while none is stored yet."""
    note = await checkpointer.latest_note(session)
    return PlainTextResponse(note, media_type=NOTE_TYPE)


@router.get("/verifier-key", response_class=PlainTextResponse)
async def get_verifier_key(checkpointer: CheckpointerDep) -> PlainTextResponse:
    """The signed-note verifier key of the checkpoints: ``<name>+<key ID>+<key>``."""
    return PlainTextResponse(f"{checkpointer.signer.verifier}\n", media_type=NOTE_TYPE)


@router.get("/checkpoints", response_model=CheckpointPage)
async def list_checkpoints(
    session: SessionDep,
    since_size: Size = 0,
    limit: Limit = 100,
) -> CheckpointPage:
    return await checkpoints.history(session, since_size=since_size, limit=limit)


@router.get(
    "/proof/inclusion",
    response_model=ProofOut,
    responses=problems(InvalidTreeRequest, AuditLogDamaged),
)
async def get_inclusion_proof(session: SessionDep, index: Size, tree_size: Size) -> ProofOut:
    """RFC 9162 §2.1.3: the audit path of entry ``index`` in the tree of ``tree_size``."""
    return await service.inclusion(session, index=index, tree_size=tree_size)


@router.get(
    "/proof/consistency",
    response_model=ProofOut,
    responses=problems(InvalidTreeRequest, AuditLogDamaged),
)
async def get_consistency_proof(
    session: SessionDep,
    old_size: Annotated[int, Query(alias="from", ge=0, le=MAX_SIZE), DecimalDigits],
    new_size: Annotated[int, Query(alias="to", ge=0, le=MAX_SIZE), DecimalDigits],
) -> ProofOut:
    """RFC 9162 §2.1.4: proof that the tree of size ``to`` extends the one of ``from``."""
    return await service.consistency(session, old_size=old_size, new_size=new_size)


@router.get("/leaves", response_model=EntryPage)
async def get_leaves(
    session: SessionDep,
    reader: AuditReaderDep,
    scope: ReadScope,
    response: Response,
    start: Size = 0,
    limit: Limit = 1000,
) -> EntryPage:
    """Consecutive leaf hashes from ``start``, for monitors that recompute every root;
    with the content of the entries the caller is entitled to."""
    response.headers.update(NO_STORE)
    return await service.entries_from(session, start=start, limit=limit, reader=reader, scope=scope)


@router.get(
    "/entries/{index}",
    response_model=EntryOut,
    responses=problems(EntryNotFound),
)
async def get_entry(
    index: Annotated[int, Path(ge=0, le=MAX_SIZE), DecimalDigits],
    session: SessionDep,
    reader: AuditReaderDep,
    scope: ReadScope,
    response: Response,
) -> EntryOut:
    """The entry's leaf hash; its leaf and content for a caller entitled to them."""
    response.headers.update(NO_STORE)
    return await service.entry_at(session, index=index, reader=reader, scope=scope)


@router.get(
    "/entries",
    response_model=EntryPage,
    # the read replica, when one is configured; a person's searches by subject
    responses=problems(Unavailable, SubjectSearchesThrottled),
    dependencies=[Depends(audited("audit.query"))],
)
async def find_entries(
    session: ReadSessionDep,
    auditor: AuditorDep,
    scope: CurrentAudit,
    where: EntryFilterDep,
    response: Response,
    hub: HubDep,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> EntryPage:
    """The entries that match, oldest first. A ``subject`` counts against the person's
    hourly budget of subjects, once an hour, whatever the page (decision 0086)."""
    response.headers.update(NO_STORE)
    if where.subject is not None:
        await hub.subject_searches.spend(hub.engine, auditor.name, where.subject, clock=hub.clock)
    return await service.find(session, scope=scope, where=where, cursor=cursor, limit=limit)


@router.get(
    "/department-entries",
    response_model=EntryPage,
    responses=problems(InsufficientScope),
    openapi_extra={"security": [{MACHINE_SCHEME: [AUDIT_READ_SCOPE]}]},
    dependencies=[Depends(audited("audit.department-query"))],
)
async def department_entries(
    session: SessionDep,
    caller: CurrentCaller,
    scope: CurrentAudit,
    response: Response,
    cursor: Cursor = None,
    limit: Limit = 1000,
) -> EntryPage:
    """For a department's client: the record queries it made, and those made of its items."""
    response.headers.update(NO_STORE)
    caller.require_scope(AUDIT_READ_SCOPE)
    return await service.department_entries(
        session,
        department=caller.department,
        owned=await registry.owned_item_ids(session, owner=caller.department),
        scope=scope,
        cursor=cursor,
        limit=limit,
    )


_EXPORT_TYPES = {"jsonl": "application/jsonl", "csv": "text/csv; charset=utf-8"}
_EXPORT_CONTENT = {
    "application/jsonl": {"schema": {"type": "string"}},
    "text/csv": {"schema": {"type": "string"}},
}


@router.get(
    "/export",
    responses={
        200: {"description": "every matching entry", "content": _EXPORT_CONTENT},
        # the read replica, when one is configured; a person's searches by subject
        **problems(Unavailable, SubjectSearchesThrottled),
    },
    dependencies=[Depends(audited("audit.export"))],
)
async def export_entries(
    auditor: AuditorDep,
    scope: CurrentAudit,
    sessions: ReadSessionsDep,
    where: EntryFilterDep,
    hub: HubDep,
    format: Literal["jsonl", "csv"] = "jsonl",
) -> StreamingResponse:
    """Every matching entry as JSON Lines or CSV, streamed; the export is itself audited.
    A ``subject`` counts against the person's hourly budget of subjects (decision 0086)."""
    if where.subject is not None:
        await hub.subject_searches.spend(hub.engine, auditor.name, where.subject, clock=hub.clock)
    await service.start_export(scope=scope, where=where, format=format)
    lines = service.export_lines(sessions, where=where, format=format)
    return StreamingResponse(
        lines,
        media_type=_EXPORT_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="audit-entries.{format}"',
            **NO_STORE,
        },
    )
