"""The REST source: a department's legacy system over HTTP, through httpx."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import anyio
import httpx
from pydantic import Field, field_validator, model_validator

from ._errors import ConfigError
from ._http import Answer, UnreadableAnswer, fetch_bounded
from ._mapping import MISSING, assemble, check_paths
from ._sources import InvalidSourceRecord, ItemBase, RecordSource, SourceUnavailable
from ._store import RecordStore

__all__ = ["MAX_ANSWER_BYTES", "RestItem", "RestSource", "resolve_pointer"]

Record = dict[str, Any]

PLACEHOLDER = "{subject}"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Secrets go in header_env, so that a config file can be shared and committed.
_SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key"}
# Failures after which the request surely did not reach the system's logic.
_RETRIED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)
# Characters that a proxy or server in front of the system may decode or read as a
# path separator before it resolves dot segments (nginx decodes %2F, then resolves ..)
_UNASKABLE_CHARACTERS = frozenset("/\\%")
# The longest answer read by default (a record is some KiB; the hub takes 1 MiB)
MAX_ANSWER_BYTES = 4 * 2**20


class RestItem(ItemBase):
    """``source = "rest"``: the settings of one item's `RestSource`.

    Example (TOML)::

        [items."person.residential-address"]
        source = "rest"
        url = "https://population.internal/api/people/{subject}/address"
        header_env = { Authorization = "POPULATION_API_AUTH" }
        [items."person.residential-address".fields]
        street = "/addr/line1"
        city = "/addr/town"
    """

    source: Literal["rest"]
    url: str = Field(pattern=r"^https?://[^/\s{}]+(/\S*)?$")
    method: Literal["GET", "POST"] = "GET"
    body: dict[str, Any] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    header_env: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=2, ge=0, le=5)
    backoff: float = Field(default=0.2, ge=0, le=10)
    max_answer_bytes: int = Field(default=MAX_ANSWER_BYTES, gt=0, le=256 * 2**20)
    fields: dict[str, str] | None = None
    keep_nulls: bool = False

    @field_validator("url")
    @classmethod
    def _only_subject_placeholder(cls, url: str) -> str:
        others = set(re.findall(r"\{[^}]*\}", url)) - {PLACEHOLDER}
        if others:
            raise ValueError(f"the only placeholder is {PLACEHOLDER} (found {sorted(others)[0]})")
        return url

    @field_validator("headers")
    @classmethod
    def _no_secrets(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in _SECRET_HEADERS:
                raise ValueError(f"{name}: secrets go in header_env (an environment variable)")
        return headers

    @field_validator("header_env")
    @classmethod
    def _env_names(cls, header_env: dict[str, str]) -> dict[str, str]:
        for header, variable in header_env.items():
            if not re.fullmatch(_ENV_NAME, variable):
                raise ValueError(f"{header}: {variable!r} is not an environment variable name")
        return header_env

    @field_validator("fields")
    @classmethod
    def _pointers(cls, fields: dict[str, str] | None) -> dict[str, str] | None:
        for path, pointer in (fields or {}).items():
            if pointer and not pointer.startswith("/"):
                raise ValueError(f"{path}: {pointer!r} is not a JSON pointer (starts with '/')")
        check_paths(fields or {}, many=False)
        return fields

    @model_validator(mode="after")
    def _check(self) -> RestItem:
        if self.body is not None and self.method != "POST":
            raise ValueError("body: only with method = 'POST'")
        if PLACEHOLDER not in self.url and PLACEHOLDER not in repr(self.body):
            raise ValueError(f"put {PLACEHOLDER} in the url (or, with POST, in the body)")
        return self

    def open(self, *, store: RecordStore) -> RecordSource:
        return RestSource(
            self.url,
            method=self.method,
            body=self.body,
            headers={**self.headers, **_from_environment(self.header_env)},
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            max_answer_bytes=self.max_answer_bytes,
            fields=self.fields,
            keep_nulls=self.keep_nulls,
        )


def _from_environment(header_env: Mapping[str, str]) -> dict[str, str]:
    values = {}
    for header, variable in header_env.items():
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"header_env: the environment variable {variable} is not set")
        values[header] = value
    return values


class RestSource:
    """Fetches a record from an HTTP system and maps its JSON answer.

    ``{subject}`` in ``url`` is replaced by the percent-encoded subject, and in the
    string values of a POST ``body`` by the subject itself. A subject that could
    change the path (`_unaskable`) has no record and is not asked for. Connection
    failures and
    5xx answers are retried ``retries`` times, waiting ``backoff`` seconds, then
    twice that, and so on; a timeout is not retried (the system is slow, not down).
    404 means no record. An answer whose body is longer than ``max_answer_bytes``
    (decoded) is an invalid record, and read no further. ``fields`` maps property
    paths to RFC 6901 JSON pointers into the answer; a missing or null one leaves the
    property out (unless ``keep_nulls``). Without ``fields`` the answer is the record
    as it is.

    Example::

        source = RestSource(
            "http://legacy.internal/people/{subject}",
            fields={"street": "/addr/line1", "city": "/addr/town"},
        )
        await source.fetch("person.residential-address", "38001085718")
    """

    def __init__(
        self,
        url: str,
        *,
        method: Literal["GET", "POST"] = "GET",
        body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.2,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        fields: Mapping[str, str] | None = None,
        keep_nulls: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url, self._method, self._body = url, method, body
        self._retries, self._backoff = retries, backoff
        self._max_answer_bytes = max_answer_bytes
        self._fields, self._keep_nulls = fields, keep_nulls
        self._timeout = timeout
        keep_subjects_out_of_httpx_logs()
        self._http = httpx.AsyncClient(
            headers=dict(headers or {}), timeout=timeout, transport=transport
        )

    async def fetch(self, item: str, subject: str) -> Record | None:
        if _unaskable(subject):
            return None
        response = await self._send(self._request(subject))
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise SourceUnavailable(f"the system answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except RecursionError:  # as the provider parses bodies: too deep is not JSON here
            raise InvalidSourceRecord("the system's answer is nested too deeply") from None
        except ValueError as error:
            raise InvalidSourceRecord("the system's answer is not JSON") from error
        return self._record(answer)

    async def probe(self, item: str) -> str:
        """GET the system's base URL: any answer below 500 means it is up."""
        parts = urlsplit(self._url)
        base = f"{parts.scheme}://{parts.netloc}/"
        try:
            response = await self._within_deadline(self._http.build_request("GET", base))
        except httpx.HTTPError as error:
            raise SourceUnavailable(f"cannot reach {base} ({type(error).__name__})") from error
        if response.status_code >= 500:
            raise SourceUnavailable(f"{base} answered HTTP {response.status_code}")
        return f"{base} answers (HTTP {response.status_code})"

    async def aclose(self) -> None:
        await self._http.aclose()

    def _request(self, subject: str) -> httpx.Request:
        url = self._url.replace(PLACEHOLDER, quote(subject, safe=""))
        body = None if self._body is None else _substituted(self._body, subject)
        return self._http.build_request(self._method, url, json=body)

    async def _send(self, request: httpx.Request) -> Answer:
        attempt = 0
        while True:
            outcome = await self._try(request)
            if isinstance(outcome, Answer):
                return outcome
            if attempt >= self._retries:
                raise outcome
            await anyio.sleep(self._backoff * 2**attempt)
            attempt += 1

    async def _try(self, request: httpx.Request) -> Answer | SourceUnavailable:
        """The answer, or the retryable failure; other failures raise."""
        try:
            response = await self._within_deadline(request)
        except UnreadableAnswer as error:
            raise InvalidSourceRecord(f"the system's {error}") from None
        except _RETRIED as error:
            return SourceUnavailable(f"cannot reach the system ({type(error).__name__})")
        except httpx.TimeoutException as error:
            raise SourceUnavailable(f"the system did not answer in {self._timeout} s") from error
        except httpx.HTTPError as error:
            raise SourceUnavailable(f"the request failed ({type(error).__name__})") from error
        if response.status_code >= 500:
            return SourceUnavailable(f"the system answered HTTP {response.status_code}")
        return response

    async def _within_deadline(self, request: httpx.Request) -> Answer:
        """Send ``request`` and read the whole answer within ``timeout`` in all, and at
        most ``max_answer_bytes`` of it (`fetch_bounded`)."""
        sending = _SENDING.set(True)
        try:
            return await fetch_bounded(
                self._http, request, deadline=self._timeout, max_bytes=self._max_answer_bytes
            )
        except TimeoutError:
            raise httpx.TimeoutException(
                f"no whole answer within {self._timeout:g} s", request=request
            ) from None
        finally:
            _SENDING.reset(sending)

    def _record(self, answer: object) -> Record:
        if self._fields is None:
            if not isinstance(answer, dict):
                raise InvalidSourceRecord("the system's answer is not a JSON object")
            return answer

        def read(pointer: str) -> object:
            return resolve_pointer(answer, pointer)

        return assemble(self._fields, read, keep_nulls=self._keep_nulls)


