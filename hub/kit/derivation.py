"""Keys derived from one root secret with HKDF-SHA-256 (RFC 5869), one ``info`` label
per use, from a root that rotates.

The root is a random secret in a file (hex, as :func:`keyfiles.random_secret` writes
it); :meth:`RootFile.rotate` puts a new one there and keeps the one it replaces in
``<file>.previous``. Each root has an id, the first 4 bytes of HKDF(root,
info=``ROOT_ID_INFO``) in hex, that a value sealed under the root can carry, so that
it still opens, under the previous root, after a rotation. A :class:`RootFile`
re-reads both files when they changed, checked at most every ``reload_interval``
seconds, and at once (at most once a second) when asked for a root id it does not
know: every process sharing the files follows a rotation without a restart.
"""

import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from onceonly.hub.kit import keyfiles

ROOT_ID_INFO = b"onceonly/v1/root-id"
KEY_BYTES = 32
_UNKNOWN_ROOT_RELOAD = 1.0  # at most one forced re-read per second

_Stamp = tuple[int, int, int] | None


def hkdf_sha256(root: bytes, *, info: bytes, length: int = KEY_BYTES) -> bytes:
    """RFC 5869 §2.2 and §2.3 with SHA-256 and no salt (the root is uniformly random,
    so the extract step needs none, §3.1); ``info`` makes each key independent (§3.2)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(root)


class UnknownRoot(LookupError):
    """No root has this id: neither the current root nor the previous one."""


class Root:
    """One root secret and the keys derived from it, each derived once."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.id = hkdf_sha256(secret, info=ROOT_ID_INFO, length=4).hex()
        self._derived: dict[bytes, bytes] = {}

    def derive(self, info: bytes) -> bytes:
        key = self._derived.get(info)
        if key is None:
            key = self._derived[info] = hkdf_sha256(self._secret, info=info)
        return key

    def __repr__(self) -> str:
        return f"Root(id={self.id!r})"  # never the secret


class RootFile:
    """The root in ``path`` (created when ``create`` allows) and the one it replaced.

    Cheap to ask on every request: the files are looked at again only every
    ``reload_interval`` seconds (``clock`` is monotonic time), and re-read only when
    one of them changed.
    """

    def __init__(
        self,
        path: Path,
        *,
        create: bool,
        reload_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        keyfiles.random_secret(path, create=create)
        self._path = path
        self._reload_interval = reload_interval
        self._clock = clock
        self._stamp: tuple[_Stamp, _Stamp] | None = None
        self._roots: dict[str, Root] = {}
        self._next_check = 0.0
        self._forced_at = -_UNKNOWN_ROOT_RELOAD
        self.reload()

    @property
    def previous_path(self) -> Path:
        return self._path.with_name(f"{self._path.name}.previous")

    def current(self) -> Root:
        """The root that derives keys now."""
        self._refresh()
        return self._current

    def by_id(self, root_id: str) -> Root:
        """The current or the previous root, whichever has ``root_id``; re-read first if
        neither has it (another process may have rotated); :class:`UnknownRoot` if none."""
        self._refresh()
        if root_id not in self._roots:
            now = self._clock()
            if now - self._forced_at >= _UNKNOWN_ROOT_RELOAD:
                self._forced_at = now
                self.reload()
        try:
            return self._roots[root_id]
        except KeyError:
            raise UnknownRoot(root_id) from None

    def rotate(self) -> Root:
        """Write a new root, keep the current one as the previous; the new root."""
        keyfiles.rotate_secret(self._path, previous=self.previous_path, nbytes=KEY_BYTES)
        self.reload()
        return self._current

    def reload(self) -> None:
        """Re-read the files if either changed since they were last read."""
        stamp = (_stamp(self._path), _stamp(self.previous_path))
        if stamp != self._stamp:
            current = Root(keyfiles.random_secret(self._path, create=False))
            roots = {current.id: current}
            if stamp[1] is not None:
                previous = Root(keyfiles.random_secret(self.previous_path, create=False))
                roots.setdefault(previous.id, previous)
            self._current, self._roots, self._stamp = current, roots, stamp
        self._next_check = self._clock() + self._reload_interval

    def _refresh(self) -> None:
        if self._clock() >= self._next_check:
            self.reload()


def _stamp(path: Path) -> _Stamp:
    """What changes when a file is replaced (a rename gives it a new inode)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)
