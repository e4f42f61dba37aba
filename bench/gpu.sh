#!/usr/bin/env bash
# GPU benchmark (issue 6): the reference sweep and a ResNet-50 at 224×224 on 5,000 synthetic
# images with ONNX Runtime's CUDA provider, checked against the CPU run of the reference sweep.
# Meant for one H100 within 8 minutes: `bash bench/gpu.sh [OUT]`. Prints a table.
# NOT YET RUN: no session so far had a GPU machine; the first one that does should run it and
# put the table in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/sdaudit-gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
$PY - <<'PYEOF'
import onnxruntime as ort
print("onnxruntime", ort.__version__, "providers:", ort.get_available_providers())
if hasattr(ort, "preload_dlls"):
    ort.preload_dlls()
PYEOF
# Models and data (ResNet-20 trained briefly on digits, ResNet-50 with random weights).
$PY - "$OUT" <<'PYEOF'
import sys
from pathlib import Path
sys.path.insert(0, "bench")
import numpy as np, torch
import speed
from resnet import resnet50
out = Path(sys.argv[1])
speed.prepare(out)
if not (out / "resnet50.onnx").exists():
    speed._export(resnet50().eval(), torch.zeros(1, 3, 224, 224), str(out / "resnet50.onnx"))
if not (out / "synthetic224-5000.npz").exists():
    rng = np.random.default_rng(0)
    np.savez(out / "synthetic224-5000.npz", x=rng.standard_normal((5000, 3, 224, 224), dtype=np.float32))
PYEOF
L20=$($PY -c "import sys; sys.path.insert(0,'bench'); import speed; print(','.join(speed.block_outputs('$OUT/resnet20.onnx')))")
L50=$($PY -c "import sys; sys.path.insert(0,'bench'); import speed; print(','.join(speed.block_outputs('$OUT/resnet50.onnx')))")
COMMON=(--measure ablation --no-per-layer --draws 5 --seed 0 --format json -q)
run() {  # device model data layers -> report file, wall seconds on stdout
  local start end
  start=$(date +%s.%N)
  sdaudit scan "$2" --data "$3" --layers "$4" --device "$1" "${COMMON[@]}" > "$5"
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
T20C=$(run cpu "$OUT/resnet20.onnx" "$OUT/digits32-1024.npz" "$L20" "$OUT/r20-cpu.json")
T20G=$(run cuda "$OUT/resnet20.onnx" "$OUT/digits32-1024.npz" "$L20" "$OUT/r20-cuda.json")
T50G=$(run cuda "$OUT/resnet50.onnx" "$OUT/synthetic224-5000.npz" "$L50" "$OUT/r50-cuda.json")
$PY - "$OUT" "$T20C" "$T20G" "$T50G" <<'PYEOF'
import json, sys
out, t20c, t20g, t50g = sys.argv[1], *map(float, sys.argv[2:])
cpu = json.load(open(f"{out}/r20-cpu.json")); gpu = json.load(open(f"{out}/r20-cuda.json"))
r50 = json.load(open(f"{out}/r50-cuda.json"))
diff = max(abs(a - b) for a, b in zip(cpu["ablation"]["accuracy_mean"], gpu["ablation"]["accuracy_mean"]))
print("| sweep | provider | wall (s) | ablation AUC |")
print("|---|---|---:|---:|")
print(f"| ResNet-20, 1,024 images | {cpu['runtime']['provider']} | {t20c:.1f} | {cpu['summary']['ablation_auc']:.4f} |")
print(f"| ResNet-20, 1,024 images | {gpu['runtime']['provider']} | {t20g:.1f} | {gpu['summary']['ablation_auc']:.4f} |")
print(f"| ResNet-50, 5,000 images | {r50['runtime']['provider']} | {t50g:.1f} | {r50['summary']['ablation_auc']:.4f} |")
print(f"\nLargest accuracy difference CPU vs CUDA on the reference sweep: {diff:.4f} (limit 0.01)")
sys.exit(0 if diff <= 0.01 else 1)
PYEOF
