"""Dataset layouts: :func:`load_dataset` reads a dataset description into a :class:`Dataset`.

Supported layouts (``load_dataset`` picks by what it is given):

* **Decathlon / nnU-Net v1**: a folder (or its ``dataset.json``) whose ``training`` list names
  ``image``/``label`` paths. The image is either one 4-D file (one volume per modality, MSD) or,
  when that file is absent, per-channel files ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz``...
  beside it (nnU-Net v1). Channel names come from ``modality``, label names from ``labels``
  (``{"0": "background", "1": "tumour"}``). medseg extensions: ``image`` may be a list of
  per-channel files, and an entry may carry its own ``case_id``.
* **nnU-Net v2**: ``dataset.json`` with ``channel_names``, ``labels`` (``{"background": 0,
  ...}``) and ``file_ending`` and no ``training`` list: cases are discovered from
  ``imagesTr/<case>_XXXX<file_ending>`` and ``labelsTr/<case><file_ending>``.
* **CSV**: a ``.csv`` file with a header ``case_id,image[,image_1,...],label`` (or columns
  named after the channels: ``case_id,<channel>...,label``); relative paths are relative to the
  CSV's folder. Channel names are the image column names.
* **Folder pairs**: a folder with ``images/`` and ``labels/`` sub-folders holding files of the
  same name (one channel).

Paths inside a :class:`Case` are absolute.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medseg.datasets.records import Case, Dataset
from medseg.errors import ConfigError, InputError
from medseg.io import IMAGE_SUFFIXES
from medseg.io.atomic import full_suffix
from medseg.io.files import path_problem, read_text_file


def load_dataset(path: str | Path) -> Dataset:
    """Load a dataset description: a folder (``dataset.json`` inside, or ``images/`` +
    ``labels/``), a ``dataset.json`` file, or a ``.csv`` listing. See the module docstring.

    Raises:
        InputError: the path does not exist or no layout is recognised.
        ConfigError: ``dataset.json`` / CSV content is malformed (the message names the key).
    """
    problem = path_problem(Path(path).expanduser(), allow_dir=True)
    if problem is not None:
        if problem.startswith("no such"):
            problem = "no such file or folder; expected a dataset folder, dataset.json or .csv"
        raise InputError(Path(path), problem)
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        if (p / "dataset.json").is_file():
            return _load_json(p / "dataset.json")
        if (p / "images").is_dir() and (p / "labels").is_dir():
            return _load_folder_pairs(p)
        raise InputError(
            p,
            "no dataset.json and no images/ + labels/ sub-folders; expected a Decathlon/nnU-Net "
            "folder, a folder-pairs layout, or pass a .csv listing",
        )
    if p.suffix.lower() == ".json":
        return _load_json(p)
    if p.suffix.lower() == ".csv":
        return _load_csv(p)
    raise InputError(p, f"unsupported dataset description '{p.suffix}'; expected .json or .csv")


def _abs(p: Path) -> Path:
    """``p`` made absolute with links resolved; a link loop is kept as it is (absolute), so
    that checking the case reports it instead of failing here."""
    try:
        return p.resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop
        return Path(os.path.abspath(p))


def _read_json(path: Path) -> dict[str, Any]:
    text = read_text_file(path, "JSON file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _parse_label_names(raw: Any, path: Path) -> dict[int, str]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{path}: 'labels' must be a non-empty mapping, found {raw!r}")
    out: dict[int, str] = {}
    for k, v in raw.items():
        # MSD/v1: {"0": "background"}; v2: {"background": 0} (v2 region lists are refused).
        if isinstance(v, int) and not isinstance(v, bool):
            out[int(v)] = str(k)
        elif isinstance(v, str) and re.fullmatch(r"-?\d+", str(k)):
            out[int(k)] = v
        else:
            raise ConfigError(
                f"{path}: labels.{k}: expected 'value: name' or 'name: value', found {v!r} "
                "(nnU-Net v2 region-based labels are not supported)"
            )
    if 0 not in out:
        out[0] = "background"
    return dict(sorted(out.items()))


def _channel_names(raw: Any, path: Path, key: str) -> list[str]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{path}: '{key}' must be a non-empty mapping, found {raw!r}")
    try:
        items = sorted(((int(k), str(v)) for k, v in raw.items()), key=lambda kv: kv[0])
    except ValueError as exc:
        raise ConfigError(f"{path}: {key}: keys must be channel indices 0..N-1 ({exc})") from exc
    if [i for i, _ in items] != list(range(len(items))):
        raise ConfigError(f"{path}: {key}: channel indices must be 0..{len(items) - 1}")
    return [v for _, v in items]


def _strip_suffix(name: str) -> str:
    for s in IMAGE_SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return name


def _load_json(path: Path) -> Dataset:
    data = _read_json(path)
    root = path.parent
    name = str(data.get("name", root.name))
    if "labels" not in data:
        raise ConfigError(f"{path}: missing key 'labels'")
    labels = _parse_label_names(data["labels"], path)
    if "training" in data:  # Decathlon / nnU-Net v1
        if "modality" not in data:
            raise ConfigError(f"{path}: missing key 'modality' (channel names)")
        channels = _channel_names(data["modality"], path, "modality")
        entries = data["training"]
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: 'training' must be a list")
        cases = []
        for i, e in enumerate(entries):
            if not isinstance(e, Mapping) or "image" not in e:
                raise ConfigError(f"{path}: training[{i}]: expected {{'image': ..., 'label': ...}}")
            lab = _abs(root / str(e["label"])) if e.get("label") else None
            if isinstance(e["image"], list):  # medseg extension: one file per channel
                imgs = tuple(_abs(root / str(x)) for x in e["image"])
                cid = str(e.get("case_id", _strip_suffix(imgs[0].name)))
                cases.append(Case(cid, imgs, lab))
                continue
            img = _abs(root / str(e["image"]))
            cid = str(e.get("case_id", _strip_suffix(img.name)))
            cases.append(_v1_case(cid, img, lab, len(channels)))
        return _finish(name, channels, labels, cases, root, path)
    if "channel_names" in data:  # nnU-Net v2
        channels = _channel_names(data["channel_names"], path, "channel_names")
        ending = str(data.get("file_ending", ".nii.gz"))
        img_dir, lab_dir = root / "imagesTr", root / "labelsTr"
        if not img_dir.is_dir():
            raise InputError(img_dir, "missing imagesTr/ folder (nnU-Net v2 layout)")
        ids = sorted(
            {
                m.group(1)
                for f in img_dir.iterdir()
                if (m := re.fullmatch(rf"(.+)_\d{{4}}{re.escape(ending)}", f.name))
            }
        )
        cases = []
        for cid in ids:
            imgs = tuple(img_dir / f"{cid}_{c:04d}{ending}" for c in range(len(channels)))
            lab = lab_dir / f"{cid}{ending}"
            cases.append(Case(cid, imgs, lab))
        return _finish(name, channels, labels, cases, root, path)
    raise ConfigError(
        f"{path}: neither a Decathlon/nnU-Net v1 'training' list nor nnU-Net v2 'channel_names' "
        "found; expected one of them"
    )


def _v1_case(cid: str, img: Path, lab: Path | None, n_channels: int) -> Case:
    """MSD stores multi-modal images as one 4-D file; nnU-Net v1 as ``<id>_XXXX`` files."""
    if img.exists():
        indices = tuple(range(n_channels)) if n_channels > 1 else None
        return Case(cid, (img,), lab, indices)
    suffix = full_suffix(img)
    stem = img.name[: -len(suffix)] if suffix else img.name
    split = tuple(img.parent / f"{stem}_{c:04d}{suffix}" for c in range(n_channels))
    if all(s.exists() for s in split):
        return Case(cid, split, lab)
    # Keep the declared path: check_dataset reports it as missing, naming the file.
    return Case(cid, (img,), lab, tuple(range(n_channels)) if n_channels > 1 else None)


def _load_csv(path: Path) -> Dataset:
    root = path.parent
    text = read_text_file(path, "CSV file")
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ConfigError(f"{path}: not a readable CSV file: {exc}") from None
    header = list(rows[0].keys()) if rows else []
    if not rows or "case_id" not in header:
        raise ConfigError(
            f"{path}: expected a header 'case_id,<image column(s)>[,label]', found {header}"
        )
    img_cols = [c for c in header if c not in ("case_id", "label")]
    if not img_cols:
        raise ConfigError(f"{path}: no image column (expected e.g. 'case_id,image,label')")
    cases = []
    for i, r in enumerate(rows, start=2):
        cid = (r.get("case_id") or "").strip()
        if not cid:
            raise ConfigError(f"{path}: line {i}: empty case_id")
        imgs = []
        for c in img_cols:
            v = (r.get(c) or "").strip()
            if not v:
                raise ConfigError(f"{path}: line {i}: empty '{c}'")
            imgs.append(_abs(root / v))
        lab_s = (r.get("label") or "").strip()
        cases.append(Case(cid, tuple(imgs), _abs(root / lab_s) if lab_s else None))
    channels = ["image"] if img_cols == ["image"] else img_cols
    return _finish(path.stem, channels, {}, cases, root, path)


def _load_folder_pairs(root: Path) -> Dataset:
    imgs = sorted(f for f in (root / "images").iterdir() if full_suffix(f) in IMAGE_SUFFIXES)
    if not imgs:
        raise InputError(root / "images", f"no image files ({', '.join(IMAGE_SUFFIXES)})")
    cases = [Case(_strip_suffix(f.name), (_abs(f),), _abs(root / "labels" / f.name)) for f in imgs]
    return _finish(root.name, ["image"], {}, cases, root, root)


def _finish(
    name: str,
    channels: list[str],
    labels: dict[int, str],
    cases: list[Case],
    root: Path,
    source: Path,
) -> Dataset:
    ids = [c.case_id for c in cases]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"{source}: duplicate case ids {dup}")
    if not cases:
        raise InputError(source, "the dataset lists no cases")
    for c in cases:
        if c.n_channels != len(channels):
            raise ConfigError(
                f"{source}: case {c.case_id}: {c.n_channels} channel(s), expected {len(channels)}"
            )
    return Dataset(name, channels, labels, sorted(cases, key=lambda c: c.case_id), root, source)


__all__ = ["load_dataset"]
