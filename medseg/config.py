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
