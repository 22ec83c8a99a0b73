"""Options shared by several commands, and the argparse types that check values at parse
time with one-line messages naming the option.

Numeric options take :class:`ranged` types: the range of each parameter is defined once, in
:data:`medseg.config.RANGES` (which the library functions check too), and argparse refuses a
value outside it (``float("nan")`` and ``-5`` included) before any work, exit 2:
``argument --tolerance-mm: expected a number in [0, 1000] mm, found 'nan'``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from medseg.errors import ConfigError


class ranged:  # noqa: N801 (an argparse type, named like int and float)
    """argparse ``type`` of a numeric option whose parameter has a range in
    :data:`medseg.config.RANGES`: parses the text (an integer or a number, as the range says)
    and refuses a value outside the range, so argparse reports ``argument --bins: expected an
    integer in [2, 4096], found '100000'`` (exit 2) before any work."""

    def __init__(self, param: str) -> None:
        from medseg.config import RANGES

        self.param = param
        self.range = RANGES[param]
        self.__name__ = param  # argparse names the type in some messages

    def __call__(self, text: str) -> int | float:
        try:
            value: int | float = int(text) if self.range.kind is int else float(text)
        except ValueError:
            value = math.nan
        if not self.range.contains(value):
            raise argparse.ArgumentTypeError(f"expected {self.range.describe()}, found {text!r}")
        return value


def document_ranges(parser: argparse.ArgumentParser) -> None:
    """Append its range to the help of every option of ``parser`` and its subcommands whose
    type is :class:`ranged` (so ``--help`` documents what the parser checks)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                document_ranges(sub)
        elif isinstance(action.type, ranged) and action.help is not None:
            action.help = f"{action.help}; {action.type.range.describe()}"


def label_list_type(text: str) -> list[int] | str:
    """argparse ``type`` of a label-list option: ``"all"``, or ``"1,3,5-7"`` as a sorted list
    (:func:`medseg.io.label_specs.parse_label_list`); argparse then names the option."""
    from medseg.io.label_specs import parse_label_list

    if text == "all":
        return text
    try:
        return parse_label_list([text], param="value")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("value: ")) from None


def add_label_names_options(p: argparse.ArgumentParser, more: str = "") -> None:
    """``--label-names FILE`` and ``--label-names-key KEY`` (read by
    :func:`medseg.io.label_specs.load_label_names`); ``more`` ends the first option's help."""
    p.add_argument(
        "--label-names",
        type=Path,
        metavar="FILE",
        help='JSON/YAML file mapping label values to names ({"1": "spleen", ...})' + more,
    )
    p.add_argument(
        "--label-names-key",
        metavar="KEY",
        help="for a label-name file holding several tables, the one to use (e.g. 'total')",
    )


def label_names_option(args: argparse.Namespace) -> dict[int, str] | None:
    """The label names given with :func:`add_label_names_options`, or ``None``."""
    from medseg.io.label_specs import load_label_names

    if args.label_names is None:
        return None
    return load_label_names(args.label_names, args.label_names_key)
