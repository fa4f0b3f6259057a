"""Secret files on disk: created once with mode 0600, then only read.

A key that exists is never overwritten, except by :func:`rotate_secret`, which keeps
the one it replaces. A key that is missing is created only when the caller allows it
(development); in production an operator provisions keys with ``onceonly keys init``
and a missing key stops the start-up.

Run as root (``sudo onceonly keys rotate``), every file and folder made here gets the
owner and group of the folder it is made in, before it is put in place: the hub reads
its keys as its own user, and a key only root can read stops every replica
(decision 0076).
"""

import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from joserfc.jwk import ECKey, OKPKey


class MissingKeyError(RuntimeError):
    """A key file that must exist does not."""


class KeyOwnerError(RuntimeError):
    """Run as root, a new key file cannot be given its folder's owner."""


def own_like_folder(made: int | Path, folder: Path) -> None:
    """Give ``made`` (a file descriptor or a path, just made in ``folder``) the owner and
    group of ``folder`` when this process runs as root, which would otherwise own it;
    :class:`KeyOwnerError` if it cannot (a file system that refuses root's chown)."""
    if os.geteuid() != 0:
        return
    owner = os.stat(folder)
    try:
        os.chown(made, owner.st_uid, owner.st_gid)
    except OSError as error:
        raise KeyOwnerError(
            f"cannot give a new file in {folder} to its owner (uid {owner.st_uid}, gid"
            f" {owner.st_gid}): {error.strerror}; run the command as that user"
        ) from None


def make_folder(path: Path) -> None:
    """``path`` and its missing parents, mode 0700, each owned like its parent."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it first
        own_like_folder(folder, folder.parent)


def _write_secret(path: Path, data: bytes) -> None:
    make_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        try:
            own_like_folder(handle.fileno(), path.parent)
        except KeyOwnerError:
            path.unlink(missing_ok=True)
            raise
        handle.write(data)


def _read_or_create(path: Path, *, create: bool, make: Callable[[], bytes]) -> bytes:
    if path.exists():
        return path.read_bytes()
    if not create:
        raise MissingKeyError(f"key file {path} is missing; run `onceonly keys init`")
    data = make()
    try:
        _write_secret(path, data)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes()
    return data


def ec_signing_key(path: Path, *, create: bool) -> ECKey:
    """Load (or create) an EC P-256 private JWK whose kid is its RFC 7638 thumbprint."""

    def make() -> bytes:
        key = ECKey.generate_key("P-256", auto_kid=True)
        return json.dumps(key.as_dict(private=True)).encode()

    return ECKey.import_key(json.loads(_read_or_create(path, create=create, make=make)))


def ed25519_key(path: Path, *, create: bool) -> OKPKey:
    """Load (or create) an Ed25519 private JWK (used to sign audit checkpoints)."""

    def make() -> bytes:
        key = OKPKey.generate_key("Ed25519", auto_kid=True)
        return json.dumps(key.as_dict(private=True)).encode()

    return OKPKey.import_key(json.loads(_read_or_create(path, create=create, make=make)))


def rotate_ed25519_key(
    path: Path, *, retired: Path, keep: Callable[[OKPKey], bytes]
) -> tuple[OKPKey, OKPKey]:
    """Replace the Ed25519 key in ``path`` with a new one, writing to ``retired`` (which
    must not exist) what ``keep`` makes of the one it replaces (its public part: the
    private key is not kept anywhere): the new key and the old. The record of the old
    key is written first, each file replaced atomically: a crash in between leaves the
    old key in ``path`` and recorded in ``retired``, never a key lost (running the
    rotation again finishes it). One rotation at a time (a lock file beside ``path``)."""
    with locked(path.with_name(f".{path.name}.lock")):
        if not path.exists():
            raise MissingKeyError(f"key file {path} is missing; run `onceonly keys init`")
        if retired.exists():
            raise FileExistsError(f"{retired} exists: a key was retired at the same second")
        old = OKPKey.import_key(json.loads(path.read_bytes()))
        make_folder(retired.parent)
        replace_atomically(retired, keep(old))
        key = OKPKey.generate_key("Ed25519", auto_kid=True)
        replace_atomically(path, json.dumps(key.as_dict(private=True)).encode())
    return key, old


def random_secret(path: Path, *, create: bool, nbytes: int = 32) -> bytes:
    """Load (or create) a random secret, stored hex-encoded."""
    raw = _read_or_create(path, create=create, make=lambda: secrets.token_hex(nbytes).encode())
    return bytes.fromhex(raw.decode().strip())


def rotate_secret(path: Path, *, previous: Path, nbytes: int = 32) -> None:
    """Replace the random secret in ``path`` with a new one, keeping the one it replaces
    in ``previous``. Each file is replaced atomically (written, flushed to disk, then
    renamed), ``previous`` first: a crash in between leaves the old secret in both, never
    a secret lost. One rotation at a time (a lock file beside ``path``)."""
    with locked(path.with_name(f".{path.name}.lock")):
        if not path.exists():
            raise MissingKeyError(f"key file {path} is missing; run `onceonly keys init`")
        replace_atomically(previous, path.read_bytes())
        replace_atomically(path, secrets.token_hex(nbytes).encode())


@contextmanager
def locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (made, owned like its folder, if
    missing) while the block runs: one writer at a time across processes."""
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        own_like_folder(descriptor, lock.parent)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file (mode 0600, owned like its folder), flush it to disk
    and rename it to ``path``: a reader sees the old file or the new one whole, and a
    crash leaves one of them."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(descriptor, 0o600)
        own_like_folder(descriptor, path.parent)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def random_token(path: Path, *, create: bool, nbytes: int = 32) -> str:
    """Load (or create) a random URL-safe token (a bearer secret)."""
    raw = _read_or_create(path, create=create, make=lambda: secrets.token_urlsafe(nbytes).encode())
    return raw.decode().strip()
