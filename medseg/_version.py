"""The version of medseg, in one place: ``pyproject.toml`` reads it from here
(``[tool.setuptools.dynamic]``), and modules that record it import it from here, never from
the package facade."""

__version__ = "0.2.0"
