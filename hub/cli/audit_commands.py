"""``onceonly audit entries|export|verify|check-nodes``: query, export, verify and check
the audit log.

``entries`` and ``export`` are for auditors; an entry names a subject only by its
pseudonym, and the command never prints the identifier given to ``--subject``.
``export`` streams the hub's JSON Lines or CSV export (GET /v1/audit/export) to a new
file (written aside and renamed when complete: a file that exists is never a partial
export) or to standard output.
"""

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from onceonly.hub.cli.common import (
    CommandFailed,
    add_command,
    add_hub_command,
    call_hub,
    hub_of,
    talking_to,
)
from onceonly.hub.cli.output import Shape

FILTERS = ("subject", "department", "item", "action", "outcome", "since", "until")
ENTRIES = Shape(
    rows="entries",
    columns=(
        "index",
        "entry.time",
        "entry.action",
        "entry.outcome",
        "entry.department",
        "entry.owner",
        "entry.item",
        "entry.purpose",
        "entry.person",
    ),
    more=("next_cursor", "--cursor"),
)


def _entries(args: argparse.Namespace) -> int:
    filters = {name: getattr(args, name) for name in FILTERS}
    return call_hub(
        args,
        lambda admin: admin.audit_entries(**filters, cursor=args.cursor, limit=args.limit),
        shape=ENTRIES,
    )


def _export(args: argparse.Namespace) -> int:
    from onceonly.hub.cli.progress import Progress
    from onceonly.hub.cli.session import credential

    filters = {name: getattr(args, name) for name in FILTERS}
    target = Path(args.file) if args.file else None
    if target is not None and target.exists():
        raise CommandFailed(f"{target} exists: name a new file", status=1)
    hub = hub_of(args)
    with (
        hub.client(credential(hub.url)) as admin,
        talking_to(hub.url),
        admin.download("/v1/audit/export", format=args.format, **filters) as chunks,
        Progress("lines exported") as progress,
        _written(target) as out,
    ):
        for chunk in chunks:
            out.write(chunk)
            progress.advance(chunk.count(b"\n"))
    return 0


@contextmanager
def _written(target: Path | None) -> Iterator[IO[bytes]]:
    """Standard output, or ``target`` written under a temporary name in its directory
    and renamed when the export is complete (removed when it is not)."""
    if target is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = target.with_name(f".{target.name}.partial")
    try:  # the hub's own users' reads of personal data: for this user alone
        file = os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
    except OSError as error:
        raise CommandFailed(f"cannot write {target}: {error.strerror}", status=1) from None
    try:
        with file:
            yield file
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _verify(args: argparse.Namespace) -> int:
    from onceonly.hub.cli import audit_verify, session

    hub = hub_of(args)
    return audit_verify.run(
        hub=hub.url,
        key=args.key,
        previous_keys=args.previous_key,
        state_path=Path(args.state) if args.state else None,
        compare=[Path(p) for p in args.compare],
        full=args.full,
        token=(session.optional_credential(hub.url, break_glass=False) if args.full else None),
        tls=hub.tls,
    )


