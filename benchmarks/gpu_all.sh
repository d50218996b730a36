#!/usr/bin/env bash
# The GPU benchmarks in one go, for a CUDA machine (each writes its JSON record under benchmarks/results/):
#   bench_wsi_gpu_vit.py     tiles/s, ViT-L/16 and ViT-B/16 bf16 end to end vs bare forward -> wsi_gpu_vit_bf16.json
#   bench_ct_embed.py        volumes/s, medvl CT tower vs bare MONAI resnet18        -> ct_resnet18_embed_gpu.json
#   bench_train_step.py --gpu samples/s, medvl trainer step vs open_clip ClipLoss loop -> train_step_gpu.json
# GPU utilisation (nvidia-smi, 100 ms samples) is recorded beside each figure. Without a GPU every script writes a
# "not measured: no GPU" record instead (a measured record from an earlier run is kept).
# Run from the repository root: bash benchmarks/gpu_all.sh [PYTHON]   (then python benchmarks/summarize.py)
set -u
PY="${1:-${PYTHON:-python}}"
export MEDVL_NO_PROGRESS=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
status=0
for script in "bench_wsi_gpu_vit.py" "bench_ct_embed.py" "bench_train_step.py --gpu"; do
  echo "== $script"
  # shellcheck disable=SC2086
  timeout 900 "$PY" benchmarks/$script || { echo "FAILED: $script"; status=1; }
done
"$PY" benchmarks/summarize.py || status=1
exit $status
