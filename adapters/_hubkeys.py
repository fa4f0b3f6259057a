"""What an adapter reads from its hub's public endpoints, fetched lazily and cached:
the issuer (RFC 8414 metadata), the signing keys (JWKS) and item schemas."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from ._errors import HubUnavailable, NotFound
from ._http import UnreadableAnswer, fetch_bounded
from ._retry import hub_unreachable
from ._validation import RecordValidator

__all__ = ["HubDirectory"]

# An unknown kid makes us refetch the JWKS, but not more often than this, so that
# tokens with made-up kids cannot make the adapter hammer its hub.
_JWKS_REFRESH_INTERVAL = 2.0
# Keys are refetched at this age in any case: a hub publishes a new signing key long
# before it signs with it (docs/decisions/0010), so the adapter knows it in time.
_JWKS_MAX_AGE = 60.0
# Keys the hub could not confirm for this long are no longer trusted (decision 0061): a
# key the hub withdrew must stop holding even while its JWKS cannot be fetched.
JWKS_MAX_STALENESS = 24 * 3600.0
# Each read of the hub is whole within this many seconds (the hub waits as long for an
# adapter's answer, owner_timeout): the keys are read under a lock every query of an
# unknown kid, or of keys a minute old, waits on, so a hub (or proxy) that trickles its
# answer would hold them all. httpx's timeout bounds each read only.
HUB_DEADLINE = 5.0
# The longest answer read from the hub: a JWKS of a few EC keys is some hundred bytes
# each; a schema, its metadata some KiB
_MAX_JWKS_BYTES = 64 * 1024
_MAX_DOCUMENT_BYTES = 4 * 2**20

logger = logging.getLogger("adapters.hubkeys")


class HubDirectory:
    """Cached reads of a hub's discovery document, JWKS and schemas.

    Every method raises `HubUnavailable` when the hub cannot be reached or answers
    something unexpected, and `NotFound` when the hub says the item does not exist.
    A hub that has no discovery document or JWKS (a 404 from a proxy in front of it,
    a wrong path in ``hub_url``) is unavailable too: no item is unknown for that.
    """

    def __init__(
        self,
        hub_url: str,
        *,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
        deadline: float = HUB_DEADLINE,
    ) -> None:
        self._hub_url = hub_url.rstrip("/")
        self._http = http
        self._deadline = deadline
        self._clock = clock
        self._issuer: str | None = None
        self._keys: KeySet | None = None
        self._keys_fetched_at = -_JWKS_REFRESH_INTERVAL  # the last attempt
        self._keys_confirmed_at = -JWKS_MAX_STALENESS  # the last JWKS read
        self._keys_lock = asyncio.Lock()
        self._validators: dict[tuple[str, int], RecordValidator] = {}

    async def issuer(self) -> str:
        if self._issuer is None:
            metadata = await self._get("/.well-known/oauth-authorization-server")
            issuer = metadata.get("issuer")
            if not isinstance(issuer, str) or not issuer:
                raise HubUnavailable("the hub's metadata has no issuer")
            self._issuer = issuer
        return self._issuer

    async def signing_key(self, kid: str) -> Key | None:
        """The hub key named ``kid``; the JWKS is refetched once if ``kid`` is unknown,
        and whenever it is older than a minute. While the hub cannot be reached, the
        keys read last serve for `JWKS_MAX_STALENESS` (24 h) after that read, no longer.

        :raises HubUnavailable: no keys could be had that are fresh enough.
        """
        if self._keys is not None and self._clock() - self._keys_fetched_at >= _JWKS_MAX_AGE:
            async with self._keys_lock:
                await self._refresh_keys_if_reachable()
        if self._keys is not None and self._stale():
            raise HubUnavailable(
                f"the hub's keys were last read {self._age_hours():.0f} h ago, more than"
                f" {JWKS_MAX_STALENESS / 3600:g} h, and cannot be read now"
            )
        key = self._find(kid)
        if key is not None:
            return key
        async with self._keys_lock:
            key = self._find(kid)
            if key is None and self._clock() - self._keys_fetched_at >= _JWKS_REFRESH_INTERVAL:
                await self._refresh_keys()
                key = self._find(kid)
        return key

    async def unreachable(self) -> str | None:
        """Why the hub's issuer or keys cannot be had now (fresh enough to check its
        tokens), or ``None``: what ``/readyz`` asks."""
        try:
            await self.issuer()
            if self._keys is None or self._clock() - self._keys_fetched_at >= _JWKS_MAX_AGE:
                async with self._keys_lock:
                    if self._keys is None:
                        await self._refresh_keys()
                    else:
                        await self._refresh_keys_if_reachable()
        except HubUnavailable as error:
            return error.detail
        if self._stale():
            return f"the hub's keys were last read {self._age_hours():.0f} h ago"
        return None

    def _stale(self) -> bool:
        return self._clock() - self._keys_confirmed_at > JWKS_MAX_STALENESS

    def _age_hours(self) -> float:
        return (self._clock() - self._keys_confirmed_at) / 3600

    async def validator(self, item: str, version: int) -> RecordValidator:
        """The compiled schema of ``item`` at ``version``."""
        cached = self._validators.get((item, version))
        if cached is None:
            cached = RecordValidator(await self.schema(item, version))
            self._validators[(item, version)] = cached
        return cached

    async def schema(self, item: str, version: int) -> dict[str, Any]:
        body = await self._get(
            f"/v1/items/{quote(item, safe='')}/versions/{version}", of_an_item=True
        )
        schema = body.get("schema")
        if body.get("item") != item or body.get("version") != version:
            raise HubUnavailable(f"the hub answered another item or version than {item} v{version}")
        if not isinstance(schema, dict):
            raise HubUnavailable(f"the hub's answer for {item} v{version} has no schema")
        return schema

    async def latest_version(self, item: str) -> int:
        body = await self._get(f"/v1/items/{quote(item, safe='')}", of_an_item=True)
        version = body.get("latest_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise HubUnavailable(f"the hub's entry for {item} has no latest_version")
        return version

    def _find(self, kid: str) -> Key | None:
        if self._keys is None:
            return None
        return next((key for key in self._keys if key.kid == kid), None)

    async def _refresh_keys_if_reachable(self) -> None:
        if self._clock() - self._keys_fetched_at < _JWKS_MAX_AGE:
            return  # another task refreshed them while we waited for the lock
        try:
            await self._refresh_keys()
        except HubUnavailable as error:  # keep the keys we have; a later request tries again
            logger.warning(
                "the hub's keys could not be refetched (%s); using those read %.1f h ago,"
                " for at most %g h after that read",
                error.detail,
                self._age_hours(),
                JWKS_MAX_STALENESS / 3600,
            )

    async def _refresh_keys(self) -> None:
        self._keys_fetched_at = self._clock()
        body = await self._get("/.well-known/jwks.json", max_bytes=_MAX_JWKS_BYTES)
        try:
            self._keys = KeySet.import_key_set(body)  # type: ignore[arg-type]
        except (JoseError, KeyError, TypeError, ValueError) as error:
            raise HubUnavailable("the hub's JWKS cannot be read") from error
        self._keys_confirmed_at = self._keys_fetched_at

    async def _get(
        self, path: str, *, of_an_item: bool = False, max_bytes: int = _MAX_DOCUMENT_BYTES
    ) -> dict[str, Any]:
        """The JSON object at ``path``, read whole within the directory's deadline and
        at most ``max_bytes`` long. A 404 is `NotFound` (``unknown-item``) only for
        ``of_an_item``: the hub's own documents are always there, so any answer but 200
        to them, 404 too, means the hub cannot be had (`HubUnavailable`)."""
        request = self._http.build_request("GET", self._hub_url + path)
        try:
            response = await fetch_bounded(
                self._http, request, deadline=self._deadline, max_bytes=max_bytes
            )
        except httpx.TransportError as error:
            raise hub_unreachable(error) from error
        except TimeoutError:
            raise HubUnavailable(
                f"the hub did not answer GET {path} whole within {self._deadline:g} s"
            ) from None
        except UnreadableAnswer as error:
            raise HubUnavailable(f"the hub's {error} (GET {path})") from None
        except httpx.HTTPError as error:  # a body cut short, a broken chunked framing
            raise HubUnavailable(f"the hub's answer to GET {path} cannot be read") from error
        if response.status_code == 404 and of_an_item:
            raise NotFound(f"the hub has no {path}", problem_type="unknown-item")
        if response.status_code != 200:
            raise HubUnavailable(f"the hub answered {response.status_code} to GET {path}")
        try:
            body = response.json()
        except ValueError as error:
            raise HubUnavailable(f"the hub answered GET {path} with no JSON") from error
        if not isinstance(body, dict):
            raise HubUnavailable(f"the hub answered GET {path} with no JSON object")
        return body
