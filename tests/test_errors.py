"""The error hierarchy: every medseg error survives pickling (worker processes send them)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import medseg
from medseg.errors import ConfigError, InputError, MedsegError, UnreadableDicomError


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def _import_everything() -> None:
    """Import every medseg module, so that error classes defined anywhere are found."""
    for mod in pkgutil.walk_packages(medseg.__path__, "medseg."):
        if not mod.name.endswith("__main__"):  # runs the CLI when imported
            importlib.import_module(mod.name)


def _example(cls: type[MedsegError]) -> MedsegError:
    """An instance built from the signature alone: paths get a Path, anything else a string."""
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is not inspect.Parameter.empty:
            kwargs[name] = f"{name}-value"
        elif "path" in name:
            kwargs[name] = Path("some/file.nii.gz")
        else:
            kwargs[name] = f"{name}-value"
    if not kwargs:
        return cls("a message naming some/file.nii.gz")
    return cls(**kwargs)


_import_everything()
HIERARCHY = [MedsegError, *_all_subclasses(MedsegError)]


def test_hierarchy_is_found() -> None:
    names = {c.__name__ for c in HIERARCHY}
    assert {"InputError", "UnreadableDicomError", "OutputError", "OutputExistsError"} <= names


@pytest.mark.parametrize("cls", HIERARCHY, ids=lambda c: c.__name__)
def test_every_error_pickles_to_an_equal_error(cls: type[MedsegError]) -> None:
    exc = _example(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert str(back) == str(exc)
    assert back.args == exc.args
    assert vars(back) == vars(exc)


def test_unreadable_dicom_error_keeps_its_fields() -> None:
    exc = UnreadableDicomError(Path("a/b.dcm"), "truncated", series_uid="1.2.3")
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, InputError)
    assert (back.path, back.problem, back.series_uid) == (Path("a/b.dcm"), "truncated", "1.2.3")
    assert str(back) == "a/b.dcm: truncated"


def test_unreadable_dicom_error_lives_in_errors_and_is_reexported() -> None:
    from medseg.io.dicom.headers import UnreadableDicomError as FromHeaders

    assert FromHeaders is UnreadableDicomError
    assert UnreadableDicomError.__module__ == "medseg.errors"


def test_config_error_is_a_value_error() -> None:
    """Invalid argument values of library functions are ConfigErrors (the CLI prints them in
    one line) and still ValueErrors for callers that catch those."""
    assert issubclass(ConfigError, ValueError)
