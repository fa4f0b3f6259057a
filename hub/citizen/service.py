"""The citizen view: which department read which of my records, when, and why.

It shows successful record accesses only, with the department's and item's
names and the declared purpose; never clients, grants, request ids or digests.
The query itself is an audit entry, so that looking is as visible as reading.
"""

import json

from sqlalchemy.ext.asyncio import AsyncSession

from onceonly.hub.audit.service import AuditScope
from onceonly.hub.auth.service import Caller
from onceonly.hub.citizen import repository
from onceonly.hub.citizen.exceptions import NotCitizenPortal
from onceonly.hub.citizen.schemas import Access, AccessLog, AccessLogQuery
from onceonly.hub.config import Settings
from onceonly.hub.keys import HubKeys


async def access_log(
    session: AsyncSession,
    *,
    caller: Caller,
    query: AccessLogQuery,
    settings: Settings,
    keys: HubKeys,
    scope: AuditScope,
) -> AccessLog:
    if caller.client_id not in settings.citizen_portal_clients:
        raise NotCitizenPortal(f"client {caller.client_id!r} is not a configured citizen portal")
    pseudonym = keys.pseudonym(query.subject)
    scope.note(subject=pseudonym)
    rows = await repository.accesses(session, pseudonym=pseudonym, limit=query.limit)
    await scope.record_success()
    return AccessLog(
        accesses=[
            Access(
                index=row.index,
                time=row.time,
                department=row.department,
                department_name=row.department_name or row.department,
                item=row.item,
                item_title=row.item_title or row.item,
                purpose=str(json.loads(row.leaf).get("purpose", "")),
            )
            for row in rows
        ]
    )
