"""Griffe extension for the API pages: the docstrings use Sphinx roles
(``:func:`~medseg.io.read_volume```), which Markdown would show literally. Each becomes a code
span (`` `read_volume` `` with ``~``, else the full name), at load time, for every object."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def _span(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrites Sphinx roles in docstrings as Markdown code spans."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_span, obj.docstring.value)
