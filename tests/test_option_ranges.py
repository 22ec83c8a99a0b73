"""Every numeric option of every command has a range, checked when the command line is
parsed (exit 2, one error line naming the option and the range, no traceback, no work done),
and the library functions check the same ranges (one definition: ``medseg.config.RANGES``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from medseg.cli import build_parser, main
from medseg.cli._args import ranged
from medseg.config import RANGES, Range, check_range
from medseg.errors import ConfigError


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _numeric_actions() -> list[tuple[str, argparse.Action]]:
    out = []
    for cmd, sub in _subparsers().items():
        for action in sub._actions:
            if isinstance(action.type, ranged) or action.type in (int, float):
                out.append((cmd, action))
    return out


def _bad_values(rng: Range) -> list[str]:
    bad = ["nan", "inf", "-inf", "abc", ""]
    if rng.minimum is not None:
        bad.append(repr(rng.minimum) if rng.open_min else repr(rng.minimum - 1))
    if rng.maximum is not None:
        bad.append(repr(rng.maximum * 10 + 1))
    if rng.kind is int:
        bad.append("2.5")
    return bad


def test_every_numeric_option_is_ranged() -> None:
    """No option is parsed by a bare int/float (unbounded); choices lists are bounded too."""
    actions = _numeric_actions()
    assert len(actions) >= 35
    loose = [
        (cmd, a.option_strings)
        for cmd, a in actions
        if not isinstance(a.type, ranged) and a.choices is None
    ]
    assert loose == []
    for _, a in actions:
        if isinstance(a.type, ranged):
            assert a.type.range.describe() in (a.help or ""), a.option_strings  # documented


CASES = [
    (cmd, a.option_strings[-1], value)
    for cmd, a in _numeric_actions()
    if isinstance(a.type, ranged)
    for value in _bad_values(a.type.range)
]


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_out_of_range_option_exits_2_with_one_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    option: str,
    value: str,
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as ex:
        main([command, f"{option}={value}", str(tmp_path / "in.nii.gz"), str(out)])
    err = capsys.readouterr().err
    assert ex.value.code == 2, err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert errors == [
        f"medseg {command}: error: argument {option}: expected "
        + errors[0].split("expected ", 1)[1]
    ], err
    assert f"found {value!r}" in errors[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_values_in_range_are_accepted() -> None:
    for name, rng in RANGES.items():
        for v in (rng.minimum, rng.maximum):
            if v is None or (v == rng.minimum and rng.open_min):
                continue
            value = int(v) if rng.kind is int else float(v)
            assert check_range(name, value) == value
            assert ranged(name)(str(value)) == value


@pytest.mark.parametrize("name", sorted(RANGES))
def test_library_checks_the_same_ranges(name: str) -> None:
    rng = RANGES[name]
    for text in _bad_values(rng):
        try:
            value: object = float(text)
        except ValueError:
            value = text
        with pytest.raises(ConfigError, match=rf"^{name}: expected "):
            check_range(name, value)
    with pytest.raises(ConfigError):
        check_range(name, True)  # a boolean is not a number


def test_classical_functions_refuse_out_of_range_before_work() -> None:
    from medseg.classical import PostOptions, multi_otsu, otsu, watershed
    from medseg.classical.region_growing import confidence_connected
    from medseg.volume import Volume

    vol = Volume(np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32), np.eye(4))
    with pytest.raises(ConfigError, match=r"^bins: expected an integer in \[2, 4096\]"):
        otsu(vol, bins=100000)
    with pytest.raises(ConfigError, match=r"^bins: "):
        multi_otsu(vol, bins=1_000_000_000)
    with pytest.raises(ConfigError, match=r"^classes, bins: multi-Otsu with 6 classes and 256"):
        multi_otsu(vol, classes=6, bins=256)
    with pytest.raises(ConfigError, match=r"^opening_mm: "):
        PostOptions(opening_mm=1000)
    with pytest.raises(ConfigError, match=r"^min_distance_mm: "):
        watershed(vol, mask=np.ones((8, 8, 8), bool), min_distance_mm=0)
    with pytest.raises(ConfigError, match=r"^iterations: "):
        confidence_connected(vol, [(0.0, 0.0, 0.0)], iterations=10**6)
