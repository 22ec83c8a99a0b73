"""medseg.io.label_specs: label selections, regions and label-name files as users write them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.errors import ConfigError, InputError
from medseg.io.label_specs import load_label_names, parse_label_list, parse_region_specs


def test_label_lists_and_ranges() -> None:
    assert parse_label_list(["1,3", "5-7", " 2 "]) == [1, 2, 3, 5, 6, 7]
    for bad, found in (("1,x", "'x'"), ("7-5", "'7-5'"), ("0", "'0'")):
        with pytest.raises(ConfigError, match=found):
            parse_label_list([bad])


def test_regions_from_values_and_files(tmp_path: Path) -> None:
    yml = tmp_path / "regions.yaml"
    yml.write_text("regions:\n  core: [1, 3]\n  whole: '1-4'\n")
    assert parse_region_specs(["tc=1,3,4", str(yml)]) == {
        "tc": [1, 3, 4],
        "core": [1, 3],
        "whole": [1, 2, 3, 4],
    }
    with pytest.raises(ConfigError, match="NAME=L,L"):
        parse_region_specs(["=1,2"])
    lst = tmp_path / "list.json"
    lst.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="expected a mapping of region names"):
        parse_region_specs([str(lst)])


def test_label_name_tables(tmp_path: Path) -> None:
    f = tmp_path / "names.json"
    f.write_text(json.dumps({"total": {"1": "spleen", "2": "liver"}, "mr": {"1": "x"}}))
    assert load_label_names(f, "total") == {1: "spleen", 2: "liver"}
    with pytest.raises(InputError, match="choose one with label_names_key=KEY"):
        load_label_names(f)
    with pytest.raises(InputError, match=r"expected a table named 'ct', found \['mr', 'total'\]"):
        load_label_names(f, "ct")
    f.write_text(json.dumps({"0": "background", "1": "spleen"}))
    assert load_label_names(f) == {0: "background", 1: "spleen"}
    for key in ("spleen", "-2"):
        f.write_text(json.dumps({key: "x"}))
        with pytest.raises(InputError, match=f"{f}: expected") as info:
            load_label_names(f)
        assert repr(key) in str(info.value)
