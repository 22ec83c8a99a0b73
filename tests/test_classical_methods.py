"""The options records of the classical methods are their signatures: each record's fields are
exactly the method's keyword parameters (required where the method requires them), the records
validate requests, and ``medseg segment`` derives from them which option applies to which
method."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields

import numpy as np
import pytest

from medseg.classical import METHODS, OPTIONS, segment
from medseg.classical.methods import OtsuOptions, ThresholdOptions, method_options
from medseg.errors import ConfigError
from medseg.volume import Volume


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_record_is_its_methods_signature(name: str) -> None:
    sig = inspect.signature(METHODS[name])
    params = list(sig.parameters.values())[1:]  # after the volume
    record = OPTIONS[name]
    assert record.method == name
    assert [f.name for f in fields(record)] == [p.name for p in params]
    for f, p in zip(fields(record), params, strict=True):
        required = p.default is inspect.Parameter.empty
        assert (f.default is MISSING) == required, (name, f.name)


def test_records_validate_and_run() -> None:
    arr = np.zeros((6, 6, 6), np.float32)
    arr[2:4, 2:4, 2:4] = 100.0
    vol = Volume(arr, np.eye(4))
    by_name = segment(vol, "threshold", lower=50)
    by_record = segment(vol, ThresholdOptions(lower=50))
    np.testing.assert_array_equal(by_name.array, by_record.array)
    assert int(by_record.array.sum()) == 8
    with pytest.raises(ConfigError, match=r"method 'otsu': .*classes.*its parameters: mask, bins"):
        method_options("otsu", classes=3)
    with pytest.raises(ConfigError, match=r"method 'sobel': .*low"):
        method_options("sobel")
    with pytest.raises(ConfigError, match="not both"):
        segment(vol, OtsuOptions(), bins=10)


def test_the_cli_derives_where_each_option_applies() -> None:
    """The table ``medseg segment`` used to spell out by hand, now derived from the records."""
    from medseg.cli.segment import applies_to

    expected = {
        "lower": ("threshold", "region-growing"),
        "upper": ("threshold", "region-growing"),
        "classes": ("multi-otsu", "kmeans"),
        "mask": ("threshold", "otsu", "multi-otsu", "kmeans", "watershed"),
        "bins": ("otsu", "multi-otsu"),
        "seeds": ("region-growing",),
        "growing": ("region-growing",),
        "multiplier": ("region-growing",),
        "iterations": ("region-growing",),
        "radius_mm": ("region-growing",),
        "connectivity": ("region-growing",),
        "random_seed": ("kmeans",),
        "markers": ("watershed",),
        "min_distance_mm": ("watershed",),
        "min_peak_mm": ("watershed",),
        "landscape": ("watershed",),
        "sigma_mm": ("watershed", "edges"),
        "operator": ("edges",),
        "low": ("edges",),
        "high": ("edges",),
        "region": ("edges",),
        "edge_closing_mm": ("edges",),
    }
    for dest, methods in expected.items():
        assert sorted(applies_to(dest)) == sorted(methods), dest
