"""The auditors' pages of the console (docs/console.md, "Auditors' pages").

Each page calls the audit and report services the API's routes call, audited as the
API audits them: a search is ``audit.query``, an export ``audit.export``, an entry's
page ``audit.read``, the dashboard ``report.efficiency``; a refusal is audited under
the same action. The log search is a POST (the person's identifier is personal data
and goes in no URL); the hub seals it into a cookie of the auditor's browser, bound to
their sign-in for 30 minutes, and redirects to ``/audit?results=1``, which runs it
(post/redirect/get: going back to the results, their pages and the entry page's way
back work as GETs; each run is audited, decision 0058).
"""

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.audit import checkpoints, inclusion, service
from onceonly.hub.audit.exceptions import EntryNotFound, SubjectSearchesThrottled
from onceonly.hub.audit.notes import Signer
from onceonly.hub.audit.readers import AUDITOR
from onceonly.hub.audit.request_scope import open_audit_scope
from onceonly.hub.audit.schemas import CheckpointOut
from onceonly.hub.audit.service import AuditScope
from onceonly.hub.console import charts, cookies, dashboard, log_search, pages, rendering
from onceonly.hub.console.dependencies import FormDep, SignedInDep, Visit
from onceonly.hub.dependencies import (
    CheckpointerDep,
    HubDep,
    ReadSessionDep,
    ReadSessionsDep,
    SessionDep,
)
from onceonly.hub.keys import KeyLabel
from onceonly.hub.kit.problems import HubError, InvalidRequest
from onceonly.hub.people import service as people
from onceonly.hub.people.principal import Forbidden, Principal
from onceonly.hub.registry import service as registry
from onceonly.hub.reports import periods
from onceonly.hub.reports import service as reports
from onceonly.hub.runtime import Hub

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
RESULTS = "/audit?results=1"
CHECKPOINTS_PAGE = 50
_EXPORT_TYPES = {"jsonl": "application/jsonl", "csv": "text/csv; charset=utf-8"}


def _scope(request: Request, visit: Visit, action: str, hub: Hub) -> AuditScope:
    """The request's audit scope, naming the signed-in person (as the API's does)."""
    scope = open_audit_scope(request, action, log=hub.audit_log)
    assert visit.principal is not None
    scope.note(person=visit.principal.name)
    return scope


async def _refused(request: Request, visit: Visit, scope: AuditScope, error: HubError) -> Response:
    """The refusal, audited under the page's action, and a page that says so."""
    if scope.owes_failure(error):
        await scope.record_failure(error)
    return rendering.render(request, visit, "auditor/not_allowed.html", status=error.status)


def _principal(visit: Visit) -> Principal:
    assert visit.principal is not None
    return visit.principal


def _refusal(check: Callable[[], None]) -> Forbidden | None:
    """The refusal of a role check of ``people.principal.Principal`` (the API's), if any."""
    try:
        check()
    except Forbidden as refused:
        return refused
    return None


# --- the log search --------------------------------------------------------------------


@router.get("/audit")
async def search_page(
    request: Request,
    visit: SignedInDep,
    session: ReadSessionDep,
    hub: HubDep,
    results: str = "",
    pages: str = "",
) -> Response:
    """The search form; with ``results``, the search kept in the auditor's browser run
    again for the page whose cursors ``pages`` lists: audited as ``GET
    /v1/audit/entries`` each time (post/redirect/get, decision 0058)."""
    if (refused := _refusal(_principal(visit).require_auditor)) is not None:
        scope = _scope(request, visit, "route.refused", hub)
        scope.note(target="GET /audit")
        return await _refused(request, visit, scope, refused)
    if not results:
        search = log_search.LogSearch()
        return await _search_page(request, visit, session, search=search, errors=[])
    wanted = _kept_search(request, visit, hub)
    if wanted is None:  # older than 30 minutes, of another sign-in, or none
        search = log_search.LogSearch()
        return await _search_page(
            request, visit, session, search=search, errors=[], notice="search-ended"
        )
    trail = log_search.trail_of(pages)
    scope = _scope(request, visit, "audit.query", hub)
    where = wanted.entry_filter(pseudonym=hub.keys.pseudonym)
    cursor = trail[-1] if trail else None
    if where.subject is not None:  # counted once an hour a subject, whatever the page
        throttled = await _subject_search(visit, hub, where.subject)
        if throttled is not None:
            return await _throttled(request, visit, session, scope, wanted, throttled, hub)
    found = await service.find(session, scope=scope, where=where, cursor=cursor, limit=PAGE_SIZE)
    return await _search_page(
        request, visit, session, search=wanted, errors=[], page=found, trail=trail
    )


