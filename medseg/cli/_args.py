"""Options shared by several commands, and validation of numeric command-line values with
one-line messages naming the option.

argparse checks only the type (``float("nan")`` and ``-5`` are valid numbers); ranges are
checked here, before any work, and reported as :class:`~medseg.errors.ConfigError`, e.g.
``--tolerance-mm: expected a finite number >= 0, found nan``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from medseg.errors import ConfigError


def check_number(
    option: str,
    value: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> None:
    """Refuse a value that is not finite or lies outside ``[minimum, maximum]`` (``above``:
    strictly greater than)."""
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if above is not None:
        parts.append(f"> {above:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    ok = math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    ok = ok and (above is None or value > above)
    if not ok:
        kind = "an integer" if isinstance(value, int) else "a finite number"
        rng = f" {' and '.join(parts)}" if parts else ""
        raise ConfigError(f"{option}: expected {kind}{rng}, found {value!r}")


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
