"""One options record per classical method: the record is the method's signature.

Each record names the keyword parameters of its method (:data:`METHODS`), so what a method
accepts is written once: :func:`medseg.classical.segment` validates a request by building the
record, and ``medseg segment`` derives from the records which of its options apply to which
method. A field left ``None`` takes the method's own default (documented on the method);
fields without a default are required. ``tests/test_classical_thresholds.py`` checks that
every record's fields are exactly its method's keyword parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from numpy.typing import NDArray

from medseg.classical.edges import canny_edges, sobel_edges
from medseg.classical.kmeans import kmeans
from medseg.classical.region_growing import confidence_connected, connected_threshold
from medseg.classical.thresholds import multi_otsu, otsu, threshold
from medseg.classical.watershed import watershed
from medseg.errors import ConfigError
from medseg.volume import LabelMap, Volume

#: Method names accepted by :func:`medseg.classical.segment`, and the functions they run.
METHODS: dict[str, Callable[..., LabelMap]] = {
    "threshold": threshold,
    "otsu": otsu,
    "multi-otsu": multi_otsu,
    "connected-threshold": connected_threshold,
    "confidence-connected": confidence_connected,
    "kmeans": kmeans,
    "watershed": watershed,
    "sobel": sobel_edges,
    "canny": canny_edges,
}

Mask = Volume | NDArray[Any] | None
Seeds = Sequence[Sequence[float]]


@dataclass(frozen=True)
class MethodOptions:
    """Base of the records: ``method`` names the entry of :data:`METHODS` it runs."""

    method: ClassVar[str] = ""

    def given(self) -> dict[str, Any]:
        """The fields that are set (not ``None``), as keyword arguments of the method."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    def run(self, volume: Volume) -> LabelMap:
        """The method on ``volume`` with these options."""
        return METHODS[self.method](volume, **self.given())


@dataclass(frozen=True)
class ThresholdOptions(MethodOptions):
    method: ClassVar[str] = "threshold"
    lower: float | None = None
    upper: float | None = None
    mask: Mask = None
    name: str | None = None


@dataclass(frozen=True)
class OtsuOptions(MethodOptions):
    method: ClassVar[str] = "otsu"
    mask: Mask = None
    bins: int | None = None


@dataclass(frozen=True)
class MultiOtsuOptions(MethodOptions):
    method: ClassVar[str] = "multi-otsu"
    classes: int | None = None
    mask: Mask = None
    bins: int | None = None


@dataclass(frozen=True)
class ConnectedThresholdOptions(MethodOptions):
    method: ClassVar[str] = "connected-threshold"
    seeds_mm: Seeds
    lower: float | None = None
    upper: float | None = None
    connectivity: int | None = None


@dataclass(frozen=True)
class ConfidenceConnectedOptions(MethodOptions):
    method: ClassVar[str] = "confidence-connected"
    seeds_mm: Seeds
    multiplier: float | None = None
    iterations: int | None = None
    radius_mm: float | None = None
    connectivity: int | None = None


@dataclass(frozen=True)
class KMeansOptions(MethodOptions):
    method: ClassVar[str] = "kmeans"
    classes: int | None = None
    mask: Mask = None
    seed: int | None = None
    max_samples: int | None = None
    n_init: int | None = None


@dataclass(frozen=True)
class WatershedOptions(MethodOptions):
    method: ClassVar[str] = "watershed"
    mask: Mask = None
    markers: Volume | NDArray[Any] | None = None
    min_distance_mm: float | None = None
    min_peak_mm: float | None = None
    sigma_mm: float | None = None
    landscape: str | None = None


@dataclass(frozen=True)
class SobelOptions(MethodOptions):
    method: ClassVar[str] = "sobel"
    low: float
    high: float | None = None
    region: bool | None = None
    closing_mm: float | None = None


@dataclass(frozen=True)
class CannyOptions(MethodOptions):
    method: ClassVar[str] = "canny"
    low: float
    high: float
    sigma_mm: float | None = None
    region: bool | None = None
    closing_mm: float | None = None


#: The options record of each method of :data:`METHODS`.
OPTIONS: dict[str, type[MethodOptions]] = {
    cls.method: cls
    for cls in (
        ThresholdOptions,
        OtsuOptions,
        MultiOtsuOptions,
        ConnectedThresholdOptions,
        ConfidenceConnectedOptions,
        KMeansOptions,
        WatershedOptions,
        SobelOptions,
        CannyOptions,
    )
}


def option_names(method: str) -> tuple[str, ...]:
    """The parameters ``method`` takes (the fields of its record)."""
    return tuple(f.name for f in fields(method_record(method)))


def method_record(method: str) -> type[MethodOptions]:
    """The options record of ``method`` (:class:`ConfigError` for an unknown method)."""
    if method not in OPTIONS:
        raise ConfigError(
            f"method: expected one of {', '.join(OPTIONS)}, found {method!r}", param="method"
        )
    return OPTIONS[method]


def method_options(method: str, **params: Any) -> MethodOptions:
    """The record of ``method`` holding ``params``; an unknown or a missing parameter is a
    :class:`ConfigError` naming the method."""
    record = method_record(method)
    try:
        return record(**params)
    except TypeError as exc:
        known = ", ".join(option_names(method))
        raise ConfigError(f"method {method!r}: {exc} (its parameters: {known})") from None


__all__ = [
    "METHODS",
    "OPTIONS",
    "CannyOptions",
    "ConfidenceConnectedOptions",
    "ConnectedThresholdOptions",
    "KMeansOptions",
    "MethodOptions",
    "MultiOtsuOptions",
    "OtsuOptions",
    "SobelOptions",
    "ThresholdOptions",
    "WatershedOptions",
    "method_options",
    "method_record",
    "option_names",
]
