"""``onceonly serve|migrate|keys|config|backup|restore``: on the hub's own machine,
with its settings.

A start-up failure of ``serve``, ``migrate`` or ``keys init`` (a setting that does not
parse, a key file missing, the database unreachable or behind) is one line on
standard error, in the format of the hub's logs, and exit status 1
(:mod:`onceonly.hub.cli.startup`).
"""

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onceonly.hub.cli.common import StartupFailure, add_command
from onceonly.hub.cli.output import Shape, add_output_option, form_of, show

if TYPE_CHECKING:
    from onceonly.hub.audit.notes import Signer
    from onceonly.hub.config import Settings


def _serve(args: argparse.Namespace) -> int:
    """Check what the hub needs first (startup.check), then serve with uvicorn."""
    import uvicorn

    from onceonly.hub.cli import startup
    from onceonly.hub.cli.servers import cannot_listen, server_options

    if "ONCEONLY_ISSUER" not in os.environ and not os.environ.get("ONCEONLY_CONFIG"):
        os.environ["ONCEONLY_ISSUER"] = f"http://{args.host}:{args.port}"
    try:
        settings = startup.load_settings()
        startup.ensure_startable(settings)
    except StartupFailure as failure:
        raise StartupFailure([f"the hub cannot start: {failure}"]) from None
    busy = cannot_listen(args.host, args.port)
    if busy is not None:
        raise StartupFailure(
            [f"the hub cannot start: it cannot listen on {args.host}:{args.port}: {busy}"]
        )
    startup.warn_of_risky_settings(settings)
    uvicorn.run(
        "onceonly.hub.app:create_app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        proxy_headers=args.proxy_headers,
        **server_options(head_timeout=settings.head_timeout),
    )
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from onceonly.hub.cli import startup

    url = startup.load_settings().resolved_database_url  # first: Alembic only if it loads
    # a fresh data directory: the probe makes the folder 0700 and the file 0600, which
    # SQLite would otherwise make under the umask (or fail to open without the folder)
    unreachable = startup.database_unreachable(url, make_file=True)
    if unreachable:
        raise StartupFailure(
            [f"cannot reach the database {startup.database_name(url)}: {unreachable}"]
        )
    from alembic.util.exc import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from onceonly.hub import migrate
    from onceonly.hub.db import driver_message

    try:
        migrated = migrate.upgrade(url)
    except migrate.NewerDatabase as error:
        raise StartupFailure([f"cannot migrate {startup.database_name(url)}: {error}"]) from None
    except (SQLAlchemyError, CommandError) as error:
        reason = startup.without_secrets(driver_message(error), url)
        raise StartupFailure([f"cannot migrate {startup.database_name(url)}: {reason}"]) from None
    print(f"{startup.database_name(url)}: {migrated}")
    return 0


def _keys_init(args: argparse.Namespace) -> int:
    """Create every key the hub loads at start-up (what exists is kept, never replaced);
    with ``--change-audit-origin``, rename the audit log after ``audit_origin``."""
    from onceonly.hub.cli import startup

    settings = startup.load_settings()  # first: the key modules only if it loads
    startup.refuse_new_keys_for_old_data(settings)
    from onceonly.hub.audit.checkpoints import load_signer
    from onceonly.hub.keys import HubKeys
    from onceonly.hub.kit import logs

    renamed_from = settings.kept_audit_origin
    try:
        origin = _origin_to_keep(settings, change=args.change_audit_origin)
        keys = HubKeys.load(settings.keys_dir, create=True)
        signer = load_signer(keys_dir=settings.keys_dir, origin=origin, create=True)
    except (RuntimeError, OSError, ValueError) as error:
        raise StartupFailure([f"no keys created: {logs.one_line(error)}"]) from None
    print(f"keys are in {settings.keys_dir} (signing key id {keys.kid})")
    print(f"audit log {origin}; verifier key for auditors: {signer.verifier}")
    if renamed_from is not None and renamed_from != origin:
        _say_renamed(signer, renamed_from=renamed_from, settings=settings)
    return 0


def _say_renamed(signer: "Signer", *, renamed_from: str, settings: "Settings") -> None:
    """What must follow a rename of the audit log (decision 0089 and its follow-up): the
    one command each auditor runs, naming the old verifier key so that their state of
    the old name is read (without it, a history rewritten at the rename passes)."""
    from onceonly.hub.audit.notes import Verifier

    old = Verifier.of(renamed_from, signer.verifier.public_key)
    print(
        f"the audit log was named {renamed_from}: copy {settings.keys_dir}/audit-origin to every"
        " replica and restart them all. Then every auditor must pin the new verifier key"
        " above, in place of the old one, and run once, naming the old one:\n"
        f"  onceonly audit verify --hub {settings.issuer} --key {signer.verifier}"
        f" --previous-key {old}\n"
        "(it continues from their state file of the old name, and finds a history changed"
        " at the rename). Until the log grows, the hub serves its latest checkpoint under"
        " the old name, which the new key does not verify (exit 1): wait for the next"
        ' entry (docs/operations.md, "Changing the audit log\'s name")'
    )


