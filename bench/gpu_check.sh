#!/usr/bin/env bash
# GPU check (one short command, < 5 min): train-step throughput of the paper's backbones at
# batch 128 in bf16, with and without the resizer/STN, images/s, achieved TFLOP/s, memory.
#   bash bench/gpu_check.sh            (on a machine with CUDA; writes bench/results.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv || true
timeout 280 "$PY" bench/train_step.py --device cuda --amp bf16 --channels-last --batch 128 --steps 10 \
    --models vit_base_patch16_224 swin_base_patch4_window7_224
nvidia-smi --query-gpu=memory.used --format=csv || true
