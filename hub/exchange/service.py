"""One record exchange, top to bottom: auth → access → registry → exchange → audit.

Every step that refuses raises a HubError; the error handler writes the refusal to
the audit log with all that the steps had noted so far.
"""

import time
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from hub.access import service as access
from hub.access.minimization import minimize
from hub.audit.leaves import data_digest
from hub.audit.service import AuditScope
from hub.auth.service import Caller
from hub.config import Settings
from hub.db import release_connection
from hub.exchange import owner
from hub.exchange.exceptions import OwnerInvalidResponse, OwnerUnavailable
from hub.exchange.request_tokens import mint_request_token
from hub.exchange.schemas import ReceiptOut, RecordAnswer, RecordQuery
from hub.keys import HubKeys
from hub.registry import service as registry
from hub.registry import validation


@dataclass(frozen=True)
class ExchangeContext:
    """What the exchange needs from the process: settings, keys, the outbound client."""

    settings: Settings
    keys: HubKeys
    http: httpx.AsyncClient


async def query_record(
    session: AsyncSession,
    *,
    caller: Caller,
    item_id: str,
    query: RecordQuery,
    context: ExchangeContext,
    scope: AuditScope,
) -> RecordAnswer:
    scope.note(item=item_id, subject=context.keys.pseudonym(query.subject), purpose=query.purpose)
    served = await registry.item_for_exchange(session, item_id)
    version = served.version.version
    scope.note(version=version)
    caller.require_scope(access.read_scope(item_id))
    grant = await access.grant_for(
        session, consumer=caller.department, item=item_id, purpose=query.purpose
    )
    scope.note(grant=grant.id)
    owner_department = await registry.department(session, served.item.owner_id)
    await release_connection(session)
    if not owner_department.adapter_url:
        raise OwnerUnavailable("the owner department has no adapter registered")
    call = owner.OwnerCall(
        adapter_url=owner_department.adapter_url,
        item=item_id,
        token=mint_request_token(
            key=context.keys.signing,
            issuer=context.settings.issuer,
            owner=owner_department.id,
            consumer=caller.department,
            item=item_id,
            version=version,
            purpose=query.purpose,
            subject=query.subject,
            request_id=scope.request_id,
            now=int(time.time()),
            lifetime=context.settings.request_token_lifetime,
        ),
        request_id=scope.request_id,
        body={
            "subject": query.subject,
            "purpose": query.purpose,
            "consumer": caller.department,
            "version": version,
        },
    )
    record = await owner.fetch_record(context.http, call, timeout=context.settings.owner_timeout)
    validator = validation.validator_for(served.version.schema_, served.version.fingerprint)
    errors = validation.record_errors(validator, record)
    if errors:
        raise OwnerInvalidResponse(
            f"the owner's record does not match version {version}: {errors[0]}"
        )
    delivered = minimize(record, grant.fields)
    receipt = await scope.record_success(fields=sorted(delivered), digest=data_digest(delivered))
    return RecordAnswer(
        item=item_id,
        version=version,
        record=delivered,
        receipt=ReceiptOut(**receipt.as_json()),
    )