def _origin_to_keep(settings: "Settings", *, change: bool) -> str:
    """The origin ``keys init`` keeps: the resolved one (a change refused), or with
    ``--change-audit-origin`` the configured ``audit_origin`` itself."""
    if not change:
        return settings.resolved_audit_origin  # production: ONCEONLY_AUDIT_ORIGIN
    if not settings.audit_origin:
        raise RuntimeError("--change-audit-origin needs the new name in ONCEONLY_AUDIT_ORIGIN")
    return settings.audit_origin


def _keys_rotate(args: argparse.Namespace) -> int:
    """Publish a new signing key now; it signs after the delay (docs/decisions/0010)."""
    import time

    from onceonly.hub import signing_keys
    from onceonly.hub.cli import startup
    from onceonly.hub.keys import HubKeys
    from onceonly.hub.kit import logs

    settings = startup.load_settings()
    _refuse_no_keys(settings)
    margin = signing_keys.retire_margin(settings)
    delay = margin if args.activate_after is None else args.activate_after
    try:
        HubKeys.load(settings.keys_dir, create=False)
        entry = signing_keys.rotate(
            settings.keys_dir / "signing",
            activate_after=delay,
            retire_margin=margin,
            now=int(time.time()),
        )
    except (RuntimeError, OSError, ValueError) as error:  # a key missing, damaged, not ours
        raise StartupFailure([f"not rotated: {logs.one_line(error)}"]) from None
    signs_from, until = _utc(entry.active_from), _utc(entry.active_from + margin)
    print(f"new signing key {entry.kid}: published now, signs from {signs_from} (+{delay} s)")
    print(f"the key it replaces stays published until {until}")
    return 0


MAX_ACTIVATE_AFTER = 30 * 24 * 3600
"""The longest ``keys rotate --activate-after``: a key published a month before it
signs is a rotation planned, not one under way."""


def _delay(text: str) -> int:
    """``--activate-after``: whole seconds, 0 to :data:`MAX_ACTIVATE_AFTER`."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if not 0 <= seconds <= MAX_ACTIVATE_AFTER:
        raise argparse.ArgumentTypeError(
            f"{text} is not between 0 and {MAX_ACTIVATE_AFTER} seconds (30 days)"
        )
    return seconds


def _port(text: str) -> int:
    """``serve --port``: a TCP port, 1 to 65535, or 0 for any free one (uvicorn would
    take 99999 modulo 65536 and advertise 99999)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1 to 65535, or 0: any free one)")
    return port


def _refuse_no_keys(settings: "Settings") -> None:
    """StartupFailure when the keys directory holds no signing keys: a rotation or a
    listing there is a wrong data directory, not a hub (which a development start
    would fill with a whole new key set)."""
    from onceonly.hub.signing_keys import STATE_FILE

    legacy = settings.keys_dir / "signing.jwk"  # before rotation: adopted by the first load
    if not (settings.keys_dir / "signing" / STATE_FILE).exists() and not legacy.exists():
        raise StartupFailure(
            [
                f"no keys in {settings.keys_dir}: run `onceonly keys init` first, or set"
                " ONCEONLY_DATA_DIR to the hub's"
            ]
        )


def _utc(seconds: int) -> str:
    """A moment as operators read it (RFC 3339, UTC): 2026-12-07T10:45:00Z."""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _keys_rotate_derivation(_: argparse.Namespace) -> int:
    """A new derivation root, every TOTP secret re-sealed under it (docs/decisions/0017)."""
    import asyncio

    from onceonly.hub.app import prepare_database
    from onceonly.hub.cli import startup
    from onceonly.hub.db import make_engine
    from onceonly.hub.keys import HubKeys
    from onceonly.hub.people import service

    settings = startup.load_settings()
    _refuse_no_keys(settings)

    async def rotate(keys: HubKeys) -> "service.Resealed":
        await prepare_database(settings)
        engine = make_engine(settings.resolved_database_url)
        try:
            return await service.rotate_derivation(engine, keys=keys)
        finally:
            await engine.dispose()

    try:
        keys = HubKeys.load(settings.keys_dir, create=False)
        resealed = asyncio.run(rotate(keys))
    except (RuntimeError, OSError) as error:  # a key file missing or not ours, the schema behind
        print(f"not rotated: {error}", file=sys.stderr)
        return 1
    print(f"new derivation root {resealed.root_id}; the one it replaced is kept as previous")
    print(f"{resealed.count} one-time-code secrets re-sealed under it")
    if resealed.unopened:
        print(
            "these people's one-time-code secrets do not open; reset them"
            f" (onceonly people put NAME --reset-totp): {', '.join(sorted(resealed.unopened))}",
            file=sys.stderr,
        )
    return 0


