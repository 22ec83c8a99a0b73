"""The ``medseg`` command: one entry point, one module per subcommand.

Each module ``medseg.cli.<name>`` defines ``register(subparsers)``, which adds its parser and
sets ``func`` to a function ``(argparse.Namespace) -> int`` (the exit code). Subcommand modules
import heavy dependencies (torch, SimpleITK) inside that function so start-up stays fast.
Deliberate errors (:class:`~medseg.errors.MedsegError`) become one line on stderr and exit
code 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from medseg import __version__
from medseg.errors import MedsegError

#: Subcommand modules, in the order ``medseg --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "info",
    "convert",
    "evaluate",
    "volumetry",
    "train",
    "predict",
    "check",
    "plan",
    "demo",
    "segment",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medseg",
        description="3-D medical image segmentation: read, convert, check, plan, train, "
        "predict, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"medseg.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medseg`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(int(args.verbose), 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except MedsegError as exc:
        print(f"medseg {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"medseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
