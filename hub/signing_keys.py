"""The hub's signing keys and their rotation, shared by every replica through the keys
directory.

Layout (``<data_dir>/keys/signing/``, files mode 0600, owned like the folder even
when written by root: ``onceonly.hub.kit.keyfiles``)::

    <kid>.jwk      an EC P-256 private JWK; kid = RFC 7638 thumbprint
    state.json     {"keys": [{"kid": ..., "active_from": <unix s>, "retire_at": <unix s> | null}]}

A key is **published** (in the JWKS, accepted on verification) from the moment it is
in ``state.json`` until ``retire_at``; it **signs** from ``active_from`` until the
next key's ``active_from``. ``rotate`` therefore publishes a new key at once, lets it
sign only after a delay (so that every cache of the JWKS, the hub's replicas' and the
adapters', has seen it), and sets the old key's ``retire_at`` to when the last token
it signed has expired. Every replica re-reads ``state.json`` at a short interval, and
at once when a token names a kid it does not know.

Decision: docs/decisions/0010-hub-signing-key-rotation.md.
"""

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from joserfc.jwk import ECKey, KeySet

from onceonly.hub.kit import keyfiles
from onceonly.hub.kit.clock import SYSTEM_CLOCK, Clock
from onceonly.hub.kit.keyfiles import MissingKeyError
from onceonly.hub.kit.problems import Unavailable

STATE_FILE = "state.json"
_LEGACY_FILE = "signing.jwk"  # the single key of hubs before rotation existed
_UNKNOWN_KID_RELOAD = 1.0  # at most one forced re-read per second


@dataclass(frozen=True)
class KeyEntry:
    kid: str
    active_from: int
    retire_at: int | None = None

    def published(self, now: float) -> bool:
        return self.retire_at is None or now < self.retire_at


class KeysUnreadable(Unavailable):
    """A serving hub cannot read a key file it must (one ``state.json`` names, not yet
    copied to this host, or written by another user): 503, not the 500 of an error
    nobody foresaw, for every call that signs or publishes until it can (decision
    0076; ``/readyz`` says which file). ``error`` is what reading it raised."""

    def __init__(self, error: OSError) -> None:
        super().__init__("the hub cannot read its signing keys now; try again later")
        self.error = error


LAST_MOMENT = 253_402_300_799
"""9999-12-31T23:59:59Z: a moment in ``state.json`` past it is no moment (a delay of
10^20 seconds written by a version that took any number)."""


