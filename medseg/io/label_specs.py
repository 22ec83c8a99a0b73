"""Label selections, composite regions and label-name tables as users write them (command-line
values and small JSON/YAML files), read into plain values for the library functions.

* :func:`parse_label_list` — ``["1,2", "5-7"]`` → ``[1, 2, 5, 6, 7]`` (positive values only).
* :func:`parse_region_specs` — ``["core=1,3,4"]`` or a JSON/YAML file → ``{"core": [1, 3,
  4]}``, the mapping that :func:`medseg.metrics.parse_regions` turns into regions.
* :func:`load_label_names` — ``{"1": "spleen", ...}`` (or one table of several, TotalSegmentator
  style) → ``{1: "spleen", ...}``.

Errors name the file or the value, what was expected and what was found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg.config import parse_yaml
from medseg.errors import ConfigError, InputError
from medseg.io.files import read_text_file


def parse_label_list(items: list[str], param: str = "labels") -> list[int]:
    """``["1,2", "5-7"]`` → ``[1, 2, 5, 6, 7]``; raises :class:`ConfigError` on bad items, its
    message starting with ``param`` (the parameter the list was given for)."""
    out: set[int] = set()
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part[1:]:
                    a, b = part.split("-", 1)
                    lo, hi = int(a), int(b)
                    if hi < lo:
                        raise ValueError
                    out.update(range(lo, hi + 1))
                else:
                    out.add(int(part))
            except ValueError:
                raise ConfigError(
                    f"{param}: expected integers or ranges like '1,3,5-7', found {part!r}"
                ) from None
    if any(v <= 0 for v in out):
        raise ConfigError(f"{param}: expected positive values (0 is background), found {item!r}")
    return sorted(out)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members; a repeated name is an error (json keeps the last silently)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _read_mapping(path: Path, what: str) -> Any:
    """The parsed content of a JSON file (YAML for ``.yaml``/``.yml``); repeated keys are
    refused in both."""
    text = read_text_file(path, f"{what} file")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return parse_yaml(text, path)
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except Exception as exc:  # parse errors of either format
        reason = " ".join(str(exc).split()).removeprefix(f"{path}: ")
        raise InputError(
            path, f"expected a JSON/YAML {what} mapping, could not parse: {reason}"
        ) from None


def parse_region_specs(items: list[str]) -> dict[str, list[int]]:
    """``["core=1,3,4"]`` or ``["regions.yaml"]`` → ``{"core": [1, 3, 4]}``.

    A file maps region names to label lists (``{"core": [1, 3, 4]}``, or the same under a
    top-level ``regions`` key); a list item may be a range string (``"1-4"``).
    """
    regions: dict[str, list[int]] = {}
    for item in items:
        if "=" in item:
            name, values = item.split("=", 1)
            labels = parse_label_list([values])
            if not name.strip() or not labels:
                raise ConfigError(
                    f"regions: expected NAME=L,L,... (e.g. core=1,3), found {item!r}",
                    param="regions",
                )
            regions[name.strip()] = labels
            continue
        data = _read_mapping(Path(item), "regions")
        if isinstance(data, dict) and "regions" in data and isinstance(data["regions"], dict):
            data = data["regions"]
        if not isinstance(data, dict):
            raise ConfigError(f"{item}: expected a mapping of region names to label lists")
        for name, values in data.items():
            vals = values if isinstance(values, list) else [values]
            regions[str(name)] = parse_label_list([str(v) for v in vals])
    return regions


def load_label_names(path: str | Path, key: str | None = None) -> dict[int, str]:
    """Read ``{"1": "spleen"}`` (optionally one table, ``key``, of several) from JSON/YAML.

    Raises :class:`InputError` naming ``path`` when the file is not such a mapping, holds
    several tables and no ``key`` is given, has a key that is not a label value (an
    integer >= 0; a name for 0 is the background's) or a name that is not non-empty text
    (``null``, a number, a list).
    """
    p = Path(path)
    data = _read_mapping(p, "label-name")
    if key is not None:
        if not isinstance(data, dict) or key not in data:
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise InputError(p, f"expected a table named {key!r}, found {found}")
        data = data[key]
    if not isinstance(data, dict):
        raise InputError(p, f"expected a mapping of label values to names, found {data!r:.60}")
    if data and all(isinstance(v, dict) for v in data.values()):
        raise InputError(
            p,
            f"holds several tables ({', '.join(sorted(data))}); "
            "choose one with label_names_key=KEY",
        )
    out: dict[int, str] = {}
    for k, v in data.items():
        try:
            value = int(k)
        except (TypeError, ValueError):
            raise InputError(p, f"expected integer label values as keys, found {k!r}") from None
        if value < 0:
            raise InputError(p, f"expected label values >= 0 as keys (0: background), found {k!r}")
        if not isinstance(v, str) or not v.strip():
            raise InputError(p, f"label {value}: expected a name (non-empty text), found {v!r}")
        if value in out:
            raise InputError(p, f"label {value} is named twice ({out[value]!r} and {v!r})")
        out[value] = v
    return out


__all__ = ["load_label_names", "parse_label_list", "parse_region_specs"]
