"""Dataset discovery, validation and cross-validation splits.

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

Everything here is torch-free. Paths inside a :class:`Case` are absolute.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import (
    ConfigError,
    GeometryMismatchError,
    InputError,
    InvalidVolumeError,
    MedsegError,
)
from medseg.io import ITK_SUFFIXES, NIFTI_SUFFIXES, read_label_map, read_volume
from medseg.io.atomic import atomic_write_text, full_suffix
from medseg.io.files import path_problem, read_text_file
from medseg.volume import LabelMap, Volume

IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES


@dataclass(frozen=True)
class Case:
    """One training or test case.

    Attributes:
        case_id: unique identifier (used in splits, caches and reports).
        images: one path per channel, in channel order; or a single 4-D file when
            ``channel_indices`` is given.
        label: the label map path, or ``None`` for unlabelled cases.
        channel_indices: for a single 4-D image file, the volume index of each channel
            (``(0, 1)`` for FLAIR + T1c stored as 4-D); ``None`` when ``images`` holds one 3-D file
            per channel.
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path | None = None
    channel_indices: tuple[int, ...] | None = None

    @property
    def n_channels(self) -> int:
        return len(self.channel_indices) if self.channel_indices is not None else len(self.images)

    def files(self) -> list[Path]:
        """Every file the case depends on (images then label)."""
        out = list(self.images)
        if self.label is not None:
            out.append(self.label)
        return out


@dataclass(frozen=True)
class Dataset:
    """A set of cases with shared channel and label definitions.

    Attributes:
        name: dataset name (from ``dataset.json`` or the folder name).
        channel_names: one name per input channel, e.g. ``["FLAIR", "T1c"]`` or ``["CT"]``.
        label_names: ``{value: name}``, including ``0`` (background).
        cases: the cases, sorted by ``case_id``.
        root: the folder the dataset was loaded from.
        source: the file that described it (``dataset.json``, the CSV) or the folder itself.
    """

    name: str
    channel_names: list[str]
    label_names: dict[int, str]
    cases: list[Case]
    root: Path
    source: Path = field(default=Path("."))

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(f"{self.source}: no case {case_id!r}")

    def subset(self, case_ids: Sequence[str]) -> Dataset:
        """The dataset restricted to ``case_ids`` (unknown ids raise ``KeyError``)."""
        return Dataset(
            self.name,
            list(self.channel_names),
            dict(self.label_names),
            [self.case(c) for c in case_ids],
            self.root,
            self.source,
        )


@dataclass(frozen=True)
class Problem:
    """One problem found by :func:`check_dataset`.

    ``case_id`` is ``None`` for dataset-level problems; ``path`` is the file concerned.
    ``severity`` is ``"error"`` (the dataset cannot be used as is) or ``"warning"``.
    """

    case_id: str | None
    path: Path | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.case_id if self.case_id is not None else "<dataset>"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"warning: {text}" if self.severity == "warning" else text


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# reading and checking
# ---------------------------------------------------------------------------------------------
def read_case(
    case: Case, label_names: Mapping[int, str] | None = None, *, check_finite: bool = True
) -> tuple[list[Volume], LabelMap | None]:
    """Read a case's channels and label.

    Returns ``(channels, label)``: one 3-D :class:`Volume` per channel (all on one grid, checked)
    and the :class:`LabelMap` (checked to be on the image grid) or ``None``.

    Raises:
        InputError: a file is missing/unreadable, or has NaN voxels (``check_finite``).
        GeometryMismatchError: a channel or the label is on another grid.
    """
    vols: list[Volume] = []
    if case.channel_indices is not None:
        for ch in case.channel_indices:
            v = read_volume(case.images[0], channel=ch, check_finite=check_finite)
            _check_multichannel(v, case)
            vols.append(v)
    else:
        for p in case.images:
            vols.append(read_volume(p, check_finite=check_finite))
    for v in vols[1:]:
        vols[0].check_same_grid(v)
    label = None
    if case.label is not None:
        label = read_label_map(case.label, label_names)
        vols[0].check_same_grid(label)
    return vols, label