def read_state(directory: Path) -> list[KeyEntry]:
    """The keys ``state.json`` lists; ValueError naming the file when it cannot be used
    (not JSON, not the shape above, a moment before 1970 or after 9999)."""
    path = directory / STATE_FILE
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text())
        return [_entry(entry) for entry in document["keys"]]
    except (ValueError, TypeError, KeyError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{path} cannot be used: {reason}") from None


def _entry(entry: dict[str, object]) -> KeyEntry:
    made = KeyEntry(**entry)  # type: ignore[arg-type]  # checked below
    moments = [made.active_from, *([] if made.retire_at is None else [made.retire_at])]
    if not isinstance(made.kid, str) or not all(
        type(moment) is int and 0 <= moment <= LAST_MOMENT for moment in moments
    ):
        raise ValueError(f"key {made.kid!r}: active_from and retire_at must be moments")
    return made


def signing_entry(entries: list[KeyEntry], now: float) -> KeyEntry:
    """The key that signs at ``now``: the newest whose ``active_from`` has come."""
    active = [e for e in entries if e.active_from <= now and e.published(now)]
    if not active:
        raise MissingKeyError("no hub signing key is active; run `onceonly keys rotate`")
    return max(active, key=lambda e: e.active_from)


class _Lifetimes(Protocol):
    @property
    def access_token_lifetime(self) -> int: ...
    @property
    def request_token_lifetime(self) -> int: ...
    @property
    def clock_skew(self) -> int: ...
    @property
    def signing_key_reload_interval(self) -> float: ...


def retire_margin(settings: _Lifetimes) -> int:
    """The default delay of a rotation, both before the new key signs and before the old
    one leaves the JWKS: an access token's and a request token's lifetime, the clock
    skew and the replicas' reload interval. Every JWKS cache (replicas: 5 s, adapters:
    60 s) has refreshed before the new key signs, and every token the old key signed
    has expired before it is dropped."""
    lifetimes = settings.access_token_lifetime + settings.request_token_lifetime
    return lifetimes + settings.clock_skew + math.ceil(settings.signing_key_reload_interval)


def rotate(directory: Path, *, activate_after: int, retire_margin: int, now: int) -> KeyEntry:
    """Publish a new key now, signing from ``now + activate_after``; retire the keys it
    supersedes ``retire_margin`` seconds after that (their last tokens' lifetime)."""
    with _locked(directory):
        entries = [e for e in read_state(directory) if e.published(now)]
        latest = max((e.active_from for e in entries), default=now)
        key = ECKey.generate_key("P-256", auto_kid=True)
        new = KeyEntry(kid=str(key.kid), active_from=max(now + activate_after, latest + 1))
        _write_key(directory, key)
        retire_at = new.active_from + retire_margin
        kept = [e if e.retire_at is not None else _retired(e, retire_at) for e in entries]
        _write_state(directory, [*kept, new])
        _remove_unlisted(directory, {e.kid for e in kept} | {new.kid})
    return new


def ensure(directory: Path, *, create: bool, now: int) -> None:
    """Make sure a first key exists: adopt a legacy ``keys/signing.jwk``, or (when
    allowed) create one that signs at once."""
    if (directory / STATE_FILE).exists():
        return
    legacy = directory.parent / _LEGACY_FILE
    if not legacy.exists() and not create:
        raise MissingKeyError(f"no hub signing key in {directory}; run `onceonly keys init`")
    with _locked(directory):
        if (directory / STATE_FILE).exists():
            return  # another process created it first
        if legacy.exists():
            key = ECKey.import_key(json.loads(legacy.read_text()))
            key.ensure_kid()
        else:
            key = ECKey.generate_key("P-256", auto_kid=True)
        _write_key(directory, key)
        _write_state(directory, [KeyEntry(kid=str(key.kid), active_from=0)])


def _retired(entry: KeyEntry, retire_at: int) -> KeyEntry:
    return KeyEntry(kid=entry.kid, active_from=entry.active_from, retire_at=retire_at)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    keyfiles.make_folder(directory)
    with keyfiles.locked(directory / ".lock"):
        yield


def _write_key(directory: Path, key: ECKey) -> None:
    text = json.dumps(key.as_dict(private=True))
    keyfiles.replace_atomically(directory / f"{key.kid}.jwk", text.encode())


def _write_state(directory: Path, entries: list[KeyEntry]) -> None:
    document = {"keys": [asdict(e) for e in entries]}
    keyfiles.replace_atomically(directory / STATE_FILE, json.dumps(document, indent=2).encode())


def _remove_unlisted(directory: Path, kids: set[str]) -> None:
    for path in directory.glob("*.jwk"):
        if path.stem not in kids:
            path.unlink(missing_ok=True)


class SigningKeys:
    """The keys as one process sees them: cheap to ask on every request.

    ``state.json`` is re-read when it changed, checked at most every
    ``reload_interval`` seconds, or at once (at most once a second) for an unknown kid.
    ``clock`` says when: its wall time which keys are active and published, its
    monotonic time when to look again.
    """

    def __init__(
        self,
        directory: Path,
        *,
        reload_interval: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._directory = directory
        self._reload_interval = reload_interval
        self._clock = clock
        self._stamp: tuple[int, int] | None = None
        self._next_check = 0.0
        self._forced_at = -_UNKNOWN_KID_RELOAD
        self._entries: list[KeyEntry] = []
        self._keys: dict[str, ECKey] = {}
        self._valid_until = 0.0
        self.reload()

    @property
    def directory(self) -> Path:
        return self._directory

    def signing(self) -> ECKey:
        self._refresh()
        return self._signing

    def verification_keys(self, kid: str | None = None) -> KeySet:
        """The published keys; re-read first if ``kid`` is one we do not know."""
        self._refresh()
        if kid is not None and kid not in self._published_kids:
            now = self._clock.monotonic()
            if now - self._forced_at >= _UNKNOWN_KID_RELOAD:
                self._forced_at = now
                self._reload_serving()
        return self._key_set

    def public_jwks(self) -> dict[str, Any]:
        self._refresh()
        return self._jwks

    def reload(self) -> None:
        """Re-read ``state.json`` and the key files it names, if it changed."""
        path = self._directory / STATE_FILE
        info = path.stat()
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            entries = read_state(self._directory)
            self._keys = {e.kid: self._load_key(e.kid) for e in entries}
            self._entries, self._stamp = entries, stamp
        self._derive(self._clock.time())
        self._next_check = self._clock.monotonic() + self._reload_interval

    def _load_key(self, kid: str) -> ECKey:
        cached = self._keys.get(kid)
        if cached is not None:
            return cached
        key = ECKey.import_key(json.loads((self._directory / f"{kid}.jwk").read_text()))
        key.ensure_kid()
        return key

    def _refresh(self) -> None:
        if self._clock.monotonic() >= self._next_check:
            self._reload_serving()
        elif self._clock.time() >= self._valid_until:
            self._derive(self._clock.time())

    def _reload_serving(self) -> None:
        """:meth:`reload` while serving: a file it cannot read is :class:`KeysUnreadable`."""
        try:
            self.reload()
        except OSError as error:
            raise KeysUnreadable(error) from error

    def _derive(self, now: float) -> None:
        """The views valid at ``now``, and until when they stay valid."""
        published = [e for e in self._entries if e.published(now)]
        self._signing = self._keys[signing_entry(self._entries, now).kid]
        self._published_kids = {e.kid for e in published}
        self._key_set = KeySet([self._keys[e.kid] for e in published])
        self._jwks = {"keys": [_public_jwk(self._keys[e.kid]) for e in published]}
        moments = [e.active_from for e in self._entries if e.active_from > now]
        moments += [e.retire_at for e in published if e.retire_at is not None]
        self._valid_until = min(moments, default=float("inf"))


def _public_jwk(key: ECKey) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": str(key.kid), "alg": "ES256", "use": "sig"}
