"""The ``onceonly`` command: run the hub, administer it, run a department adapter, play the demo.

Every subcommand is a function ``(args) -> exit status``, registered by the module of
its topic (``<topic>_commands.py``, sharing :mod:`onceonly.hub.cli.common`); ``main``
builds the parser and dispatches. Administrative subcommands talk to a running hub
over HTTP as the person signed in with ``onceonly login`` (or with the break-glass
administrator token), so that every change goes through the same rules, role checks
and audit log. What ends a command early is one line on standard error, never a
traceback: :class:`~onceonly.hub.cli.common.CommandFailed` (exit 1 refused, 2 the hub
cannot be reached) and :class:`~onceonly.hub.cli.common.StartupFailure` (exit 1, in
the format of the hub's logs).
"""

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a usage error exits 1 ("a local file or option that
    cannot be used", decision 0023), not argparse's 2, which the command keeps for
    "the hub cannot be reached". Its subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given the ``argv`` it will parse, ``adapter`` is mounted only
    when it is the command (importing the adapters loads their web and database stack,
    which ``onceonly --help`` must not wait for: decision 0025)."""
    from onceonly.hub.cli import (
        access_commands,
        admin_commands,
        audit_commands,
        common,
        demo_commands,
        events_commands,
        operator_commands,
        people_commands,
        registry_commands,
        report_commands,
    )

    parser = Parser(
        prog="onceonly", description=__doc__.splitlines()[0].replace("``", "") if __doc__ else None
    )
    parser.add_argument("--version", action=common.ShowVersion)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        operator_commands,
        admin_commands,
        demo_commands,
        people_commands,
        access_commands,
        registry_commands,
        events_commands,
        audit_commands,
        report_commands,
    ):
        module.register(sub)
    common.add_adapter_commands(sub, mounted=argv is None or common.command_of(argv) == "adapter")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    from onceonly.hub.cli.common import CommandFailed, StartupFailure

    try:
        status: int = args.func(args)
    except CommandFailed as failure:
        print(failure, file=sys.stderr)
        return failure.status
    except StartupFailure as failure:
        from onceonly.hub.cli.startup import report

        return report(failure)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT
        print("interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    raise SystemExit(main())
