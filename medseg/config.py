"""Reading YAML/JSON configuration files (plans, training configs, augmentation, regions).

It also holds :data:`RANGES`, the one definition of the range of every numeric parameter a
command-line option sets: the CLI checks them at parse time (argparse types built by
:mod:`medseg.cli._args`) and the library functions taking those parameters check the same
records (:func:`check_range`), so a value is refused before any work with one line such as
``bins: expected an integer in [2, 4096], found 100000``.

Validation of the contents lives with each model (:mod:`medseg.plan.schema`,
:mod:`medseg.training.config`); this module only turns a file into a mapping, with errors that
name the file, and formats validation errors (:func:`format_validation_error`) the same way
for every record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from medseg.errors import ConfigError


def _one_line(exc: Exception) -> str:
    """A YAML error in one line: the problem and where it was found."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def parse_yaml(text: str, source: str | Path) -> Any:
    """Parse YAML (JSON is a subset) into plain values: the one YAML reader of medseg.

    Like ``yaml.safe_load``, except that a key repeated in one mapping is an error (YAML
    loaders silently keep the last value); keys brought in by a ``<<`` merge may be
    overridden, as YAML intends. Raises :class:`ConfigError` naming ``source`` and the line.
    """
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {_one_line(exc)}") from None


def _unique_key_loader() -> type:
    """A ``yaml.SafeLoader`` whose mappings refuse repeated keys."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: Any, deep: bool = False) -> Any:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base constructor reports it
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return loader.construct_mapping(node, deep)

    UniqueKeyLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    return UniqueKeyLoader


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML (or JSON, a subset of YAML) file whose top level is a mapping.

    Args:
        path: the file.
        what: what the file is, for messages (e.g. ``"plan"``, ``"augmentation config"``).

    Raises:
        InputError: the file is missing, not a regular file, unreadable or binary.
        ConfigError: invalid YAML (a repeated key included), or the top level is not a
            mapping.
    """
    from medseg.io.files import read_text_file

    p = Path(path)
    data = parse_yaml(read_text_file(p, what), p)
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a mapping at the top level of the {what}, found {type(data).__name__}"
        )
    return data


@dataclass(frozen=True)
class Range:
    """The values a numeric parameter accepts: finite, of ``kind``, within
    ``[minimum, maximum]`` (``minimum`` excluded when ``open_min``); ``None``: no bound."""

    kind: type
    minimum: float | None = None
    maximum: float | None = None
    open_min: bool = False
    unit: str = ""

    def describe(self) -> str:
        """E.g. ``"an integer in [2, 4096]"``, ``"a number in (0, 100] mm"``."""
        what = "an integer" if self.kind is int else "a number"
        lo, hi = self.minimum, self.maximum
        unit = f" {self.unit}" if self.unit else ""
        if lo is not None and hi is not None:
            return f"{what} in {'(' if self.open_min else '['}{lo:g}, {hi:g}]{unit}"
        if lo is not None:
            return f"{what} {'>' if self.open_min else '>='} {lo:g}{unit}"
        if hi is not None:
            return f"{what} <= {hi:g}{unit}"
        return f"a finite {what.split()[-1]}{unit}"

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind is int and (not isinstance(value, int) and not float(value).is_integer()):
            return False
        v = float(value)
        if not math.isfinite(v):
            return False
        if self.minimum is not None and (v <= self.minimum if self.open_min else v < self.minimum):
            return False
        return self.maximum is None or v <= self.maximum


_SEED = Range(int, 0, 2**32 - 1)
_RADIUS_MM = Range(float, 0, 100, unit="mm")

#: Parameter name -> accepted range, for every numeric parameter a command-line option sets.
#: Upper bounds keep the work and memory a value asks for within what a workstation has
#: (e.g. multi-Otsu's cost grows with bins^(classes - 1)).
RANGES: dict[str, Range] = {
    # reading
    "channel": Range(int, 0, 65535),
    # ONNX export
    "opset": Range(int, 17, 23),
    # classical segmentation
    "lower": Range(float),
    "upper": Range(float),
    "classes": Range(int, 2, 255),
    "bins": Range(int, 2, 4096),
    "multiplier": Range(float, 0, 100, open_min=True),
    "iterations": Range(int, 0, 100),
    "radius_mm": _RADIUS_MM,
    "random_seed": _SEED,
    "min_distance_mm": Range(float, 0, 100, open_min=True, unit="mm"),
    "min_peak_mm": _RADIUS_MM,
    "sigma_mm": Range(float, 0, 50, unit="mm"),
    "low": Range(float, 0),
    "high": Range(float, 0),
    "edge_closing_mm": _RADIUS_MM,
    "smooth_mm": Range(float, 0, 50, unit="mm"),
    "opening_mm": _RADIUS_MM,
    "closing_mm": _RADIUS_MM,
    "min_component_ml": Range(float, 0, 1e6, unit="mL"),
    # evaluation
    "tolerance_mm": Range(float, 0, 1000, unit="mm"),
    "lesion_dilation": Range(int, 0, 50),
    "lesion_min_volume": Range(float, 0, 1e9, unit="mm³"),
    "iou_threshold": Range(float, 0, 1, open_min=True),
    "max_rows": Range(int, 0, 100000),
    # planning
    "gpu_memory_gb": Range(float, 0, 4096, open_min=True, unit="GB"),
    "foreground_ratio": Range(float, 0, 1),
    "folds": Range(int, 2, 100),
    "seed": _SEED,
    "voxels_per_case": Range(int, 1, 10_000_000),
    # prediction and training
    "overlap": Range(float, 0, 0.95),
    "batch_size": Range(int, 1, 1024),
    "num_parts": Range(int, 1, 100000),
    "part_id": Range(int, 0, 99999),
    "epochs": Range(int, 1, 100000),
}


def check_range(name: str, value: Any) -> Any:
    """``value`` when it lies in ``RANGES[name]`` (an ``int`` for integer ranges), else
    :class:`ConfigError` ``"<name>: expected <range>, found <value>"``."""
    rng = RANGES[name]
    if not rng.contains(value):
        raise ConfigError(f"{name}: expected {rng.describe()}, found {value!r}")
    return int(value) if rng.kind is int else value


def format_validation_error(source: str | Path, exc: Any, what: str) -> str:
    """One line per problem of a pydantic ``ValidationError``, each naming the key path and
    what was found: ``"plan.yaml: invalid plan: augmentation.flip_prob: Input should be less
    than or equal to 1 (found 1.5)"``; unknown keys read ``"<key>: unknown key"``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        got = err.get("input")
        # a whole mapping or model (a check across fields) is not repeated into the message
        show = err["type"] != "missing" and not isinstance(got, (dict, BaseModel))
        found = f" (found {got!r})" if show else ""
        lines.append(f"{loc}: {msg}{found}")
    return f"{source}: invalid {what}: " + "; ".join(lines)