# Whether the current task is sending a RestSource's request (whose URL holds a subject)
_SENDING: ContextVar[bool] = ContextVar("onceonly_rest_sending", default=False)
# httpx logs each request's URL at INFO; httpcore, at DEBUG, the answer's header fields
_HTTPX_LOGGER = "httpx"
_HTTPCORE_LOGGERS = (
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _WithoutSubjects(logging.Filter):
    """What httpx and httpcore log of a RestSource's requests, whose URL (and the
    system's answer's header fields: a ``Location`` may repeat it) can hold a subject:
    httpx's line keeps the method, scheme, host, port and status, with the URL's path
    and query withheld; a line of another shape, and httpcore's, are not logged. The
    lines of every other client in the process (the host program's) pass as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SENDING.get():
            return True
        args = record.args
        if record.name != _HTTPX_LOGGER or not isinstance(args, tuple):
            return False
        if not any(isinstance(arg, httpx.URL) for arg in args):
            return False
        record.args = tuple(
            _without_path(arg) if isinstance(arg, httpx.URL) else arg for arg in args
        )
        return True


def _without_path(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}/(path withheld)"


_FILTER = _WithoutSubjects()


def keep_subjects_out_of_httpx_logs() -> None:
    """Install, once, the filter on httpx's and httpcore's loggers that keeps the
    REST source's subjects out of them (`_WithoutSubjects`), whatever the program
    that embeds the adapter logs (``logging.basicConfig(level=logging.INFO)`` would
    otherwise write each URL, subject and all)."""
    for name in (_HTTPX_LOGGER, *_HTTPCORE_LOGGERS):
        logging.getLogger(name).addFilter(_FILTER)  # no-op when it is there already


def _unaskable(subject: str) -> bool:
    """Whether ``subject`` is never asked for: it holds ``/``, ``\\`` or ``%``, or is
    empty or made only of dots (``.``, ``..``: then its one segment is a dot segment).

    Percent-encoding keeps such a subject one segment only as far as the first
    intermediary: nginx (``proxy_pass http://backend/api/;``) decodes ``%2F`` and then
    resolves dot segments, some servers read ``\\`` as ``/`` or decode ``%`` twice, and
    httpx itself resolves ``.`` and ``..``. Asked, the system would answer for another
    path (``../admin`` → ``/api/v2/admin``) with the adapter's credentials; no subject
    the system knows is written so, so it has no record there.

    >>> _unaskable("../admin"), _unaskable(".."), _unaskable("a..b")
    (True, True, False)
    """
    return bool(_UNASKABLE_CHARACTERS & set(subject)) or subject.strip(".") == ""


def resolve_pointer(document: object, pointer: str) -> object:
    """RFC 6901 §4: the value ``pointer`` names in ``document``, or ``MISSING``.

    >>> resolve_pointer({"addr": {"lines": ["Pikk 1"]}}, "/addr/lines/0")
    'Pikk 1'
    """
    if pointer == "":
        return document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, dict) and token in document:
            document = document[token]
        elif isinstance(document, list) and re.fullmatch(r"0|[1-9][0-9]*", token):
            if int(token) >= len(document):
                return MISSING
            document = document[int(token)]
        else:
            return MISSING
    return document


def _substituted(value: Any, subject: str) -> Any:
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, subject)
    if isinstance(value, dict):
        return {key: _substituted(inner, subject) for key, inner in value.items()}
    if isinstance(value, list):
        return [_substituted(inner, subject) for inner in value]
    return value