def _check_multichannel(v: Volume, case: Case) -> None:
    """A case declared as one multi-channel file must really be 4-D (readers record the
    channel they took in ``meta.extra["channel"]`` only for 4-D / vector files)."""
    if "channel" not in v.meta.extra:
        raise InvalidVolumeError(
            case.images[0],
            f"expected a 4-D image with {case.n_channels} channels, found a 3-D image",
        )


def check_dataset(ds: Dataset, *, require_labels: bool = True) -> list[Problem]:
    """Validate every case and return every problem found (an empty list means valid).

    Checks, per case: every file exists and is readable; no NaN/inf voxels; channels share a
    grid; a label exists (when ``require_labels``), is integral, lies on the image grid, and
    holds only values declared in ``ds.label_names`` (when any are declared). Warnings (which
    do not make a dataset invalid): a label with no foreground, a declared label that no case
    contains. Nothing is raised for data problems; reading continues with the next case.
    """
    problems: list[Problem] = []
    if not ds.label_names:
        problems.append(
            Problem(
                None,
                ds.source,
                "no label names declared; label values are not checked against a declared set",
                severity="warning",
            )
        )
    declared = set(ds.label_names)
    seen: set[int] = set()
    n_read = 0
    for case in ds.cases:
        found, present = _check_case(case, declared, require_labels)
        problems.extend(found)
        if present is not None:
            n_read += 1
            seen |= present
            if not present - {0}:
                problems.append(
                    Problem(
                        case.case_id,
                        case.label,
                        "label has no foreground (only 0)",
                        severity="warning",
                    )
                )
    absent = sorted(declared - seen - {0})
    if absent and n_read == len(ds.cases):
        names = ", ".join(f"{v} ({ds.label_names[v]})" for v in absent)
        problems.append(
            Problem(
                None, ds.source, f"declared label(s) {names} occur in no case", severity="warning"
            )
        )
    return problems


def _problem(case_id: str, path: Path, exc: MedsegError) -> Problem:
    """A reading error as a problem of ``path``; when the error is about another file (a
    damaged slice inside a DICOM series folder), that file is the problem's path."""
    where = getattr(exc, "path", None)
    problem = getattr(exc, "problem", None)
    if isinstance(where, Path) and problem is not None:
        return Problem(case_id, where, str(problem))
    return Problem(case_id, path, str(exc))


def _check_case(
    case: Case, declared: set[int], require_labels: bool
) -> tuple[list[Problem], set[int] | None]:
    """Problems of one case, and the label values present (``None`` if unread)."""
    out: list[Problem] = []
    cid = case.case_id
    for f in case.images:
        if not f.exists():
            out.append(Problem(cid, f, "image file missing"))
    if case.label is None:
        if require_labels:
            out.append(Problem(cid, None, "no label listed"))
    elif not case.label.exists():
        out.append(Problem(cid, case.label, "label file missing"))
    if out:
        return out, None
    vols: list[Volume] = []
    idx = case.channel_indices or tuple(range(len(case.images)))
    for n, ch in enumerate(idx):
        path = case.images[0] if case.channel_indices is not None else case.images[n]
        try:
            v = read_volume(
                path, channel=ch if case.channel_indices is not None else None, check_finite=False
            )
            if case.channel_indices is not None:
                _check_multichannel(v, case)
        except MedsegError as exc:
            out.append(_problem(cid, path, exc))
            if case.channel_indices is not None and "out of range" not in str(exc):
                break  # one multi-channel file: the same problem for every channel
            continue
        if np.issubdtype(v.array.dtype, np.floating):
            nbad = int(np.count_nonzero(~np.isfinite(v.array)))
            if nbad:
                out.append(
                    Problem(
                        cid,
                        path,
                        f"channel {n}: {nbad} NaN or infinite voxel(s); expected finite values",
                    )
                )
        vols.append(v)
    for n, v in enumerate(vols[1:], start=1):
        try:
            vols[0].check_same_grid(v)
        except GeometryMismatchError as exc:
            out.append(
                Problem(
                    cid,
                    v.source,
                    f"channel {n} is not on channel 0's grid: {str(exc).splitlines()[0]}",
                )
            )
    if case.label is None:
        return out, None
    try:
        lab = read_volume(case.label, check_finite=False)
    except MedsegError as exc:
        out.append(_problem(cid, case.label, exc))
        return out, None
    try:
        lm = LabelMap.from_volume(lab)
    except MedsegError as exc:
        out.append(_problem(cid, case.label, exc))
        return out, None
    if vols:
        try:
            vols[0].check_same_grid(lm)
        except GeometryMismatchError as exc:
            out.append(
                Problem(
                    cid, case.label, f"label is not on the image grid: {str(exc).splitlines()[0]}"
                )
            )
    present = {int(v) for v in np.unique(lm.array)}
    if declared:
        extra = sorted(present - declared)
        if extra:
            out.append(
                Problem(
                    cid,
                    case.label,
                    f"label values {extra} not in the declared set {sorted(declared)}",
                )
            )
    return out, present


