"""``onceonly demo``: the whole story on loopback (onceonly.hub.cli.demo)."""

import argparse
from pathlib import Path
from typing import Any

from onceonly.hub.cli.common import add_command


def _demo(args: argparse.Namespace) -> int:
    from onceonly.hub.cli import demo

    return demo.run(keep=args.keep, hub_url=args.hub, root=Path(args.data_dir))


def register(sub: Any) -> None:
    """Add ``onceonly demo`` to the top-level subcommands ``sub``."""
    demo = add_command(
        sub, "demo", _demo, "play the whole story on loopback: a hub and three departments"
    )
    demo.add_argument("--keep", action="store_true", help="leave the services running afterwards")
    demo.add_argument("--hub", help="play the story against a running hub at this URL")
    demo.add_argument("--data-dir", default="var/demo", help="where the demo keeps its data")