def _check_nodes(_: argparse.Namespace) -> int:
    """Read the hub's database (its settings) and recompute every stored subtree hash
    of the audit log from the leaves, and each entry's index columns; on SQLite also
    the file's own integrity check and the index columns' stored forms (decision 0078),
    on PostgreSQL amcheck's check of its indexes when the extension is there; then the
    report's roll-ups against the entries they sum (decision 0080); one line per
    problem. Exit 0 sound, 1 damaged or wrong, 2 could not check."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from onceonly.hub.audit import repository, tree
    from onceonly.hub.cli.startup import database_name, load_settings, missing_database
    from onceonly.hub.db import make_engine, session_factory
    from onceonly.hub.reports import check as reports

    url = load_settings().resolved_database_url
    missing = missing_database(url)  # a check writes nothing: not even an empty file
    if missing:
        print(f"cannot check: the audit log in {database_name(url)}: {missing}", file=sys.stderr)
        return 2

    def cannot(what: str, error: SQLAlchemyError) -> None:
        reason = str(error).splitlines()[0]
        print(f"cannot check: {what} in {database_name(url)}: {reason}", file=sys.stderr)

    async def check() -> tuple[
        tree.NodeCheck, list[str], repository.IndexCheck, reports.RollupCheck | None
    ]:
        engine = make_engine(url)
        try:
            nodes = await tree.check_nodes(session_factory(engine), report=print)
            file_problems = await repository.sqlite_file_problems(engine)
            indexes = await repository.postgres_index_problems(engine)
            try:  # the log's findings stand when the roll-ups cannot be read (none yet)
                rollups = await reports.check_rollups(engine, report=print)
            except SQLAlchemyError as error:
                cannot("the report's roll-ups", error)
                rollups = None
            return nodes, file_problems, indexes, rollups
        finally:
            await engine.dispose()

    try:
        checked, file_problems, indexes, rollups = asyncio.run(check())
    except SQLAlchemyError as error:
        cannot("the audit log", error)
        return 2
    except ValueError as error:  # a stored value the driver cannot read (SQLite keeps any)
        where = database_name(url)
        print(f"cannot check: the audit log in {where}: a stored value: {error}", file=sys.stderr)
        return 2
    for line in file_problems + indexes.problems:
        print(line)
    if indexes.unchecked:
        print(
            f"NOT CHECKED: the audit log's PostgreSQL indexes: {indexes.unchecked}",
            file=sys.stderr,
        )
    if indexes.failed:
        print(
            f"cannot check: the audit log's PostgreSQL indexes: {indexes.failed}",
            file=sys.stderr,
        )
    damaged = checked.damaged + len(file_problems) + len(indexes.problems)
    if damaged:
        print(f"DAMAGED: {damaged} problems in the stored audit log", file=sys.stderr)
    if rollups is not None and rollups.wrong:
        print(
            f"WRONG: {rollups.wrong} report roll-up sums are not what the log's entries add"
            " up to; 'onceonly report rebuild' adds them again from the log",
            file=sys.stderr,
        )
    if damaged or (rollups is not None and rollups.wrong):
        return 1
    print(f"OK: {checked.nodes} stored subtree hashes recomputed from {checked.entries} entries")
    if indexes.indexes:
        print(f"OK: {indexes.indexes} PostgreSQL indexes of the audit log checked by amcheck")
    if rollups is not None:
        print(
            f"OK: {rollups.sums} report roll-up sums added up again from the log's first"
            f" {rollups.entries} entries, those the roll-ups hold (they add newer ones later)"
            + (f", in {rollups.passes} passes over them" if rollups.passes > 1 else "")
        )
    return 2 if rollups is None or indexes.failed else 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subject", help="whom the entries are about (sent to the hub only)")
    parser.add_argument("--department", help="a department the entries name")
    parser.add_argument("--item")
    parser.add_argument("--action", help="e.g. record.query, grant.revoke")
    parser.add_argument("--outcome", help="e.g. ok, denied")
    parser.add_argument("--since", help="RFC 3339 time: at or after")
    parser.add_argument("--until", help="RFC 3339 time: before")


def register(sub: Any) -> None:
    """Add ``onceonly audit …`` to the top-level subcommands ``sub``."""
    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True
    )
    entries = add_hub_command(audit, "entries", _entries, "query audit entries (auditors)")
    _add_filters(entries)
    entries.add_argument("--cursor", help="the next page: what the last page named")
    entries.add_argument("--limit", type=int, default=100, help="entries per page (1-1000)")
    export = add_hub_command(
        audit,
        "export",
        _export,
        "every matching entry as JSON Lines or CSV, to a new file or stdout (auditors)",
        output=False,
    )
    _add_filters(export)
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--file", metavar="FILE", help="a new file (default: standard output)")
    verify = add_hub_command(
        audit,
        "verify",
        _verify,
        "verify the audit log with its public key: signature, no fork or shrink, entries"
        " (exit 0 verified, 1 tampering detected, 2 could not verify)",
        output=False,  # a verdict in words and the exit status: no data to format
    )
    verify.add_argument(
        "--key", required=True, help="the pinned verifier key (GET /v1/audit/verifier-key)"
    )
    verify.add_argument(
        "--previous-key",
        action="append",
        default=[],
        metavar="KEY[@SIZE]",
        help="a verifier key the operators replaced (onceonly keys rotate-checkpoint), or the"
        " log's key under its former name (keys init --change-audit-origin): the state"
        " file's checkpoints may be signed by it; --compare ones signed by a replaced key"
        " alone count up to SIZE, the rotation's boundary the operators published with the"
        " new key (without @SIZE they do not count: exit 2); without --state, the state file"
        " of its name is read too; repeatable",
    )
    verify.add_argument(
        "--state",
        help="file with the last verified checkpoint"
        " (default: ~/.local/state/onceonly/audit-<origin>.json)",
    )
    verify.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="FILE",
        help="a checkpoint (or state file) another auditor verified; repeatable",
    )
    verify.add_argument(
        "--full",
        action="store_true",
        help="download every leaf hash and recompute the root, and check the hub's proofs;"
        " signed in as an auditor, also check every entry's content",
    )
    add_command(
        audit,
        "check-nodes",
        _check_nodes,
        "for operators, with the hub's settings: recompute every stored subtree hash of the"
        " audit log, each entry's index columns and the report's roll-ups from its entries"
        " (exit 0 sound, 1 damaged or wrong, 2 could not check)",
    )
