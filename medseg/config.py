"""Reading YAML/JSON configuration files (plans, training configs, augmentation, regions).

Validation of the contents lives with each model (:mod:`medseg.plan.schema`,
:mod:`medseg.training.config`); this module only turns a file into a mapping, with errors that
name the file, and formats validation errors (:func:`format_validation_error`) the same way
for every record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.errors import ConfigError


def _one_line(exc: Exception) -> str:
    """A YAML error in one line: the problem and where it was found."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """Read a YAML (or JSON, a subset of YAML) file whose top level is a mapping.

    Args:
        path: the file.
        what: what the file is, for messages (e.g. ``"plan"``, ``"augmentation config"``).

    Raises:
        InputError: the file is missing, not a regular file, unreadable or binary.
        ConfigError: invalid YAML, or the top level is not a mapping.
    """
    import yaml

    from medseg.io.files import read_text_file

    p = Path(path)
    text = read_text_file(p, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {_one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a mapping at the top level of the {what}, found {type(data).__name__}"
        )
    return data


def format_validation_error(source: str | Path, exc: Any, what: str) -> str:
    """One line per problem of a pydantic ``ValidationError``, each naming the key path and
    what was found: ``"plan.yaml: invalid plan: augmentation.flip_prob: Input should be less
    than or equal to 1 (found 1.5)"``; unknown keys read ``"<key>: unknown key"``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        got = err.get("input")
        show = err["type"] != "missing" and not isinstance(got, dict)
        found = f" (found {got!r})" if show else ""
        lines.append(f"{loc}: {msg}{found}")
    return f"{source}: invalid {what}: " + "; ".join(lines)
