#!/usr/bin/env bash
# GPU benchmark (issue 6): the reference sweep and a ResNet-50 at 224×224 on 5,000 synthetic
# images with ONNX Runtime's CUDA provider, checked against the CPU run of the reference sweep;
# IO binding on and off, fp32 and fp16 (curves within 0.005).
# Meant for one H100 within 8 minutes: `bash bench/gpu.sh [OUT]`. Prints a table.
# NOT YET RUN: no session so far had a GPU machine; the first one that does should run it and
# put the table in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/sdaudit-gpu}
PY=${PYTHON:-python3}
# Smoke test without a GPU: DEVICE=cpu R50_IMAGES=16 bash bench/gpu.sh /tmp/gpu-smoke
DEVICE=${DEVICE:-cuda}
R50_IMAGES=${R50_IMAGES:-5000}
mkdir -p "$OUT"
$PY - <<'PYEOF'
import onnxruntime as ort
print("onnxruntime", ort.__version__, "providers:", ort.get_available_providers())
if hasattr(ort, "preload_dlls"):
    ort.preload_dlls()
PYEOF
# Models and data (ResNet-20 trained briefly on digits, ResNet-50 with random weights).
$PY - "$OUT" "$R50_IMAGES" <<'PYEOF'
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
n = int(sys.argv[2])
if not (out / f"synthetic224-{n}.npz").exists():
    rng = np.random.default_rng(0)
    np.savez(out / f"synthetic224-{n}.npz", x=rng.standard_normal((n, 3, 224, 224), dtype=np.float32))
PYEOF
L20=$($PY -c "import sys; sys.path.insert(0,'bench'); import speed; print(','.join(speed.block_outputs('$OUT/resnet20.onnx')))")
L50=$($PY -c "import sys; sys.path.insert(0,'bench'); import speed; print(','.join(speed.block_outputs('$OUT/resnet50.onnx')))")
COMMON=(--no-per-layer --draws 5 --seed 0 --format json -q)
run() {  # name device model data layers [extra flags...] -> OUT/name.json; wall seconds to OUT/name.s
  local name=$1 device=$2 model=$3 data=$4 layers=$5 start end
  shift 5
  start=$(date +%s.%N)
  sdaudit scan "$model" --data "$data" --layers "$layers" --device "$device" "${COMMON[@]}" "$@" \
    > "$OUT/$name.json"
  end=$(date +%s.%N)
  echo "$end - $start" | bc > "$OUT/$name.s"
}
A=(--measure ablation)
N=(--measure noise)
run r20-cpu cpu "$OUT/resnet20.onnx" "$OUT/digits32-1024.npz" "$L20" "${A[@]}"
run r20-cuda "$DEVICE" "$OUT/resnet20.onnx" "$OUT/digits32-1024.npz" "$L20" "${A[@]}"
run r20-cuda-nobind "$DEVICE" "$OUT/resnet20.onnx" "$OUT/digits32-1024.npz" "$L20" "${A[@]}" --no-io-binding
run r20-cuda-fp16 "$DEVICE" "$OUT/resnet20.onnx" "$OUT/digits32-1024.npz" "$L20" "${A[@]}" --precision fp16
run r20-noise-cuda "$DEVICE" "$OUT/resnet20.onnx" "$OUT/digits32-1024.npz" "$L20" "${N[@]}"
run r20-noise-cuda-fp16 "$DEVICE" "$OUT/resnet20.onnx" "$OUT/digits32-1024.npz" "$L20" "${N[@]}" --precision fp16
run r50-cuda "$DEVICE" "$OUT/resnet50.onnx" "$OUT/synthetic224-$R50_IMAGES.npz" "$L50" "${A[@]}"
run r50-cuda-fp16 "$DEVICE" "$OUT/resnet50.onnx" "$OUT/synthetic224-$R50_IMAGES.npz" "$L50" "${A[@]}" --precision fp16
$PY - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {}
for name in ("r20-cpu", "r20-cuda", "r20-cuda-nobind", "r20-cuda-fp16", "r20-noise-cuda",
             "r20-noise-cuda-fp16", "r50-cuda", "r50-cuda-fp16"):
    runs[name] = (json.loads((out / f"{name}.json").read_text()), float((out / f"{name}.s").read_text()))
def diff(a, b, part="ablation"):
    return max(abs(x - y) for x, y in zip(runs[a][0][part]["accuracy_mean"],
                                          runs[b][0][part]["accuracy_mean"]))
print("| sweep | provider | IO binding | precision | wall (s) | AUC |")
print("|---|---|---|---|---:|---:|")
for name, (r, t) in runs.items():
    what = ("ResNet-20, 1,024 images" if name.startswith("r20") else
            f"ResNet-50, {r['data']['samples']:,} images")
    what += ", noise" if "noise" in name else ", ablation"
    auc = r["summary"]["noise_auc" if "noise" in name else "ablation_auc"]
    rt = r["runtime"]
    print(f"| {what} | {rt['provider']} | {'on' if rt['io_binding'] else 'off'} | "
          f"{rt['precision']} | {t:.1f} | {auc:.4f} |")
checks = [("CPU vs CUDA, ResNet-20", diff("r20-cpu", "r20-cuda"), 0.01),
          # separate processes may pick different cuDNN kernels: a prediction or two may flip
          ("IO binding on vs off, ResNet-20", diff("r20-cuda", "r20-cuda-nobind"), 0.002),
          ("fp16 vs fp32, ResNet-20", diff("r20-cuda", "r20-cuda-fp16"), 0.005),
          ("fp16 vs fp32, ResNet-20 noise", diff("r20-noise-cuda", "r20-noise-cuda-fp16",
                                                 "noise"), 0.005),
          ("fp16 vs fp32, ResNet-50", diff("r50-cuda", "r50-cuda-fp16"), 0.005)]
print()
for label, d, limit in checks:
    print(f"Largest accuracy difference, {label}: {d:.4f} (limit {limit})")
sys.exit(0 if all(d <= limit for _, d, limit in checks) else 1)
PYEOF
