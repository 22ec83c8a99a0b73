"""Values that used to be read as something else: a boolean as an integer in a training
config, a repeated key in YAML or JSON (last one silently kept), a label named ``null``, a bad
label list reported under another name. Each is one clear error naming the file or option."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.paths import SAMPLE

from medseg.cli import main
from medseg.config import parse_yaml, read_yaml_mapping
from medseg.errors import ConfigError, InputError
from medseg.io.label_specs import load_label_names, parse_region_specs
from medseg.training.config import load_train_config


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("epochs: true\n", "epochs"),
        ("epochs: '10'\n", "epochs"),
        ("epochs: 2.5\n", "epochs"),
        ("seed: false\n", "seed"),
        ("optimizer: {lr: true}\n", "optimizer.lr"),
        ("data: {augment: 1}\n", "data.augment"),
        ("plan_overrides: {patch_size: [true, 16, 16]}\n", "plan_overrides.patch_size.0"),
    ],
)
def test_config_numbers_are_strict(tmp_path: Path, text: str, key: str) -> None:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"cfg\.yaml: invalid training config: {key}: "):
        load_train_config(p)


def test_config_accepts_an_integer_for_a_real() -> None:
    from medseg.training.config import validate_config

    cfg = validate_config({"optimizer": {"lr": 1}, "epochs": 3, "overlap": 0})
    assert cfg.optimizer.lr == 1 and cfg.epochs == 3


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("epochs: 5\nseed: 1\nepochs: 10\n", 3),
        ("optimizer:\n  lr: 0.1\n  lr: 0.2\n", 3),
        ('{"epochs": 5, "epochs": 6}', 1),
    ],
)
def test_duplicate_yaml_keys_are_refused(tmp_path: Path, text: str, line: int) -> None:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=rf"cfg\.yaml: invalid YAML: duplicate key .*line {line}"):
        load_train_config(p)
    with pytest.raises(ConfigError, match="duplicate key"):
        read_yaml_mapping(p, "plan")


def test_yaml_merge_keys_may_be_overridden() -> None:
    doc = "base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\n"
    assert parse_yaml(doc, "s") == yaml.safe_load(doc)


def test_shipped_configs_have_no_duplicate_keys() -> None:
    for f in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        assert parse_yaml(f.read_text(), f) == yaml.safe_load(f.read_text()), f


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("names.json", '{"1": null}', "label 1: expected a name (non-empty text), found None"),
        ("names.json", '{"1": ""}', "label 1: expected a name"),
        ("names.json", '{"1": ["a"]}', "label 1: expected a name"),
        ("names.yaml", "1: ~\n", "label 1: expected a name"),
        ("names.json", '{"1": "a", "1": "b"}', "duplicate key '1'"),
        ("names.yaml", "1: a\n1: b\n", "duplicate key 1"),
        ("names.json", '{"1": "a", "01": "b"}', "label 1 is named twice"),
    ],
)
def test_label_name_values_are_names(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError) as err:
        load_label_names(p)
    assert str(err.value).startswith(f"{p}: ") and fragment in str(err.value), err.value


def test_region_file_duplicate_keys(tmp_path: Path) -> None:
    p = tmp_path / "regions.json"
    p.write_text('{"core": [1], "core": [2]}')
    with pytest.raises(InputError, match=r"regions\.json: .*duplicate key 'core'"):
        parse_region_specs([str(p)])


@pytest.mark.parametrize("option", ["--fill-holes", "--keep-largest"])
@pytest.mark.parametrize("value", ["abc", "0", "3-1"])
def test_label_list_options_name_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    argv = ["predict", "--model", str(tmp_path / "m.pt"), str(SAMPLE / "cord_t2w.nii.gz")]
    with pytest.raises(SystemExit) as ex:
        main([*argv, str(tmp_path / "out"), f"{option}={value}"])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and "Traceback" not in err
    assert f"argument {option}: expected" in err and "labels:" not in err, err
    assert not (tmp_path / "out").exists()