def _keys_rotate_checkpoint(_: argparse.Namespace) -> int:
    """A new audit checkpoint key; the one it replaces is kept (docs/decisions/0091)."""
    from datetime import UTC, datetime

    from onceonly.hub.audit.checkpoints import KEY_FILE, load_signer, rotate_signer
    from onceonly.hub.cli import startup
    from onceonly.hub.kit import logs

    settings = startup.load_settings()
    directory = settings.keys_dir
    try:
        origin = settings.resolved_audit_origin  # a changed name refused (decision 0089)
        load_signer(
            keys_dir=directory,
            origin=origin,
            create=False,
            refuse_retired=False,  # a key restored from an old backup is replaced too
        )
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(
                f"{directory} is not writable by this user: run the command as the hub's"
                " user where the keys are kept (a read-only mount, such as a Kubernetes"
                " Secret's, is changed at its source)"
            )
        rotated = rotate_signer(keys_dir=directory, origin=origin, now=datetime.now(UTC))
    except (RuntimeError, OSError, ValueError) as error:  # a key missing, damaged, not ours
        raise StartupFailure([f"not rotated: {logs.one_line(error)}"]) from None
    print(f"audit log {origin}; new verifier key for auditors: {rotated.signer.verifier}")
    print(
        f"the key it replaces is retired: its verifier key ({rotated.retired}) is kept in"
        f" {rotated.kept}, its private key nowhere (old backups still hold it)"
    )
    boundary = _rotation_boundary(settings)
    if isinstance(boundary, int):
        print(
            f"rotation boundary: {boundary} entries (the latest checkpoint); auditors name"
            f" the old key as --previous-key {rotated.retired}@{boundary}"
        )
    else:
        print(f"rotation boundary: unknown ({boundary})", file=sys.stderr)
    print(
        "next: restart every replica (each loads the key when it starts; copy"
        f" {directory}/{KEY_FILE} to every host first if they do not share the keys"
        " directory), then publish to every auditor, the way the first key was published,"
        " the new verifier key AND the rotation boundary: they pin the new key and name the"
        " old one once as --previous-key OLD@SIZE; a checkpoint signed by the old key alone"
        " counts as evidence up to SIZE entries, never past it. If a replica still ran on"
        " the old key after this command, it may have signed larger checkpoints until its"
        " restart: then SIZE is that of the checkpoint the hub cosigns when restarted (the"
        " latest of GET /v1/audit/checkpoints whose note carries both keys' signatures)"
        " (docs/operations.md)"
    )
    return 0


