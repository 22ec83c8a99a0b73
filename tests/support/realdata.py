"""Dataset descriptions built around the real-data tier (``../shared/data``).

They reach the data through :func:`support.paths.shared_path`, so a test using them skips
(or, in CI, fails) when the data are absent and must be marked ``realdata``.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.paths import shared_path


def brats_dataset_json(out: Path) -> Path:
    """Write a dataset.json (medseg's per-channel list form) for the 6 BraTS cases."""
    root = shared_path("brats2015_deepmedic")
    training = [
        {
            "case_id": d.name,
            "image": [
                str(d / "Flair_subtrMeanDivStd.nii.gz"),
                str(d / "T1c_subtrMeanDivStd.nii.gz"),
            ],
            "label": str(d / "OTMultiClass.nii.gz"),
        }
        for d in sorted(root.glob("*/brats_2013_pat*"))
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset.json").write_text(
        json.dumps(
            {
                "name": "BraTS2015-DeepMedic",
                "modality": {"0": "FLAIR", "1": "T1c"},
                "labels": {
                    "0": "background",
                    "1": "necrosis",
                    "2": "oedema",
                    "3": "non_enhancing",
                    "4": "enhancing",
                },
                "training": training,
            }
        )
    )
    return out
