"""Pages generated from the code at every ``mkdocs build`` (run by the mkdocs-gen-files plugin).

- ``reference/cli/<command>.md``: each subcommand's ``--help``, rendered from the argparse
  parsers that ``medseg.cli.build_parser`` builds, so the pages cannot drift from the CLI;
- ``reference/config-schema.md`` and ``reference/plan-schema.md``: the fields of the pydantic
  models ``TrainConfig`` and ``Plan``, from their JSON schema;
- ``notebooks/*.ipynb``, ``benchmarks.md`` (with its figures) and ``changelog.md``: files kept at
  the repository root, copied into the site so that they are rendered and can be linked.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent

# argparse wraps help text to the terminal width: fix it so the pages do not depend on who builds.
os.environ["COLUMNS"] = "100"


# --- CLI ------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise RuntimeError("medseg.cli.build_parser() has no subcommands")


def _summaries(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def cli_pages() -> None:
    from medseg.cli import COMMANDS, build_parser

    parser = build_parser()
    subs = _subparsers(parser)
    summaries = _summaries(parser)
    rows = [f"| [`medseg {name}`]({name}.md) | {summaries.get(name, '')} |" for name in COMMANDS]
    index = [
        "# Command line",
        "",
        "Generated from the argparse parsers of `medseg.cli` at every documentation build: what",
        "you read here is what `medseg COMMAND --help` prints.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
        "| command | what it does |",
        "|---|---|",
        *rows,
        "",
        "Exit codes: 0 on success, 1 when a command refused its input or some cases failed (the",
        "failures are listed at the end), 128 + signal when terminated (130 for Ctrl-C).",
    ]
    with mkdocs_gen_files.open("reference/cli/index.md", "w") as f:
        f.write("\n".join(index) + "\n")
    for name in COMMANDS:
        sub = subs[name]
        summary = summaries.get(name, "")
        text = [
            f"# `medseg {name}`",
            "",
            summary[:1].upper() + summary[1:] + ".",
            "",
            "```text",
            sub.format_help().rstrip(),
            "```",
        ]
        with mkdocs_gen_files.open(f"reference/cli/{name}.md", "w") as f:
            f.write("\n".join(text) + "\n")


# --- pydantic schemas -----------------------------------------------------------------------


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "anyOf" in prop:
        return " or ".join(_type(p) for p in prop["anyOf"])
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _type(prop["allOf"][0])
    kind = prop.get("type", "any")
    if kind == "array":
        if "prefixItems" in prop:
            return "[" + ", ".join(_type(p) for p in prop["prefixItems"]) + "]"
        return f"list of {_type(prop.get('items', {}))}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict):
            return f"mapping to {_type(extra)}"
        return "mapping"
    return str(kind)


_LIMITS = {
    "minimum": ">=",
    "exclusiveMinimum": ">",
    "maximum": "<=",
    "exclusiveMaximum": "<",
    "minItems": "items >=",
    "maxItems": "items <=",
    "minLength": "length >=",
}


def _limits(prop: dict[str, Any]) -> str:
    parts = [f"{sym} {prop[key]}" for key, sym in _LIMITS.items() if key in prop]
    for alt in prop.get("anyOf", []):
        parts += [f"{sym} {alt[key]}" for key, sym in _LIMITS.items() if key in alt]
    return ", ".join(parts)


def _prose(text: str) -> str:
    """Docstring prose as Markdown: Sphinx roles (``:attr:`~x.y```) become code spans."""
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text.strip())


def _cell(text: str) -> str:
    return _prose(text).replace("|", "\\|").replace("\n", " ")


def _model_table(name: str, schema: dict[str, Any], level: str) -> list[str]:
    out = [f"{level} {name}", ""]
    if schema.get("description"):
        out += [_prose(schema["description"]), ""]
    props = schema.get("properties", {})
    if not props:
        return [*out, "(no fields)", ""]
    required = set(schema.get("required", []))
    out += ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
    for key, prop in props.items():
        if key in required:
            default = "required"
        elif "default" in prop:
            default = f"`{json.dumps(prop['default'])}`"
        else:  # a default_factory: the defaults of the record it makes
            default = "its own defaults"
        out.append(
            f"| `{key}` | {_cell(_type(prop))} | {_cell(default)} | {_cell(_limits(prop))} "
            f"| {_cell(prop.get('description', ''))} |"
        )
    return [*out, ""]


def schema_page(path: str, title: str, intro: str, model: Any) -> None:
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    lines = [f"# {title}", "", intro, ""]
    lines += _model_table(model.__name__, schema, "##")
    for name in sorted(defs):
        lines += _model_table(name, defs[name], "###")
    lines += [
        "## JSON schema",
        "",
        f"The full JSON schema of `{model.__module__}.{model.__name__}`"
        " (`model_json_schema()`), e.g. for an editor that validates YAML:",
        "",
        '??? note "JSON schema"',
        "",
        "    ```json",
        *("    " + line for line in json.dumps(model.model_json_schema(), indent=2).splitlines()),
        "    ```",
        "",
    ]
    with mkdocs_gen_files.open(path, "w") as f:
        f.write("\n".join(lines))


def schema_pages() -> None:
    from medseg import Plan, TrainConfig  # the public names, wherever they are defined

    schema_page(
        "reference/config-schema.md",
        "Training config schema",
        "The keys of a training config YAML (`configs/*.yaml`, `medseg train CONFIG`), generated "
        f"from the pydantic model `{TrainConfig.__module__}.TrainConfig`. Unknown keys are "
        "refused with the key path in the message; relative paths are relative to the config "
        "file. The recipe these defaults make is explained in "
        "[Why these defaults](../explanation/defaults.md#the-training-recipe).",
        TrainConfig,
    )
    schema_page(
        "reference/plan-schema.md",
        "Plan schema (`plan.yaml`)",
        "The keys of `plan.yaml` as `medseg plan` writes it and `load_plan` validates it, "
        f"generated from the pydantic model `{Plan.__module__}.Plan`. How each value is chosen "
        "is explained in [Why these defaults](../explanation/defaults.md).",
        Plan,
    )


# --- files from the repository root ---------------------------------------------------------


def copied_files() -> None:
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        with mkdocs_gen_files.open(f"notebooks/{nb.name}", "w") as f:
            f.write(nb.read_text(encoding="utf-8"))
    bench = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    with mkdocs_gen_files.open("benchmarks.md", "w") as f:
        f.write(bench)
    for figure in sorted(set(re.findall(r"\]\((bench/figures/[^)\s]+)\)", bench))):
        with mkdocs_gen_files.open(figure, "wb") as f:
            f.write((ROOT / figure).read_bytes())
    with mkdocs_gen_files.open("changelog.md", "w") as f:
        f.write((ROOT / "CHANGELOG.md").read_text(encoding="utf-8"))


cli_pages()
schema_pages()
copied_files()
