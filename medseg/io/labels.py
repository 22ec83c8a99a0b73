"""Label tables: value → name, display colour and coded meaning, and the ``labels.json`` file.

One :class:`LabelInfo` per non-zero label value is what every segmentation writer puts into
its file (NIfTI extension, 3D Slicer segment fields, DICOM SEG segment descriptions) and beside
it (``labels.json``). :func:`build_label_table` derives it from a label map's names; colours
are sRGB 0–255 (a tone per known structure, else a fixed palette by label value) and codes
come from :func:`medseg.io.terminology.terminology_for`.

``labels.json``::

    {"format": "medseg-labels/1",
     "background": {"value": 0, "name": "background"},
     "labels": [{"value": 1, "name": "spleen", "color": [157, 108, 162],
                 "category": ["SCT", "91723000", "Anatomical Structure"],
                 "type": ["SCT", "78961009", "Spleen"]}, ...]}

(``"modifier"`` is added for lateralised names, e.g. ``["SCT", "7771000", "Left"]``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError, InputError, OutputExistsError
from medseg.io.atomic import atomic_write_text
from medseg.io.terminology import Code, Terminology, terminology_for

FORMAT_TAG = "medseg-labels/1"

RGB = tuple[int, int, int]

#: Display tones for common structures, by SNOMED type code value.
_TYPE_COLORS: dict[str, RGB] = {
    "78961009": (157, 108, 162),  # spleen
    "10200004": (221, 130, 101),  # liver
    "64033007": (185, 102, 83),  # kidney
    "15776009": (249, 180, 111),  # pancreas
    "69695003": (216, 132, 105),  # stomach
    "28231008": (139, 150, 98),  # gallbladder
    "15825003": (224, 97, 76),  # aorta
    "80891009": (206, 110, 84),  # heart
    "82471001": (241, 151, 133),  # left atrium
    "39607008": (197, 165, 145),  # lung
    "12738006": (250, 250, 225),  # brain
    "272673000": (241, 214, 145),  # bone
    "51282000": (241, 214, 145),  # vertebra
    "71616004": (192, 104, 88),  # muscle
    "256674009": (230, 220, 70),  # fat
    "108369006": (144, 238, 144),  # neoplasm
    "6574001": (200, 60, 60),  # necrosis
    "79654002": (250, 230, 120),  # edema
    "52988006": (255, 80, 80),  # lesion
}

#: Palette for labels without a tone (ITK-SNAP's first colours, then distinct others).
_PALETTE: tuple[RGB, ...] = (
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 239, 213),
    (0, 0, 205),
    (205, 133, 63),
    (210, 180, 140),
    (102, 205, 170),
    (0, 0, 128),
    (0, 139, 139),
    (46, 139, 87),
    (255, 228, 225),
    (106, 90, 205),
    (221, 160, 221),
    (233, 150, 122),
    (165, 42, 42),
    (255, 250, 250),
)


@dataclass(frozen=True)
class LabelInfo:
    """One label: its voxel value, name, sRGB colour (0–255) and coded meaning."""

    value: int
    name: str
    color: RGB
    terminology: Terminology

    def as_dict(self) -> dict[str, Any]:
        t = self.terminology
        out: dict[str, Any] = {
            "value": self.value,
            "name": self.name,
            "color": list(self.color),
            "category": t.category.as_list(),
            "type": t.type.as_list(),
        }
        if t.modifier is not None:
            out["modifier"] = t.modifier.as_list()
        return out


def default_color(value: int, terminology: Terminology) -> RGB:
    """A structure's tone when known, else the palette entry for ``value``."""
    tone = _TYPE_COLORS.get(terminology.type.value)
    return tone if tone is not None else _PALETTE[(value - 1) % len(_PALETTE)]


def build_label_table(
    label_names: Mapping[int, str],
    values: Iterable[int] = (),
    colors: Mapping[int, Sequence[int]] | None = None,
) -> tuple[LabelInfo, ...]:
    """The table of every non-zero label in ``label_names`` or ``values``, sorted by value.

    Args:
        label_names: ``{value: name}``; value 0 (background) is ignored.
        values: further label values present (e.g. in the array); unnamed ones are called
            ``label_<value>``.
        colors: optional sRGB (0–255) overrides per value.
    """
    keys = sorted(({int(v) for v in label_names} | {int(v) for v in values}) - {0})
    out = []
    for v in keys:
        if v < 0:
            raise ConfigError(f"label values: expected values >= 0, found {v}")
        name = str(label_names.get(v, f"label_{v}"))
        term = terminology_for(name)
        c = colors.get(v) if colors else None
        rgb = default_color(v, term) if c is None else _check_rgb(c, v)
        out.append(LabelInfo(v, name, rgb, term))
    return tuple(out)


def _check_rgb(c: Sequence[int], value: int) -> RGB:
    rgb = tuple(int(x) for x in c)
    if len(rgb) != 3 or not all(0 <= x <= 255 for x in rgb):
        raise ConfigError(f"label {value}: colour: expected three integers 0..255, found {c!r}")
    return (rgb[0], rgb[1], rgb[2])


def label_table_document(
    table: Sequence[LabelInfo], background: str = "background"
) -> dict[str, Any]:
    """The JSON document of ``table`` (the content of ``labels.json``)."""
    return {
        "format": FORMAT_TAG,
        "background": {"value": 0, "name": background},
        "labels": [info.as_dict() for info in table],
    }


def label_table_text(table: Sequence[LabelInfo], background: str = "background") -> str:
    return json.dumps(label_table_document(table, background), indent=1) + "\n"


def write_label_table(
    table: Sequence[LabelInfo],
    path: str | Path,
    *,
    background: str = "background",
    overwrite: bool = False,
) -> Path:
    """Write ``labels.json`` (atomically).

    Many segmentations of one model share one table in one folder, so an existing file with
    the same content is left as it is; one with a different content is an
    :class:`OutputExistsError` unless ``overwrite``.
    """
    p = Path(path)
    text = label_table_text(table, background)
    if p.exists() and not overwrite:
        if p.read_text(encoding="utf-8") == text:
            return p
        raise OutputExistsError(p)
    return atomic_write_text(p, text, overwrite=True)


def parse_label_document(doc: Any, source: str | Path | None) -> tuple[LabelInfo, ...]:
    """Label table from a ``labels.json`` document (as written by :func:`write_label_table`)."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_TAG:
        raise InputError(source, f"not a medseg label table (expected format '{FORMAT_TAG}')")
    out = []
    try:
        for rec in doc["labels"]:
            term = Terminology(
                Code(*rec["category"]),
                Code(*rec["type"]),
                Code(*rec["modifier"]) if "modifier" in rec else None,
            )
            rgb = _check_rgb(rec["color"], int(rec["value"]))
            out.append(LabelInfo(int(rec["value"]), str(rec["name"]), rgb, term))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(source, f"malformed label table entry: {exc}") from exc
    return tuple(out)


def read_label_table(path: str | Path) -> tuple[LabelInfo, ...]:
    """Read ``labels.json``."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(p, "file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(p, f"not a readable JSON file ({exc})") from exc
    return parse_label_document(doc, p)


__all__ = [
    "LabelInfo",
    "build_label_table",
    "default_color",
    "label_table_document",
    "parse_label_document",
    "read_label_table",
    "write_label_table",
]
