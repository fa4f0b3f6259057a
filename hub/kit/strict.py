"""Strict input types: what a caller sends is read as what it says, never coerced.

Request bodies are parsed by :mod:`onceonly.hub.kit.jsonbody` and then validated in pydantic's
Python mode, so a body model sets :data:`STRICT_INPUT` (``strict=True``): an integer
member takes a JSON integer only (not ``true``, ``"1"`` or ``1.0``), a string member a
JSON string only. Times are :data:`Rfc3339`, in bodies and query strings alike: an
RFC 3339 §5.6 ``date-time`` with an offset or ``Z``, never a number of seconds since
1970 (which pydantic's lax mode would read ``0.5`` as). A query string carries only
text, so its integers (and a path's) are :data:`QueryInt` (decimal digits, not
``1.0``, ``+1``, ``1_000``, ``01``) and its booleans :data:`QueryBool` (``true`` or ``false``).
"""

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, ConfigDict, Field

from onceonly.adapters import SUBJECT_RULE, subject_problem

STRICT_INPUT = ConfigDict(extra="forbid", strict=True)

# RFC 3339 §5.6 date-time; "T" and "Z" may be lower case (§5.6, NOTE).
_DATE_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,19})$")  # one spelling: no leading zeros


def _rfc3339(value: object) -> object:
    if isinstance(value, datetime):  # a Python caller's own time
        return value
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2027-01-31T12:00:00Z")
    moment = datetime.fromisoformat(value.upper())
    try:  # the hub keeps UTC: an instant that has none (year 1 at +01:00) is no time for it
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a time between the years 1 and 9999 in UTC") from None
    return moment


def _decimal(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise ValueError("must be an integer written in decimal digits, without leading zeros")
    return int(value)


def _true_or_false(value: object) -> object:
    if isinstance(value, bool):
        return value
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
QueryInt = Annotated[int, BeforeValidator(_decimal)]
QueryBool = Annotated[bool, BeforeValidator(_true_or_false)]


def _a_subject(subject: str) -> str:
    """``subject`` if it is a subject identifier (decision 0061): refused, not normalized."""
    problem = subject_problem(subject)
    if problem is not None:
        raise ValueError(problem)
    return subject


Subject = Annotated[
    str, Field(min_length=1, max_length=256, description=SUBJECT_RULE), AfterValidator(_a_subject)
]
"""A subject identifier as the hub takes it in a body (the adapters' rule, one copy): in a
record query and in a change event, so that one person is one pseudonym in the log."""
