"""The ``onceonly`` command: run the hub, administer it, run a department adapter, play the demo.

Every subcommand is a function ``(args) -> exit status``, registered by the module of
its topic (``<topic>_commands.py``, sharing :mod:`onceonly.hub.cli.common`); ``main``
builds the parser and dispatches. Administrative subcommands talk to a running hub
over HTTP as the person signed in with ``onceonly login`` (or with the break-glass
administrator token), so that every change goes through the same rules, role checks
and audit log. What ends a command early is one line on standard error, never a
traceback: :class:`~onceonly.hub.cli.common.CommandFailed` (exit 1 refused, 2 the hub
cannot be reached) and :class:`~onceonly.hub.cli.startup.StartupFailure` (exit 1, in
the format of the hub's logs).
"""

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "onceonly"


def _version() -> str:
    try:
        return f"{DISTRIBUTION} {version(DISTRIBUTION)}"
    except PackageNotFoundError:  # run from a source tree that is not installed
        return f"{DISTRIBUTION} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from onceonly.adapters.cli import add_commands
    from onceonly.hub.cli import (
        access_commands,
        admin_commands,
        audit_commands,
        demo_commands,
        operator_commands,
        people_commands,
        registry_commands,
    )

    parser = argparse.ArgumentParser(
        prog="onceonly", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        operator_commands,
        admin_commands,
        demo_commands,
        people_commands,
        access_commands,
        registry_commands,
        audit_commands,
    ):
        module.register(sub)
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from onceonly.hub.cli.common import CommandFailed
    from onceonly.hub.cli.startup import StartupFailure, report

    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except CommandFailed as failure:
        print(failure, file=sys.stderr)
        return failure.status
    except StartupFailure as failure:
        return report(failure)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    return status


if __name__ == "__main__":
    raise SystemExit(main())
