#!/usr/bin/env bash
# The GPU check of a left-atrium recipe, for one device call of at most 8 minutes:
# train fold 0 of $CONFIG (default configs/la_gpu_fast.yaml; the two-stage version is
# configs/la_gpu_cascade.yaml), predict and score its held-out cases on their original grid,
# and print the time to 0.90 validation Dice (bench/train_la.py).
#
# The device has torch but not monai, nibabel, pydicom or SimpleITK: carry them as wheels
# (.whl, ignored by git; see the device README), and the LA data (31 MB) copied into .la
# (ignored): carry [".whl", ".la"] and run  bash bench/gpu_la.sh .la
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
data="${1:-../shared/data/la2018_msd}"
out="${OUT:-/tmp}/la_gpu"
config="${CONFIG:-configs/la_gpu_fast.yaml}"
timeout 470 python3 bench/train_la.py --config "$config" --data "$data" \
    --folds 0 --device cuda --out "$out"
find "$out"/model -path '*fold_0/log.txt' -exec tail -n 3 {} \;
