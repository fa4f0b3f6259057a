"""Strict input types: what a caller sends is read as what it says, never coerced.

Request bodies are parsed by :mod:`onceonly.hub.kit.jsonbody` and then validated in pydantic's
Python mode, so a body model sets :data:`STRICT_INPUT` (``strict=True``): an integer
member takes a JSON integer only (not ``true``, ``"1"`` or ``1.0``), a string member a
JSON string only. Times are :data:`Rfc3339`, in bodies and query strings alike: an
RFC 3339 §5.6 ``date-time`` with an offset or ``Z``, never a number of seconds since
1970 (which pydantic's lax mode would read ``0.5`` as). A query string carries only
text, so its integers (and a path's) end in :data:`DecimalDigits` (decimal digits, not
``1.0``, ``+1``, ``1_000``, ``01``) and its booleans are :data:`QueryBool` (``true`` or
``false``).
"""

import re
import unicodedata
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
_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # one spelling: no leading zeros
# A number of more digits is read as _HUGE, which is larger than any bound an integer
# parameter has (the largest, 2^53 - 1, has 16 digits), so that its bound refuses it with
# its own words ("less than or equal to ..."); digits of any length are matched (in one
# linear pass) and never parsed, as int() of thousands of digits is quadratic.
_MAX_PARSED_DIGITS = 64
_HUGE = 10**_MAX_PARSED_DIGITS


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
    """An integer, from its one decimal spelling; one of more than 64 digits as _HUGE,
    for the parameter's bound to refuse."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise ValueError("must be an integer written in decimal digits, without leading zeros")
    return int(value) if len(value) <= _MAX_PARSED_DIGITS else _HUGE


def _true_or_false(value: object) -> object:
    if isinstance(value, bool):
        return value
    if value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value == "true"


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
DecimalDigits = BeforeValidator(_decimal)
"""An integer in a query string or a path in its one spelling (decimal digits, no leading
zeros), as the last ``Annotated`` metadata, after the parameter's bounds:
``Annotated[int, Query(ge=1, le=1000), DecimalDigits]``. Metadata apply in order, and
a bound given after a validator would still be checked but published under pydantic's
own names ``ge``/``le``, which JSON Schema does not know (pydantic issue 11576), not as
``minimum``/``maximum``: tests/hub/openapi/test_openapi_document.py looks for them."""
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


# --- text that people read (decision 0072) ----------------------------------------------

# Unicode TR9 explicit formatting characters and marks: each changes how the text around
# it is shown ("Tax\u202eBoard" shows as "TaxdraoB"), and none is seen itself.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_LINE_BREAKS = frozenset("\t\n\r")  # a text area's lines (a browser sends CR LF)
# Unicode general categories that are no part of text shown to people: controls,
# invisible format characters, lone surrogates
_NOT_SHOWN = frozenset({"Cc", "Cf", "Cs"})

DISPLAY_NAME_RULE = (
    "Text shown to people, on one line: no control character, no bidirectional control"
    " (U+061C, U+200E-F, U+202A-E, U+2066-9), no zero-width character (U+200B-D, U+2060,"
    " U+FEFF), nor any other invisible format character (Unicode category Cf)"
)
DISPLAY_TEXT_RULE = (
    "Text shown to people, lines allowed (tab, LF, CR): no other control character, no"
    " bidirectional control (U+061C, U+200E-F, U+202A-E, U+2066-9), no zero-width"
    " character (U+200B-D, U+2060, U+FEFF), nor any other invisible format character"
    " (Unicode category Cf)"
)


def display_text_problem(text: str, *, lines: bool) -> str | None:
    """Why ``text`` may not be shown to people as it is, or ``None`` (decision 0072): a
    bidirectional control or a zero-width character (invisible, and one reorders what
    follows it), any other control or format character, or a lone surrogate; with
    ``lines``, tab, LF and CR are text. Refused, never removed. Never quotes ``text``.

    >>> display_text_problem("Tax\\u202eBoard", lines=False)
    'holds a bidirectional control character, which reorders the text shown'
    """
    if text.isprintable():  # the usual case: no Cc, Cf, Cs, in one C pass
        return None
    for char in text:
        if char in _BIDI_CONTROLS:
            return "holds a bidirectional control character, which reorders the text shown"
        if char in _ZERO_WIDTH:
            return "holds a zero-width character, which is not seen"
        if lines and char in _LINE_BREAKS:
            continue
        if unicodedata.category(char) in _NOT_SHOWN:
            return (
                "holds a control character, an invisible format character or a lone surrogate"
                if lines
                else "holds a line break, a control character, an invisible format character"
                " or a lone surrogate"
            )
    return None


def _displayed(*, lines: bool) -> AfterValidator:
    def check(text: str) -> str:
        problem = display_text_problem(text, lines=lines)
        if problem is not None:
            raise ValueError(f"the text {problem}")
        return text

    return AfterValidator(check)


_ONE_LINE = _displayed(lines=False)
_LINES = _displayed(lines=True)

DisplayName = Annotated[str, Field(description=DISPLAY_NAME_RULE), _ONE_LINE]
"""A name or title people read on one line (a department's name, a person's, an item's
title): :func:`display_text_problem` refuses what would hide or reorder text. Its
length is the using field's."""

DisplayText = Annotated[str, Field(description=DISPLAY_TEXT_RULE), _LINES]
"""Free text people read, lines allowed (a description): as :data:`DisplayName`, with
tab, LF and CR taken. Its length is the using field's."""

Statement = Annotated[
    str, Field(min_length=1, max_length=2000, description=DISPLAY_TEXT_RULE), _LINES
]
"""A reason, a purpose in words, a legal basis: 1 to 2000 characters of
:data:`DisplayText`. (Its lengths are its own, checked before the rule: a field's own
lengths on ``DisplayText | None`` would be checked after it, as a list's.)"""
