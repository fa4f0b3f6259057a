"""Operators' routes: liveness, readiness, Prometheus metrics."""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from onceonly.hub.audit.checkpoints import Checkpointer
from onceonly.hub.audit.service import AuditLog
from onceonly.hub.auth.exceptions import InvalidToken
from onceonly.hub.auth.jti_register import JtiRegister
from onceonly.hub.dependencies import HubDep
from onceonly.hub.keys import HubKeys
from onceonly.hub.kit import logs
from onceonly.hub.kit.problems import Unavailable, problems
from onceonly.hub.ops.metrics import exposition
from onceonly.hub.ops.openapi import METRICS_SECURITY
from onceonly.hub.signing_keys import KeysUnreadable

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses=problems(Unavailable))
async def readyz(hub: HubDep) -> dict[str, str]:
    """The process can serve: the database answers, the audit writer and the
    single-use register run and can commit (their last commit, or probe, succeeded),
    the audit checkpointer signs (the log extends its latest checkpoint), and the hub
    reads the keys it signs and derives with."""
    try:
        async with hub.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        raise Unavailable("the database does not answer") from None
    _check_writer(hub.audit_log, "the audit writer")
    _check_writer(hub.jti_register, "the single-use register")
    _check_checkpointer(hub.checkpointer)
    _check_keys(hub.keys)
    return {"status": "ready"}


def _check_writer(writer: AuditLog | JtiRegister, name: str) -> None:
    if not writer.running:
        raise Unavailable(f"{name} is not running")
    if not writer.healthy:
        raise Unavailable(f"{name} cannot commit")


def _check_checkpointer(checkpointer: Checkpointer) -> None:
    if checkpointer.alarm is not None:
        raise Unavailable(f"the audit checkpointer refuses to sign: {checkpointer.alarm}")
    if not checkpointer.stored:
        raise Unavailable("the audit checkpointer has not stored a checkpoint yet")


def _check_keys(keys: HubKeys) -> None:
    """The signing keys (``signing/state.json`` and the keys it names) and the derivation
    root load: a file another user wrote (``sudo onceonly keys rotate``) or one that has
    not reached this host fails every token request and the JWKS until it does. Cheap:
    the files are looked at (a stat) every few seconds, and read only when they changed.
    The answer names the file under the key directory, not where that directory is."""
    keys_dir = keys.ring.directory.parent
    try:
        try:
            keys.public_jwks()
        except KeysUnreadable as unreadable:
            raise unreadable.error from None
        keys.root()
    except OSError as error:
        name = Path(str(error.filename))
        name = name.relative_to(keys_dir) if name.is_relative_to(keys_dir) else Path(name.name)
        raise Unavailable(f"the hub cannot read its key file {name}: {error.strerror}") from None
    except Exception as error:  # a damaged or missing file: any parser's error
        reason = logs.one_line(error).replace(f"{keys_dir}/", "")
        raise Unavailable(f"the hub's keys do not load: {reason}") from None


def metrics_reader(request: Request, hub: HubDep) -> None:
    """A scrape of ``/metrics`` sends ``Authorization: Bearer <keys/metrics-token>``
    (compared in constant time), unless ``metrics_public`` is set (decision 0063): the
    series say which departments exchange which items, for which purposes, and how
    often. A refusal is not audited: it decides nothing about anyone's data, and an
    audit entry per unauthenticated scrape would let anyone write to the log."""
    if hub.settings.metrics_public:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken(
            "/metrics needs the hub's metrics token:"
            " send Authorization: Bearer <keys/metrics-token>",
            token_sent=False,
        )
    if not hub.keys.is_metrics_token(token):
        raise InvalidToken("that is not the hub's metrics token (keys/metrics-token)")


MetricsReader = Annotated[None, Depends(metrics_reader)]


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses=problems(InvalidToken),
    openapi_extra={"security": METRICS_SECURITY},
)
async def metrics(_: MetricsReader, hub: HubDep) -> Response:
    # every series is listed in docs/operations.md ("Metrics"); no docstring: the
    # OpenAPI document stays as it was
    return Response(await exposition(hub), media_type=CONTENT_TYPE_LATEST)
