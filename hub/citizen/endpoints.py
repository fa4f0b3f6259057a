"""The citizen portal's route."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from onceonly.hub.audit.dependencies import CurrentAudit, audited
from onceonly.hub.auth.dependencies import CurrentCaller
from onceonly.hub.citizen import service
from onceonly.hub.citizen.exceptions import NotCitizenPortal
from onceonly.hub.citizen.schemas import AccessLog, AccessLogQuery
from onceonly.hub.dependencies import KeysDep, SessionDep, SettingsDep
from onceonly.hub.kit.jsonbody import json_body
from onceonly.hub.kit.problems import problems

router = APIRouter(prefix="/v1/citizen", tags=["citizen"])


@router.post(
    "/access-log",
    response_model=AccessLog,
    responses=problems(NotCitizenPortal),
    dependencies=[Depends(audited("citizen.query"))],
)
async def access_log(
    scope: CurrentAudit,
    caller: CurrentCaller,
    query: Annotated[AccessLogQuery, Depends(json_body(AccessLogQuery))],
    session: SessionDep,
    settings: SettingsDep,
    keys: KeysDep,
    response: Response,
) -> AccessLog:
    response.headers["Cache-Control"] = "no-store"  # whose data was used: personal data
    return await service.access_log(
        session, caller=caller, query=query, settings=settings, keys=keys, scope=scope
    )
