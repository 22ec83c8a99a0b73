"""Coded meanings of common segmentation labels: SNOMED-CT category, type and laterality.

DICOM SEG (PS3.3 C.8.20.2) and 3D Slicer's ``TerminologyEntry`` describe each segment by a
*category* (CID 7150, e.g. "Anatomical Structure") and a *type* (e.g. "Spleen"), optionally
with a *type modifier* ("Left" / "Right"). :func:`terminology_for` maps a label name such as
``"spleen"``, ``"kidney_left"``, ``"Left Atrium"`` or ``"peritumoral oedema"`` to those codes
with a small table of common structures (code values as in the DICOM content-mapping
resource, PS3.16; the test suite checks every value against pydicom's copy of it).

Matching: the name is lower-cased, ``_``/``-`` become spaces, British spellings are mapped to
American ones (tumour, oedema, grey); the whole phrase is looked up first (so "left atrium"
stays one structure), then, if the name has a laterality word (left/right, l/r), the phrase
without it, with the laterality as type modifier. Names that match nothing get the generic
fallback :data:`GENERIC` = category *Tissue* / type *Tissue* (SCT 85756007), the entry 3D
Slicer itself assigns to a segment without terminology; the label's own name still travels
as the segment label, so nothing is lost, only not coded. Matching is exact (no guessing
that "lung upper lobe" is "lung").
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """One coded concept: coding scheme designator, code value, code meaning."""

    scheme: str
    value: str
    meaning: str

    def as_list(self) -> list[str]:
        return [self.scheme, self.value, self.meaning]


@dataclass(frozen=True)
class Terminology:
    """Category, type and optional type modifier of one label."""

    category: Code
    type: Code
    modifier: Code | None = None


# Categories (CID 7150 Segmentation Property Categories).
ANATOMY = Code("SCT", "91723000", "Anatomical Structure")
TISSUE = Code("SCT", "85756007", "Tissue")
ABNORMAL = Code("SCT", "49755003", "Morphologically Abnormal Structure")

LEFT = Code("SCT", "7771000", "Left")
RIGHT = Code("SCT", "24028007", "Right")

#: The fallback for unmatched names (3D Slicer's default terminology entry).
GENERIC = Terminology(TISSUE, Code("SCT", "85756007", "Tissue"))

_A, _T, _M = ANATOMY, TISSUE, ABNORMAL
#: name (normalised, see :func:`normalise_name`) -> (category, code value, code meaning).
_TABLE: dict[str, tuple[Code, str, str]] = {
    # abdomen
    "spleen": (_A, "78961009", "Spleen"),
    "liver": (_A, "10200004", "Liver"),
    "kidney": (_A, "64033007", "Kidney"),
    "pancreas": (_A, "15776009", "Pancreas"),
    "stomach": (_A, "69695003", "Stomach"),
    "gallbladder": (_A, "28231008", "Gallbladder"),
    "adrenal gland": (_A, "23451007", "Adrenal gland"),
    "duodenum": (_A, "38848004", "Duodenum"),
    "small bowel": (_A, "30315005", "Small intestine"),
    "small intestine": (_A, "30315005", "Small intestine"),
    "colon": (_A, "71854001", "Colon"),
    "esophagus": (_A, "32849002", "Esophagus"),
    "urinary bladder": (_A, "89837001", "Urinary bladder"),
    "bladder": (_A, "89837001", "Urinary bladder"),
    "prostate": (_A, "41216001", "Prostate"),
    # vessels
    "aorta": (_A, "15825003", "Aorta"),
    "inferior vena cava": (_A, "64131007", "Inferior vena cava"),
    "portal vein": (_A, "32764006", "Portal vein"),
    "pulmonary artery": (_A, "81040000", "Pulmonary artery"),
    # thorax and heart
    "heart": (_A, "80891009", "Heart"),
    "left atrium": (_A, "82471001", "Left atrium"),
    "right atrium": (_A, "73829009", "Right atrium"),
    "left ventricle": (_A, "87878005", "Left ventricle"),
    "right ventricle": (_A, "53085002", "Right ventricle"),
    "left ventricle myocardium": (_A, "49848007", "Left ventricle myocardium"),
    "lung": (_A, "39607008", "Lung"),
    "trachea": (_A, "44567001", "Trachea"),
    "thyroid": (_A, "69748006", "Thyroid"),
    "thyroid gland": (_A, "69748006", "Thyroid"),
    # neuro
    "brain": (_A, "12738006", "Brain"),
    "cerebellum": (_A, "113305005", "Cerebellum"),
    "hippocampus": (_A, "5366008", "Hippocampus"),
    "spinal cord": (_A, "2748008", "Spinal cord"),
    "white matter": (_T, "389080008", "White matter"),
    "gray matter": (_T, "389081007", "Gray matter"),
    # skeleton and soft tissue
    "bone": (_T, "272673000", "Bone"),
    "vertebra": (_A, "51282000", "Vertebra"),
    "rib": (_A, "113197003", "Rib"),
    "sternum": (_A, "56873002", "Sternum"),
    "skull": (_A, "89546000", "Skull"),
    "femur": (_A, "71341001", "Femur"),
    "sacrum": (_A, "54735007", "Sacrum"),
    "muscle": (_T, "71616004", "Muscle"),
    "fat": (_T, "256674009", "Fat"),
    # abnormalities (brain-tumour sub-regions included)
    "tumor": (_M, "108369006", "Neoplasm"),
    "neoplasm": (_M, "108369006", "Neoplasm"),
    "tumor core": (_M, "108369006", "Neoplasm"),
    "whole tumor": (_M, "108369006", "Neoplasm"),
    "enhancing tumor": (_M, "108369006", "Neoplasm"),
    "non enhancing tumor": (_M, "108369006", "Neoplasm"),
    "necrosis": (_M, "6574001", "Necrosis"),
    "necrotic core": (_M, "6574001", "Necrosis"),
    "necrotic tumor core": (_M, "6574001", "Necrosis"),
    "edema": (_M, "79654002", "Edema"),
    "peritumoral edema": (_M, "79654002", "Edema"),
    "lesion": (_M, "52988006", "Lesion"),
    "cyst": (_M, "367643001", "Cyst"),
    "mass": (_M, "4147007", "Mass"),
    "nodule": (_M, "27925004", "Nodule"),
}

_BRITISH = {"tumour": "tumor", "oedema": "edema", "grey": "gray", "oesophagus": "esophagus"}
_LATERALITY = {"left": LEFT, "l": LEFT, "right": RIGHT, "r": RIGHT}


def normalise_name(name: str) -> list[str]:
    """Lower-case words of ``name`` (``_``/``-``/spaces split, British → American)."""
    words = [w for w in re.split(r"[\s_\-]+", name.strip().lower()) if w]
    return [_BRITISH.get(w, w) for w in words]


def _lookup(words: list[str]) -> tuple[Code, str, str] | None:
    phrase = " ".join(words)
    hit = _TABLE.get(phrase)
    if hit is None and phrase.endswith("s"):
        hit = _TABLE.get(phrase[:-1])  # plurals: "kidneys", "lungs"
    return hit


def terminology_for(name: str) -> Terminology:
    """Category / type / laterality codes for a label name (see the module docstring)."""
    words = normalise_name(name)
    hit = _lookup(words)
    modifier = None
    if hit is None:
        side = [w for w in words if w in _LATERALITY]
        rest = [w for w in words if w not in _LATERALITY]
        if len(side) == 1 and rest:
            hit = _lookup(rest)
            modifier = _LATERALITY[side[0]]
    if hit is None:
        return GENERIC
    category, value, meaning = hit
    return Terminology(category, Code("SCT", value, meaning), modifier)


def known_codes() -> dict[str, tuple[Code, Code]]:
    """The table as ``{name: (category, type)}`` (for documentation and tests)."""
    return {k: (c, Code("SCT", v, m)) for k, (c, v, m) in _TABLE.items()}


__all__ = ["GENERIC", "Code", "Terminology", "known_codes", "normalise_name", "terminology_for"]
