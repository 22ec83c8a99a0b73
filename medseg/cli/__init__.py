"""The ``medseg`` command: one entry point, one module per subcommand.

Each module ``medseg.cli.<name>`` defines ``register(subparsers)``, which adds its parser and
sets ``func`` to a function ``(argparse.Namespace) -> int`` (the exit code). Subcommand modules
import heavy dependencies (torch, SimpleITK) inside that function so start-up stays fast.
Deliberate errors (:class:`~medseg.errors.MedsegError`) become one line on stderr and exit
code 1; anything else is a bug and keeps its traceback. Third-party log messages and Python
warnings are shown only with ``-vv``; on SIGTERM the temporary files of unfinished outputs are
removed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence

from medseg._version import __version__
from medseg.cli._args import document_ranges
from medseg.errors import MedsegError

#: Subcommand modules, in the order ``medseg --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "info",
    "convert",
    "evaluate",
    "volumetry",
    "train",
    "predict",
    "export",
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
    for command in sub.choices.values():
        command.set_defaults(param_flags=param_flags(command))
    document_ranges(parser)
    return parser


#: Library parameters whose command-line option has another name (parameter -> option dest).
PARAM_DESTS: dict[str, str] = {"out_dir": "out", "min_volume_ml": "min_volume"}


def param_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Library parameter name -> the option that sets it in ``parser`` (``"device"`` ->
    ``"--device"``, ``"out_dir"`` -> ``"--out"``; positionals by their metavar)."""
    by_dest: dict[str, str] = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs:
            by_dest[action.dest] = longs[0]
        elif not action.option_strings and action.dest not in ("help", "==SUPPRESS=="):
            by_dest[action.dest] = str(action.metavar or action.dest.upper())
    flags = {dest: flag for dest, flag in by_dest.items() if dest != "help"}
    for param, dest in PARAM_DESTS.items():
        if dest in by_dest:
            flags[param] = by_dest[dest]
    return flags


def render_error(exc: MedsegError, flags: Mapping[str, str]) -> str:
    """The message of a library error in the words of the command line, the one place where
    parameters become options (as click's ``param_hint``): a message that starts with its
    ``param`` starts with the option instead, and ``name=VALUE`` of a known parameter reads
    ``--option VALUE`` (``--option`` for ``True``)."""
    text = str(exc)
    param = getattr(exc, "param", None)
    if param is not None and param in flags and text.startswith(f"{param}:"):
        text = flags[param] + text[len(param) :]

    def option(m: re.Match[str]) -> str:
        flag = flags.get(m.group(1))
        if flag is None or not flag.startswith("--"):
            return m.group(0)
        return flag if m.group(2) == "True" else f"{flag} {m.group(2)}"

    return re.sub(r"(?<![\w.-])([a-z][a-z0-9_]*)=([^\s,;)]+)", option, text)


#: Third-party loggers silenced unless ``-vv``: their messages (pydicom's ERROR line and
#: traceback for an undecodable slice, nibabel's header warnings) duplicate or precede the one
#: line medseg prints about the same problem.
LIBRARY_LOGGERS: tuple[str, ...] = (
    "pydicom",
    "nibabel",
    "nibabel.global",
    "SimpleITK",
    "PIL",
    "matplotlib",
    "monai",
    "torch",
    "numexpr",
)


class _DropLibraryRecords(logging.Filter):
    """Drops records of :data:`LIBRARY_LOGGERS` (and their children)."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        return not any(name == lib or name.startswith(lib + ".") for lib in LIBRARY_LOGGERS)


@contextlib.contextmanager
def quiet_libraries(verbose: int) -> Iterator[None]:
    """Below ``-vv``: third-party log records dropped and Python warnings (numpy's
    RuntimeWarnings, library UserWarnings) ignored, so medseg's message is the one a user
    reads. Restores the previous state on exit (``main`` may run inside a test or notebook).

    Records are dropped by a filter on the root handlers (pydicom resets its logger's level
    when imported, so a level set beforehand would not hold); nibabel also prints through a
    handler of its own, silenced by its logger's level."""
    nib = logging.getLogger("nibabel.global")
    if verbose >= 2:  # shown, once: nibabel's own handler prints them, no propagation
        propagate = nib.propagate
        nib.propagate = False
        try:
            yield
        finally:
            nib.propagate = propagate
        return
    drop = _DropLibraryRecords()
    handlers = list(logging.getLogger().handlers)
    nib_level = nib.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for h in handlers:
            h.addFilter(drop)
        nib.setLevel(logging.CRITICAL + 1)
        try:
            yield
        finally:
            for h in handlers:
                h.removeFilter(drop)
            nib.setLevel(nib_level)


class Terminated(SystemExit):
    """Raised by the SIGTERM / SIGHUP handler so that ``finally`` blocks still run."""


@contextlib.contextmanager
def remove_temporaries_on_signals(command: str) -> Iterator[None]:
    """On SIGTERM or SIGHUP: remove the temporary files the atomic writer registered, print
    one line and exit with ``128 + signal``. (SIGINT raises ``KeyboardInterrupt``, handled in
    :func:`main`.) Only installed in the main thread; previous handlers are restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked worker: die as if no handler were installed
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        from medseg.io.atomic import remove_temporaries

        remove_temporaries()
        print(f"medseg {command}: terminated by {signal.Signals(signum).name}", file=sys.stderr)
        raise Terminated(128 + signum)

    sigs = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``medseg`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(int(args.verbose), 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    name = f"medseg {args.command}"
    from medseg.io import atomic

    with remove_temporaries_on_signals(args.command), quiet_libraries(int(args.verbose)):
        code = 1
        try:
            code = int(args.func(args))
            return code
        except MedsegError as exc:
            message = render_error(exc, getattr(args, "param_flags", {}))
            print(f"{name}: error: {message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            from medseg.io.atomic import remove_temporaries

            remove_temporaries()
            print(f"{name}: interrupted", file=sys.stderr)
            return 130
        except MemoryError:
            print(
                f"{name}: error: out of memory (MemoryError): the input needs more memory than "
                "this machine has free",
                file=sys.stderr,
            )
            return 1
        except BrokenPipeError:  # e.g. `medseg info ... | head`
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
            return 1
        finally:
            if code == 0:
                atomic.forget_created_folders()
            else:  # a refused or failed run leaves no empty output folder behind
                atomic.remove_created_folders()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
