"""Citizen view bodies: what a citizen portal may show, and nothing internal."""

from pydantic import BaseModel, Field

from onceonly.hub.kit.clock import UtcDatetime
from onceonly.hub.kit.strict import STRICT_INPUT, Subject


class AccessLogQuery(BaseModel):
    """POSTed, so that the identifier never appears in a URL or an access log."""

    model_config = STRICT_INPUT

    subject: Subject
    limit: int = Field(default=200, ge=1, le=1000)


class Access(BaseModel):
    index: int = Field(description="the audit entry's index: its inclusion proof is public")
    time: UtcDatetime  # with its offset: SQLite gives stored times back without one
    department: str
    department_name: str
    item: str
    item_title: str
    purpose: str


class AccessLog(BaseModel):
    accesses: list[Access]
