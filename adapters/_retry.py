"""When the consumer SDK sends a request again, and how long it waits first.

A request that is safe to repeat is sent again after a connection failure, a ``503``,
or a ``429`` that says when to come back (``Retry-After``, RFC 9110 §10.2.3); a
request that is not is sent again only when it never left (the connection could not
be made). A call shares one budget across all its requests (`Retries`): at most
``retries`` repeats and ``max_wait`` seconds of waiting in all, so that the protocol's
own one-time retries (a DPoP nonce, a new token) cannot multiply the waits.
"""

from __future__ import annotations

import re
import ssl
import time
from datetime import UTC, datetime

import httpx

from ._errors import HubUnavailable

__all__ = ["BACKOFF", "Retries", "hub_unreachable", "retry_after"]

BACKOFF = 0.1  # the first wait after a failure that names none; doubled each time
# A Retry-After of more digits than this is years away: read as this many seconds
_FAR = 9_999_999_999
_DELAY_SECONDS = re.compile(r"[0-9]+")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = "(" + "|".join(_MONTHS) + ")"
_CLOCK = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
# RFC 9110 §5.6.7: IMF-fixdate, and the two obsolete forms a recipient must accept
_IMF_FIXDATE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_CLOCK} GMT"
)
_RFC850_DATE = re.compile(
    r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
    rf"([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_CLOCK} GMT"
)
_ASCTIME_DATE = re.compile(
    rf"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MONTH} ([0-9 ][0-9]) {_CLOCK} ([0-9]{{4}})"
)
# Errors that say the request never reached the hub: sending it again repeats nothing
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait that a ``Retry-After`` field value (RFC 9110 §10.2.3) asks for,
    at ``now`` (seconds since the epoch): its delay-seconds, or the time left until its
    HTTP-date (0 once passed). ``None`` when absent or malformed: anything else, a
    list of values, a fraction, a sign, a date in a form §5.6.7 does not name."""
    text = (value or "").strip()
    if _DELAY_SECONDS.fullmatch(text):
        digits = text.lstrip("0") or "0"  # leading zeros add no time: '0005' is 5 s
        return float(_FAR if len(digits) > len(str(_FAR)) else min(int(digits), _FAR))
    moment = _http_date(text, now=now)
    return None if moment is None else max(0.0, moment - now)


def _http_date(text: str, *, now: float) -> float | None:
    """The moment an HTTP-date names, in seconds since the epoch, or ``None``."""
    if match := _IMF_FIXDATE.fullmatch(text):
        day, month, year, *clock = match.groups()
    elif match := _RFC850_DATE.fullmatch(text):
        day, month, short_year, *clock = match.groups()
        year = str(_full_year(int(short_year), now=now))
    elif match := _ASCTIME_DATE.fullmatch(text):
        month, day, *clock, year = match.groups()
    else:
        return None
    hour, minute, second = (int(part) for part in clock)
    try:
        moment = datetime(
            int(year), _MONTHS.index(month) + 1, int(day), hour, minute, second, tzinfo=UTC
        )
    except ValueError:  # 31 Feb, 25:00:00
        return None
    return moment.timestamp()


def _full_year(short: int, *, now: float) -> int:
    """RFC 9110 §5.6.7: a two-digit year that would be more than 50 years ahead is the
    most recent past year with those digits."""
    this_year = datetime.fromtimestamp(now, UTC).year
    year = this_year - this_year % 100 + short
    return year - 100 if year > this_year + 50 else year


class Retries:
    """One call's budget of repeats: at most ``retries`` requests sent again and
    ``max_wait`` seconds of waiting, across every request the call makes."""

    def __init__(self, *, retries: int, max_wait: float) -> None:
        self._left, self._wait_left = retries, max_wait
        self._backoff = BACKOFF

    def delay_after(
        self, outcome: httpx.Response | httpx.TransportError, *, repeatable: bool
    ) -> float | None:
        """Seconds to wait before sending the request again, or ``None`` to stop."""
        wait = self._asked_wait(outcome, repeatable=repeatable)
        if wait is None or self._left == 0 or wait > self._wait_left:
            return None
        self._left -= 1
        self._wait_left -= wait
        return wait

    def _asked_wait(
        self, outcome: httpx.Response | httpx.TransportError, *, repeatable: bool
    ) -> float | None:
        """The wait before a repeat that ``outcome`` calls for, ``None`` for none."""
        if isinstance(outcome, httpx.TransportError):
            return self._next_backoff() if repeatable or isinstance(outcome, _NOT_SENT) else None
        if outcome.status_code not in (429, 503) or not repeatable:
            return None
        asked = retry_after(outcome.headers.get("retry-after"), now=time.time())
        if asked is None:  # only a 503 says "try again" with no time named
            return self._next_backoff() if outcome.status_code == 503 else None
        return asked

    def _next_backoff(self) -> float:
        wait, self._backoff = self._backoff, self._backoff * 2
        return wait

    @staticmethod
    def settle(outcome: httpx.Response | httpx.TransportError) -> httpx.Response | HubUnavailable:
        """The last outcome as the caller gets it: the hub's response, or, for a request
        that never got one, `HubUnavailable` (returned, not raised: the consumer SDK's
        flows raise it where they sent the request)."""
        if isinstance(outcome, httpx.TransportError):
            error = hub_unreachable(outcome)
            error.__cause__ = outcome
            return error
        return outcome


def hub_unreachable(error: httpx.TransportError) -> HubUnavailable:
    """Why a request reached no hub, in one line: a hub certificate the adapter does
    not trust (a private CA's) is said so, with the fix; any other fault by its kind."""
    untrusted = _certificate_error(error)
    if untrusted is None:
        return HubUnavailable(f"cannot reach the hub: {type(error).__name__}")
    return HubUnavailable(
        f"the hub's TLS certificate is not trusted ({untrusted.verify_message}): give the"
        " adapter the certificate authority that issued it, a PEM file, in SSL_CERT_FILE"
    )


def _certificate_error(error: BaseException | None) -> ssl.SSLCertVerificationError | None:
    for _ in range(10):  # httpx wraps the ssl module's error in its own
        if error is None or isinstance(error, ssl.SSLCertVerificationError):
            return error
        error = error.__cause__ or error.__context__
    return None