# ---------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------
def make_splits(
    ds: Dataset | Sequence[str], n_folds: int = 5, seed: int = 0
) -> list[dict[str, list[str]]]:
    """Reproducible k-fold splits: ``[{"train": [...], "val": [...]}, ...]`` (``n_folds`` of
    them). Case ids are sorted, shuffled with ``numpy.random.default_rng(seed)`` and dealt into
    folds round-robin, so every case is in exactly one validation fold and fold sizes differ by
    at most one. The result depends only on the set of ids, ``n_folds`` and ``seed``.
    """
    ids = sorted(c.case_id for c in ds.cases) if isinstance(ds, Dataset) else sorted(ds)
    if n_folds < 2:
        raise ConfigError(f"n_folds: expected >= 2, found {n_folds}")
    if len(ids) < n_folds:
        raise ConfigError(
            f"n_folds: {n_folds} folds need at least {n_folds} cases, found {len(ids)}"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for rank, i in enumerate(order):
        folds[rank % n_folds].append(ids[int(i)])
    out = []
    for f in range(n_folds):
        val = sorted(folds[f])
        out.append({"train": sorted(set(ids) - set(val)), "val": val})
    return out


def write_splits(
    splits: Sequence[Mapping[str, Sequence[str]]], path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write splits as JSON (a list of ``{"train": [...], "val": [...]}``; user-editable)."""
    data = [{"train": list(s["train"]), "val": list(s["val"])} for s in splits]
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n", overwrite=overwrite)


def read_splits(path: str | Path, ds: Dataset | None = None) -> list[dict[str, list[str]]]:
    """Read splits written by :func:`write_splits` (possibly edited by hand).

    Raises :class:`ConfigError` naming the fold and key when the structure is wrong, when a fold
    has a case in both train and val, or (given ``ds``) when a case id is unknown.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(p, f"cannot read splits: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: invalid JSON: {exc}") from exc
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{p}: expected a non-empty list of {{'train': [...], 'val': [...]}}")
    known = {c.case_id for c in ds.cases} if ds is not None else None
    out = []
    for i, fold in enumerate(data):
        if not isinstance(fold, dict) or set(fold) != {"train", "val"}:
            raise ConfigError(
                f"{p}: [{i}]: expected exactly the keys 'train' and 'val', found "
                f"{sorted(fold) if isinstance(fold, dict) else type(fold).__name__}"
            )
        for key in ("train", "val"):
            if not isinstance(fold[key], list) or not all(isinstance(x, str) for x in fold[key]):
                raise ConfigError(f"{p}: [{i}].{key}: expected a list of case ids")
            if known is not None:
                unknown = sorted(set(fold[key]) - known)
                if unknown:
                    raise ConfigError(f"{p}: [{i}].{key}: unknown case ids {unknown}")
        both = sorted(set(fold["train"]) & set(fold["val"]))
        if both:
            raise ConfigError(f"{p}: [{i}]: cases in both train and val: {both}")
        out.append({"train": list(fold["train"]), "val": list(fold["val"])})
    return out


__all__ = [
    "Case",
    "Dataset",
    "Problem",
    "check_dataset",
    "load_dataset",
    "make_splits",
    "read_case",
    "read_splits",
    "write_splits",
]
