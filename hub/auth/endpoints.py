"""OAuth routes: token endpoint (RFC 6749 §3.2), metadata (RFC 8414), JWKS (RFC 7517)."""

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from hub.audit.dependencies import CurrentAudit, audited
from hub.auth import service
from hub.auth.schemas import ServerMetadata, TokenResponse
from hub.config import SettingsDep
from hub.db import SessionDep
from hub.keys import KeysDep

router = APIRouter(tags=["oauth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


@router.post(
    "/oauth/token", response_model=TokenResponse, dependencies=[Depends(audited("token.issue"))]
)
async def token(
    request: Request, session: SessionDep, settings: SettingsDep, keys: KeysDep, scope: CurrentAudit
) -> JSONResponse:
    form = service.parse_token_form(await request.body(), request.headers.get("content-type", ""))
    answer = await service.issue_token(
        session,
        engine=request.app.state.engine,
        form=form,
        settings=settings,
        keys=keys,
        scope=scope,
    )
    return _no_store(answer)


def _no_store(answer: TokenResponse) -> JSONResponse:
    return JSONResponse(answer.model_dump(), headers=_NO_STORE)


@router.get("/.well-known/oauth-authorization-server", response_model=ServerMetadata)
async def metadata(session: SessionDep, settings: SettingsDep) -> ServerMetadata:
    return await service.server_metadata(session, settings=settings)


@router.get("/.well-known/jwks.json")
async def jwks(keys: KeysDep) -> dict[str, Any]:
    return keys.public_jwks()