def _rotation_boundary(settings: "Settings") -> int | str:
    """The size of the latest stored checkpoint, which the retired key signed last (the
    rotation's boundary, decision 0091), or why it cannot be read."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from onceonly.hub.audit import repository
    from onceonly.hub.cli import startup
    from onceonly.hub.db import driver_message, make_engine
    from onceonly.hub.kit import logs

    url = settings.resolved_database_url

    async def latest() -> int:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                checkpoint = await repository.latest_checkpoint(conn)
        finally:
            await engine.dispose()
        return 0 if checkpoint is None else checkpoint.tree_size

    try:
        return asyncio.run(latest())
    except SQLAlchemyError as error:
        reason = startup.without_secrets(driver_message(error), url)
        return f"cannot read the latest checkpoint: {' '.join(reason.split())}"
    except (OSError, RuntimeError, ValueError) as error:
        return f"cannot read the latest checkpoint: {logs.one_line(error)}"


def _keys_show(args: argparse.Namespace) -> int:
    from onceonly.hub import signing_keys
    from onceonly.hub.cli import startup
    from onceonly.hub.kit import logs

    settings = startup.load_settings()
    _refuse_no_keys(settings)
    try:
        entries = signing_keys.read_state(settings.keys_dir / "signing")
    except (OSError, ValueError) as error:
        raise StartupFailure([f"cannot show the keys: {logs.one_line(error)}"]) from None
    shape = Shape(rows="keys", epoch=frozenset({"active_from", "retire_at"}))
    answer = {"keys": [entry.__dict__ for entry in entries]}
    show(answer, form=form_of(args), shape=shape)
    return 0


def _config_check(_: argparse.Namespace) -> int:
    """Every problem on its own line (stderr, exit 1), or a short summary (exit 0)."""
    from onceonly.hub.cli import startup

    try:
        settings = startup.load_settings()
    except StartupFailure as failure:
        problems, notes, risky = failure.problems, [], []
    else:
        checked = startup.check(settings)
        problems = checked.problems
        notes = [f"settings: {settings.mode} mode, issuer {settings.issuer}", *checked.notes]
        risky = startup.risky_settings(settings)  # accepted: the operator decides
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print("\n".join(f"ok {note}" for note in notes))
    for line in risky:
        print(f"warning: {line}")
    for name in startup.unknown_variables():  # not refused: other tools may use the prefix
        print(f"note: {name} is not a setting of the hub; it is ignored")
    return 0


def _backup(args: argparse.Namespace) -> int:
    """A consistent backup of the database and the keys, taken while the hub runs."""
    from onceonly.hub import backup
    from onceonly.hub.cli import startup

    settings = startup.load_settings()
    try:
        made = backup.backup(
            settings.resolved_database_url,
            settings.keys_dir,
            args.directory,
            data_dir=settings.data_dir,
        )
    except backup.BackupError as error:
        raise StartupFailure([f"no backup made: {error}"]) from None
    print(
        f"backup of the {made.database} database and the keys in {args.directory}"
        f" ({made.audit_entries_at_least} audit entries or more); keep it as secret as the keys"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    """Into an empty database and key directory only; then `onceonly migrate`."""
    from onceonly.hub import backup
    from onceonly.hub.cli import startup

    settings = startup.load_settings()
    try:
        made = backup.restore(
            args.directory,
            settings.resolved_database_url,
            settings.keys_dir,
            audit_origin=settings.audit_origin,
        )
    except backup.BackupError as error:
        if not error.keys_in_place:
            raise StartupFailure([f"nothing restored: {error}"]) from None
        raise StartupFailure(
            [
                f"the database was not restored: {error}; the backup's keys are in"
                f" {settings.keys_dir}, the database is as empty as before: run restore"
                " again once that is fixed"
            ]
        ) from None
    target = startup.database_name(settings.resolved_database_url)
    print(
        f"restored the backup of {made.taken_at} into {target} and {settings.keys_dir};"
        " run `onceonly migrate`, then start the hub"
    )
    return 0


def register(sub: Any) -> None:
    """Add ``serve``, ``migrate``, ``keys …`` and ``config …`` to the subcommands ``sub``."""
    serve = add_command(
        sub, "serve", _serve, "run the hub (settings from ONCEONLY_* and $ONCEONLY_CONFIG)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--port", type=_port, default=8000, help="1 to 65535, 0: any free port (default: 8000)"
    )
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--proxy-headers", action="store_true", help="trust X-Forwarded-* from the proxy"
    )
    add_command(sub, "migrate", _migrate, "bring the database schema up to date")
    keys = sub.add_parser("keys", help="the hub's keys").add_subparsers(
        dest="keys_command", required=True
    )
    init = add_command(keys, "init", _keys_init, "create the hub's keys where missing (mode 0600)")
    init.add_argument(
        "--change-audit-origin",
        action="store_true",
        help="rename the audit log after ONCEONLY_AUDIT_ORIGIN: every auditor must then pin"
        " the new verifier key (docs/operations.md)",
    )
    rotate = add_command(
        keys, "rotate", _keys_rotate, "publish a new signing key; sign with it later"
    )
    rotate.add_argument(
        "--activate-after",
        type=_delay,
        metavar="SECONDS",
        help="delay before the new key signs, 0 to 2592000 (30 days) (default: token"
        " lifetimes + clock skew + reload)",
    )
    add_command(
        keys,
        "rotate-derivation",
        _keys_rotate_derivation,
        "new root for derived keys; re-seal one-time-code secrets under it",
    )
    add_command(
        keys,
        "rotate-checkpoint",
        _keys_rotate_checkpoint,
        "new key for the audit log's checkpoints; the old one is kept, auditors pin the new",
    )
    add_output_option(
        add_command(keys, "show", _keys_show, "the signing keys and when each signs and retires")
    )
    config = sub.add_parser("config", help="the hub's settings").add_subparsers(
        dest="config_command", required=True
    )
    add_command(
        config,
        "check",
        _config_check,
        "check the settings, keys and database as `serve` would use them"
        " (exit 0 all well, 1 one line per problem)",
    )
    backup = add_command(
        sub,
        "backup",
        _backup,
        "back up the database and the keys into a new directory, while the hub runs",
    )
    backup.add_argument("directory", type=Path, help="a new directory (never overwritten)")
    restore = add_command(
        sub,
        "restore",
        _restore,
        "restore a backup into an empty database and key directory (then: onceonly migrate)",
    )
    restore.add_argument("directory", type=Path, help="a directory made by onceonly backup")
