#!/usr/bin/env bash
# The main job on the sample data shipped inside the package (no network, no ../shared):
# inspect and convert a real DICOM series, then inspect the result.
set -euo pipefail
SAMPLE=$(python -c "import medseg, pathlib; print(pathlib.Path(medseg.__file__).parent / 'sample_data')")
OUT=${MEDSEG_SAMPLE_OUT:-out/sample_job}
mkdir -p "$OUT"

echo "== medseg info on a 20-slice JPEG 2000 CT series"
medseg info "$SAMPLE/ct_dicom"
echo "== medseg convert: DICOM series -> NIfTI (geometry kept, written atomically)"
medseg convert "$SAMPLE/ct_dicom" "$OUT/ct.nii.gz" --overwrite
medseg info "$OUT/ct.nii.gz"

echo "== medseg check + medseg plan on the shipped spleen CT case (CSV listing)"
medseg check "$SAMPLE/spleen.csv"
medseg plan "$SAMPLE/spleen.csv" --out "$OUT/spleen_plan" --overwrite