async def _subject_search(visit: Visit, hub: Hub, subject: str) -> SubjectSearchesThrottled | None:
    """Count ``subject`` (a pseudonym) for the person (decision 0086), or the refusal."""
    try:
        await hub.subject_searches.spend(
            hub.engine, _principal(visit).name, subject, clock=hub.clock
        )
    except SubjectSearchesThrottled as refused:
        return refused
    return None


async def _throttled(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    scope: AuditScope,
    search: log_search.LogSearch,
    refused: SubjectSearchesThrottled,
    hub: Hub,
) -> Response:
    """The search form again, saying when a search by subject may start again: 429,
    with ``Retry-After``, audited as the API's refusal is."""
    await scope.record_failure(refused)
    seconds = int(refused.headers["Retry-After"])
    response = await _search_page(
        request,
        visit,
        session,
        search=search,
        errors=[],
        notice="subject-searches-throttled",
        status=429,
        searches_per_hour=hub.subject_searches.per_hour,
        wait_minutes=max(1, -(-seconds // 60)),
    )
    response.headers["Retry-After"] = str(seconds)
    return response


def _search_key(hub: Hub) -> bytes:
    return hub.keys.derived(KeyLabel.CONSOLE_AUDIT_SEARCH)


def _session_of(visit: Visit) -> str:
    assert visit.session_token is not None
    return people.token_hash(visit.session_token)


def _kept_search(request: Request, visit: Visit, hub: Hub) -> log_search.LogSearch | None:
    """The search the auditor's browser keeps (sealed), if it holds for this sign-in."""
    sealed = cookies.read(
        request, cookies.AUDIT_SEARCH, production=visit.production, max_length=4096
    )
    return log_search.open_search(
        sealed, key=_search_key(hub), session=_session_of(visit), now=int(hub.clock.time())
    )


async def _search_page(
    request: Request,
    visit: Visit,
    session: AsyncSession,
    *,
    search: log_search.LogSearch,
    errors: list[Any],
    page: Any = None,
    trail: list[int] | None = None,
    notice: str = "",
    status: int = 200,
    **context: Any,
) -> Response:
    trail = trail or []
    after = [*trail, page.next_cursor] if page is not None and page.next_cursor else None
    departments = (await registry.list_departments(session)).departments
    items = (await registry.list_items(session)).items
    return rendering.render(
        request,
        visit,
        "auditor/search.html",
        status=status,
        errors=errors,
        search=search,
        page=page,
        notice=notice,
        here=log_search.trail_text(trail),
        previous_pages=log_search.trail_text(trail[:-1]) if trail else None,
        next_pages=".".join(str(cursor) for cursor in after) if after else None,
        kept_minutes=log_search.SEARCH_SECONDS // 60,
        outcomes=log_search.OUTCOMES,
        actions=log_search.ACTIONS,
        reasons=log_search.REASONS,
        entry_time=log_search.entry_time,
        known={  # what the department, item and action fields suggest (any is accepted)
            "department": [(d.id, d.name) for d in departments],
            "item": [(item.id, item.title) for item in items],
            "action": list(log_search.ACTIONS.items()),
        },
        **context,
    )


@router.post("/audit")
async def search(
    request: Request, visit: SignedInDep, form: FormDep, session: ReadSessionDep, hub: HubDep
) -> Response:
    """A search: checked, sealed into the auditor's browser (``cookies.AUDIT_SEARCH``)
    and shown by ``GET /audit?results=1``, which runs it (and is audited)."""
    if (refused := _refusal(_principal(visit).require_auditor)) is not None:
        return await _refused(request, visit, _scope(request, visit, "audit.query", hub), refused)
    wanted = log_search.LogSearch.of(form)
    errors = wanted.errors()
    if errors:
        scope = _scope(request, visit, "audit.query", hub)
        await scope.record_failure(InvalidRequest("the search form has errors"))
        return await _search_page(request, visit, session, search=wanted, errors=errors, status=400)
    sealed = log_search.seal_search(
        wanted, key=_search_key(hub), session=_session_of(visit), now=int(hub.clock.time())
    )
    response = pages.redirect(RESULTS, production=visit.production)
    cookies.put(
        response,
        cookies.AUDIT_SEARCH,
        sealed,
        max_age=log_search.SEARCH_SECONDS,
        production=visit.production,
    )
    return response


@router.post("/audit/export")
async def export(
    request: Request, visit: SignedInDep, form: FormDep, sessions: ReadSessionsDep, hub: HubDep
) -> Response:
    """Every matching entry as CSV or JSON Lines: audited as ``GET /v1/audit/export``."""
    scope = _scope(request, visit, "audit.export", hub)
    if (refused := _refusal(_principal(visit).require_auditor)) is not None:
        return await _refused(request, visit, scope, refused)
    wanted = log_search.LogSearch.of(form)
    errors = wanted.errors()
    format = form.get("format", "")
    if errors or format not in _EXPORT_TYPES:
        await scope.record_failure(InvalidRequest("the export form has errors"))
        async with sessions() as session:
            return await _search_page(
                request, visit, session, search=wanted, errors=errors, status=400
            )
    where = wanted.entry_filter(pseudonym=hub.keys.pseudonym)
    if (
        where.subject is not None
        and (throttled := await _subject_search(visit, hub, where.subject)) is not None
    ):
        async with sessions() as session:
            return await _throttled(request, visit, session, scope, wanted, throttled, hub)
    await service.start_export(scope=scope, where=where, format=format)
    headers = {
        **pages.security_headers(production=visit.production),
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="audit-entries.{format}"',
    }
    return StreamingResponse(
        service.export_lines(sessions, where=where, format=format),
        media_type=_EXPORT_TYPES[format],
        headers=headers,
    )


# --- an entry and its proof ------------------------------------------------------------


@router.get("/audit/entries/{index}")
async def entry_page(
    request: Request,
    index: str,
    visit: SignedInDep,
    session: SessionDep,
    checkpointer: CheckpointerDep,
    hub: HubDep,
    pages: str = "",
) -> Response:
    """The entry in words and its inclusion in the latest signed checkpoint, checked
    here: audited as the API's ``GET /v1/audit/entries/{index}`` (``audit.read``)."""
    scope = _scope(request, visit, "audit.read", hub)
    if (refused := _refusal(_principal(visit).require_auditor)) is not None:
        return await _refused(request, visit, scope, refused)
    number = log_search.index_of(index)
    try:
        if number is None:
            raise EntryNotFound(f"{index!r} is not an entry's index")
        found = await service.entry_at(session, index=number, reader=AUDITOR, scope=scope)
    except EntryNotFound as missing:
        await scope.record_failure(missing)
        return rendering.render(request, visit, "not_found.html", status=404)
    assert found.leaf is not None
    assert found.entry is not None
    leaf, leaf_hash = base64.b64decode(found.leaf), base64.b64decode(found.leaf_hash)
    signed, proof = await _latest_proof(session, checkpointer, index=found.index)
    verdict = inclusion.verdict(
        index=found.index, leaf=leaf, leaf_hash=leaf_hash, signed=signed, proof=proof
    )
    return rendering.render(
        request,
        visit,
        "auditor/entry.html",
        found=found,
        rows=log_search.entry_rows(
            found.entry,
            committed_subject=found.committed_subject,
            indexed_subject=found.indexed_subject,
        ),
        actions=log_search.ACTIONS,
        outcomes=log_search.OUTCOMES,
        reasons=log_search.REASONS,
        entry_time=log_search.entry_time,
        signed=signed,
        proof=[base64.b64encode(step).decode() for step in proof],
        signed_root=(
            base64.b64encode(signed.checkpoint.root).decode()
            if signed is not None and signed.checkpoint is not None
            else ""
        ),
        verdict=verdict.value,
        interval=hub.settings.checkpoint_interval,
        back=_back_to_results(request, visit, hub, pages=pages),
    )


def _back_to_results(request: Request, visit: Visit, hub: Hub, *, pages: str) -> str | None:
    """Where the entry page's back link goes: the results page it was opened from while
    the search is kept (None: the empty search form)."""
    if _kept_search(request, visit, hub) is None:
        return None
    trail = log_search.trail_text(log_search.trail_of(pages))
    return RESULTS + (f"&pages={trail}" if trail else "")


async def _latest_proof(
    session: Any, checkpointer: CheckpointerDep, *, index: int
) -> tuple[inclusion.SignedCheckpoint | None, list[bytes]]:
    """The latest stored checkpoint, opened with the verifier key, and the hub's
    inclusion proof of entry ``index`` for its size (none if it does not cover it)."""
    signed = await service.latest_signed(session, verifier=checkpointer.signer.verifier)
    return signed, await service.proof_under(session, index=index, signed=signed)


# --- checkpoint history ------------------------------------------------------------------


@router.get("/checkpoints")
async def checkpoint_history(
    request: Request,
    visit: SignedInDep,
    session: SessionDep,
    checkpointer: CheckpointerDep,
    up_to: str = "",
) -> Response:
    """The signed checkpoints, newest first, up to tree size ``up_to`` (the newest when
    not given), each opened with the verifier key, with links to newer and older pages.
    Public in the API (``GET /v1/audit/checkpoints``): not audited."""
    wanted = log_search.cursor_of(up_to)
    verifier = checkpointer.signer.verifier
    latest = await service.latest_signed(session, verifier=verifier)
    newest = latest.checkpoint.size if latest is not None and latest.checkpoint else None
    bound = min(n for n in (wanted, newest, log_search.MAX_CURSOR) if n is not None)
    page = await checkpoint_page(session, up_to=bound)
    rows = [_opened(row, checkpointer.signer) for row in page.rows]
    return rendering.render(
        request,
        visit,
        "auditor/checkpoints.html",
        rows=rows,
        up_to="" if wanted is None else wanted,
        newer=page.newer,
        older=page.older,
        verifier=str(verifier),
    )


def _opened(
    row: CheckpointOut, signer: Signer
) -> tuple[CheckpointOut, inclusion.SignedCheckpoint, str | None]:
    """A stored checkpoint opened with the verifier key, else with the key it replaced
    that signed it (its verifier key's text, shown: decision 0091; before, after a
    rotation every earlier checkpoint read "Does not verify", as if altered)."""
    opened = inclusion.opened(row.note, verifier=signer.verifier, signed_at=row.time)
    if opened.checkpoint is not None:
        return row, opened, None
    for retired in signer.retired:
        earlier = inclusion.opened(row.note, verifier=retired, signed_at=row.time)
        if earlier.checkpoint is not None:
            return row, earlier, str(retired)
    return row, opened, None


@dataclass(frozen=True)
class CheckpointPage:
    """A page of the checkpoint history, newest first, and where its neighbours end
    (``up_to`` of the newer and older pages; None: there is none)."""

    rows: list[CheckpointOut]
    newer: int | None
    older: int | None


async def checkpoint_page(session: AsyncSession, *, up_to: int) -> CheckpointPage:
    """The newest ``CHECKPOINTS_PAGE`` checkpoints of size at most ``up_to``. The audit
    domain lists checkpoints oldest first from a size (``checkpoints.history``, the
    API's); where such a page must start is found by bisection over the sizes (about
    log2 of ``up_to`` small queries)."""
    first = await _sizes_from(session, 0, limit=1)
    end = up_to + 1
    start = await _page_start(session, end=end, limit=CHECKPOINTS_PAGE)
    rows = [
        row
        for row in await _sizes_from(session, start, limit=CHECKPOINTS_PAGE)
        if row.tree_size < end
    ]
    if not rows:
        return CheckpointPage(rows=[], newer=None, older=None)
    newer = await _sizes_from(session, end, limit=CHECKPOINTS_PAGE)
    return CheckpointPage(
        rows=rows[::-1],
        newer=newer[-1].tree_size if newer else None,
        older=rows[0].tree_size - 1 if first and first[0].tree_size < rows[0].tree_size else None,
    )


async def _sizes_from(session: AsyncSession, size: int, *, limit: int) -> list[CheckpointOut]:
    """The first ``limit`` checkpoints of size ``size`` or more, oldest first."""
    return (await checkpoints.history(session, since_size=size, limit=limit)).checkpoints


async def _page_start(session: AsyncSession, *, end: int, limit: int) -> int:
    """The smallest size from which at most ``limit`` checkpoints are smaller than
    ``end``: the start of the page of the newest ``limit`` below ``end``."""
    low, high = 0, end
    while low < high:
        middle = (low + high) // 2
        sizes = [row.tree_size for row in await _sizes_from(session, middle, limit=limit + 1)]
        if len(sizes) <= limit or sizes[limit] >= end:
            high = middle
        else:
            low = middle + 1
    return low


# --- the efficiency dashboard --------------------------------------------------------------


@router.get("/efficiency")
async def efficiency(
    request: Request, visit: SignedInDep, hub: HubDep, period: str = ""
) -> Response:
    """The efficiency report as charts and tables: audited as the API's
    ``GET /v1/reports/efficiency`` (``report.efficiency``), with format ``html``."""
    scope = _scope(request, visit, "report.efficiency", hub)
    if (refused := _refusal(_principal(visit).require_report_reader)) is not None:
        return await _refused(request, visit, scope, refused)
    now = hub.clock.now()
    try:
        chosen = periods.parse(period.strip() or periods.month_of(now))
    except periods.BadPeriod:
        await scope.record_failure(InvalidRequest("the period is not a month, quarter or year"))
        return _dashboard(request, visit, report=None, period=period, now=now, status=400)
    scope.note(query={"period": chosen.name, "format": "html"})
    report = await reports.efficiency_report(
        hub.engine,
        rollup=hub.rollup,
        period=chosen,
        now=now,
        threshold=hub.settings.report_threshold,
        minutes_saved=hub.settings.report_minutes_saved,
        minutes_default=hub.settings.report_minutes_saved_default,
    )
    await scope.record_success()
    return _dashboard(request, visit, report=report, period=chosen.name, now=now)


def _dashboard(
    request: Request, visit: Visit, *, report: Any, period: str, now: Any, status: int = 200
) -> Response:
    errors = [] if report is not None else dashboard.period_errors()
    return rendering.render(
        request,
        visit,
        "auditor/efficiency.html",
        status=status,
        errors=errors,
        report=report,
        period=period,
        choices=dashboard.period_choices(now),
        view=dashboard.view(report) if report is not None else None,
        bar_chart=charts.bar_chart,
        bars=dashboard.bars,
        figure=dashboard.figure,
        labels=dashboard.FIGURE_LABELS,
    )
